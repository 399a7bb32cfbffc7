//! `ci`: submit a Python project's tests to the ci service, follow the log live, reattach to a
//! job, list, inspect and cancel jobs. `main.rs` parses the command line and calls [`run`].

/// `eprintln!` that never panics: a closed stderr (`ci wait 2>&1 | head`) loses the text, not
/// the process.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod api;
pub mod cli;
pub mod config;
pub mod follow;
pub mod output;
pub mod project;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use api::Submission;
use ci_common::api::JobView;
use ci_common::results::{TestOutcome, TestResult, TestSummary};
use ci_common::JobId;
use clap::CommandFactory;
use reqwest::StatusCode;

use crate::api::{Api, ApiError};
use crate::cli::{
    ArtifactsArgs, CancelArgs, Cli, Command, ListArgs, RetryArgs, StatusArgs, SubmitArgs,
    TasksArgs, TestsArgs, WaitArgs, WebhooksCommand,
};
use crate::config::{Env, FileConfig, Settings};
use crate::follow::{follow, Backoff, Finished, HttpEvents};
use crate::output::{Printer, Spinner, Style};

/// How `ci` ends; the exit codes are part of its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked (for `submit`/`wait`: the job passed).
    Ok,
    /// The job did not pass, or the command failed.
    Failed,
    /// Ctrl-C.
    Interrupted,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed => ExitCode::from(1),
            Exit::Interrupted => ExitCode::from(130),
        }
    }
}

impl Exit {
    fn for_job(finished: &Finished) -> Self {
        if finished.status.success() {
            Exit::Ok
        } else {
            Exit::Failed
        }
    }
}

/// Runs one command, printing errors as one line plus their cause chain.
pub async fn main(cli: Cli) -> ExitCode {
    match run(cli).await {
        Ok(exit) => exit.into(),
        Err(error) => {
            let style = Style::detect(std::io::stderr().is_terminal());
            say!("{} {error:#}", style.red("error:"));
            ExitCode::from(1)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends the command like SIGPIPE would.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => output::exit_on_closed_stdout(),
        other => other.context("cannot write to stdout"),
    }
}

pub async fn run(cli: Cli) -> Result<Exit> {
    if let Command::Tasks(args) = &cli.command {
        return tasks_list(args);
    }
    if let Command::Completions { shell } = cli.command {
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "ci", &mut script);
        write_stdout(&script)?;
        return Ok(Exit::Ok);
    }
    let settings = settings(&cli)?;
    let key = settings.key()?;
    let api = Api::new(settings.servers.clone(), key)?;
    // `submit` and `wait` handle Ctrl-C themselves (cancel, or detach); the other commands keep
    // the default (the process ends, exit 130).
    match cli.command {
        Command::Submit(args) => submit(&api, args, &mut Interrupt::new()?).await,
        Command::Wait(args) => wait(&api, args, &mut Interrupt::new()?).await,
        Command::List(args) => list(&api, args).await,
        Command::Status(args) => status(&api, args).await,
        Command::Tests(args) => tests(&api, args).await,
        Command::Cancel(args) => cancel(&api, args).await,
        Command::Artifacts(args) => artifacts(&api, args).await,
        Command::Retry(args) => retry(&api, args, &mut Interrupt::new()?).await,
        Command::Triggers(command) => triggers(&api, command).await,
        Command::GitCredentials(command) => git_credentials(&api, command).await,
        Command::Teams { json } => teams(&api, json).await,
        Command::Secrets(command) => secrets(&api, command).await,
        Command::Webhooks(command) => webhooks(&api, command).await,
        Command::Completions { .. } | Command::Tasks(_) => unreachable!("handled above"),
    }
}

fn settings(cli: &Cli) -> Result<Settings> {
    let path = config::config_path(
        std::env::var_os(config::CONFIG_ENV).map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    );
    let file = match path {
        Some(path) => {
            let file = FileConfig::load(&path)?;
            for warning in &file.warnings {
                eprintln!("ci: warning: {warning}");
            }
            file
        }
        None => FileConfig {
            path: PathBuf::from("~/.ci/config"),
            ..FileConfig::default()
        },
    };
    Settings::resolve(
        cli.global.server.as_deref(),
        cli.global.api_key.as_deref(),
        &Env::from_process(),
        &file,
    )
}

/// `ci artifacts`: downloads each artifact into the output folder at its path, checks its
/// SHA-256 against the server's, and prints one line per file.
async fn artifacts(api: &Api, args: ArtifactsArgs) -> Result<Exit> {
    let id = args.job_id;
    let list = api.artifacts(id).await?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&list).context("cannot write JSON")?;
        text.push('\n');
        write_stdout(text.as_bytes())?;
        return Ok(Exit::Ok);
    }
    if list.is_empty() {
        say!("Job {id} has no artifacts (a task keeps files with `artifacts = [...]` under [tool.ci.tasks.<name>]).");
        return Ok(Exit::Ok);
    }
    for artifact in &list {
        // The server's names are relative paths without `..` (its blob names); check anyway.
        let relative = std::path::Path::new(&artifact.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!(
                "artifact {:?} is not a relative path: not written",
                artifact.path
            );
        }
        let bytes = api.artifact(id, &artifact.path).await?;
        let digest = ci_common::keys::sha256_hex(&bytes);
        if digest != artifact.sha256 {
            anyhow::bail!(
                "artifact {} arrived with SHA-256 {digest}, not the server's {}: not written; try again",
                artifact.path,
                artifact.sha256
            );
        }
        let target = args.output.join(relative);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&target, &bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
        println!(
            "{}  {}  sha256:{}",
            target.display(),
            ci_common::config::human_bytes(bytes.len() as u64),
            digest
        );
    }
    Ok(Exit::Ok)
}

/// `ci webhooks add|list|remove|deliveries`.
async fn webhooks(api: &Api, command: WebhooksCommand) -> Result<Exit> {
    let text = match command {
        WebhooksCommand::Add(args) => {
            let created = api.add_webhook(&args.url, &args.events).await?;
            if args.json {
                json_text(&created)?
            } else {
                say!(
                    "Keep the secret where your receiver can read it: it signs every delivery \
                     (X-CI-Signature) and is not shown again."
                );
                output::created_webhook(&created)
            }
        }
        WebhooksCommand::List { json } => {
            let list = api.webhooks().await?;
            if json {
                json_text(&list)?
            } else {
                output::webhooks_table(&list.webhooks, &chrono::Local)
            }
        }
        WebhooksCommand::Remove { id } => {
            api.remove_webhook(id).await?;
            format!("Webhook {id} removed.\n")
        }
        WebhooksCommand::Deliveries(args) => {
            let list = api.deliveries(args.id, args.limit).await?;
            if args.json {
                json_text(&list)?
            } else {
                output::deliveries_table(&list.deliveries, &chrono::Local)
            }
        }
    };
    write_stdout(text.as_bytes())?;
    Ok(Exit::Ok)
}

/// An answer as `--json` prints it: pretty, with a final newline.
fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value).context("cannot write JSON")? + "\n")
}

/// The project's configuration as `ci` reads it from the folder's `pyproject.toml` (the default
/// when there is none).
fn local_project(dir: &std::path::Path) -> Result<ci_common::project::Project> {
    let path = dir.join(ci_common::project::PYPROJECT);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
        }
    };
    let root = ci_common::project::RootFiles::from_pairs([(
        ci_common::project::PYPROJECT,
        text.as_slice(),
    )]);
    ci_common::project::Project::read(&root)
        .with_context(|| format!("{} cannot be used", path.display()))
}

/// `ci tasks`: the project's tasks, what each runs (its needs first), and its commands.
fn tasks_list(args: &TasksArgs) -> Result<Exit> {
    let project = local_project(&args.dir)?;
    let tasks = &project.ci.tasks;
    let mut rows = Vec::new();
    for name in ci_common::tasks::task_names(tasks) {
        let runs = ci_common::tasks::pipeline(tasks, &name).map_err(anyhow::Error::msg)?;
        let command = match tasks.get(&name).and_then(|t| t.run.as_ref()) {
            Some(run) => run.script().lines().next().unwrap_or("").trim().to_owned(),
            None => "pytest (built in)".to_owned(),
        };
        rows.push((name, runs, command));
    }
    let mut out = String::new();
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, runs, command)| serde_json::json!({"name": name, "runs": runs, "command": command}))
            .collect();
        out = serde_json::to_string_pretty(&json).context("cannot write JSON")? + "\n";
    } else {
        let width = rows
            .iter()
            .map(|(n, _, _)| n.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let runs_width = rows
            .iter()
            .map(|(_, r, _)| r.join(" → ").chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "{:<width$}  {:<runs_width$}  COMMAND\n",
            "TASK", "RUNS"
        ));
        for (name, runs, command) in &rows {
            out.push_str(&format!(
                "{name:<width$}  {:<runs_width$}  {command}\n",
                runs.join(" → ")
            ));
        }
    }
    write_stdout(out.as_bytes())?;
    Ok(Exit::Ok)
}

async fn submit(api: &Api, args: SubmitArgs, interrupt: &mut Interrupt) -> Result<Exit> {
    let animate = std::io::stderr().is_terminal();
    let spinner = |message: &str| animate.then(|| Spinner::start(message));
    let stop = |spinner: Option<Spinner>| {
        if let Some(spinner) = spinner {
            spinner.stop();
        }
    };

    if let Some(url) = &args.git {
        let request = ci_common::git::GitJobRequest {
            git: ci_common::git::GitSource {
                url: url.clone(),
                git_ref: args.git_ref.clone(),
            },
            task: Some(args.task.clone()),
            args: args.pytest_args.clone(),
            team: args.team.clone(),
        };
        let job = api.submit_git(&request).await?;
        return follow_new_job(api, job, args.detach, args.json, interrupt).await;
    }
    let dir = args.dir.clone();
    // The folder's own name (`.` and `..` resolved): the project's name when nothing else names it.
    let folder = std::fs::canonicalize(&dir)
        .ok()
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()));
    let packing = spinner("Packing the project...");
    let task = args.task.clone();
    let zipped = tokio::task::spawn_blocking(move || project::zip_project(&dir, &task))
        .await
        .context("packing the project stopped unexpectedly")?;
    stop(packing);
    let zipped = zipped?;
    for warning in &zipped.warnings {
        say!("warning: {warning}");
    }
    for note in &zipped.notes {
        say!("note: {note}");
    }

    let uploading = spinner(&format!(
        "Uploading {} file{} ({}) to {}...",
        zipped.files.len(),
        if zipped.files.len() == 1 { "" } else { "s" },
        ci_common::config::human_bytes(zipped.bytes.len() as u64),
        api.current_server().as_str().trim_end_matches('/')
    ));
    let submission = Submission {
        task: &args.task,
        image: args.image.as_deref(),
        args: &args.pytest_args,
        retries: args.retries,
        fail_on_flaky: args.fail_on_flaky,
        project: args.project.as_deref(),
        folder: folder.as_deref(),
        no_cache: args.no_cache,
        team: args.team.as_deref(),
    };
    let submitted = tokio::select! {
        result = api.submit(zipped.bytes, &submission) => result,
        () = interrupt.recv() => {
            stop(uploading);
            say!("Interrupted before the job was submitted.");
            return Ok(Exit::Interrupted);
        }
    };
    stop(uploading);
    let job = submitted?;
    follow_new_job(api, job, args.detach, args.json, interrupt).await
}

/// `ci teams`: the caller's teams and their members.
async fn teams(api: &Api, json: bool) -> Result<Exit> {
    let list = api
        .call_json(
            reqwest::Method::GET,
            "teams",
            None,
            "cannot list your teams",
        )
        .await?;
    if json {
        write_stdout((serde_json::to_string_pretty(&list)? + "\n").as_bytes())?;
        return Ok(Exit::Ok);
    }
    let teams = list["teams"].as_array().cloned().unwrap_or_default();
    if teams.is_empty() {
        say!("You are in no team (an administrator adds members with `ci-admin team add-member`).");
        return Ok(Exit::Ok);
    }
    let mut out = String::new();
    for team in &teams {
        let members: Vec<&str> = team["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{}: {}\n",
            team["name"].as_str().unwrap_or_default(),
            members.join(", ")
        ));
    }
    write_stdout(out.as_bytes())?;
    Ok(Exit::Ok)
}

/// `ci secrets set|list|remove`.
async fn secrets(api: &Api, command: cli::SecretsCommand) -> Result<Exit> {
    use reqwest::Method;
    let path = |name: &str, team: &Option<String>| {
        let mut path = format!("secrets/{name}");
        if let Some(team) = team {
            path.push('?');
            path.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("team", team)
                    .finish(),
            );
        }
        path
    };
    match command {
        cli::SecretsCommand::Set { name, team } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("cannot read the value from standard input")?;
            let value = value.trim_end_matches(['\r', '\n']).to_owned();
            anyhow::ensure!(
                !value.is_empty(),
                "no value on standard input: pipe it in, e.g. \
                 `echo \"$TOKEN\" | ci secrets set {name}`"
            );
            let body = serde_json::json!({ "value": value });
            api.call_json(
                Method::PUT,
                &path(&name, &team),
                Some(&body),
                "the server did not store the secret",
            )
            .await?;
            match &team {
                Some(team) => say!("Stored the secret variable {name} of team {team}."),
                None => say!("Stored your secret variable {name}."),
            }
        }
        cli::SecretsCommand::List { team, json } => {
            let list = api
                .call_json(
                    Method::GET,
                    &path("", &team).replacen("secrets/", "secrets", 1),
                    None,
                    "cannot list secret variables",
                )
                .await?;
            if json {
                write_stdout((serde_json::to_string_pretty(&list)? + "\n").as_bytes())?;
                return Ok(Exit::Ok);
            }
            let secrets = list["secrets"].as_array().cloned().unwrap_or_default();
            if secrets.is_empty() {
                say!("No secret variables: `ci secrets set NAME` stores one.");
            }
            let mut out = String::new();
            for secret in &secrets {
                out.push_str(&format!(
                    "{}  (set by {} at {})\n",
                    secret["name"].as_str().unwrap_or_default(),
                    secret["updated_by"].as_str().unwrap_or_default(),
                    secret["updated_at"].as_str().unwrap_or_default(),
                ));
            }
            write_stdout(out.as_bytes())?;
        }
        cli::SecretsCommand::Remove { name, team } => {
            api.call_empty(
                Method::DELETE,
                &path(&name, &team),
                "cannot remove the secret variable",
            )
            .await?;
            say!("Removed the secret variable {name}.");
        }
    }
    Ok(Exit::Ok)
}

/// `ci git-credentials set|list|remove`.
async fn git_credentials(api: &Api, command: cli::GitCredentialsCommand) -> Result<Exit> {
    use reqwest::Method;
    match command {
        cli::GitCredentialsCommand::Set { host, username } => {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            anyhow::ensure!(
                !password.is_empty(),
                "no password on standard input: pipe the password or token in, e.g. \
                 `echo \"$TOKEN\" | ci git-credentials set {host} --username {username}`"
            );
            let body = serde_json::json!({"username": username, "password": password});
            api.call_json(
                Method::PUT,
                &format!("git-credentials/{host}"),
                Some(&body),
                "the server did not store the credential",
            )
            .await?;
            say!("Stored your credential for {host} (user {username}).");
        }
        cli::GitCredentialsCommand::List => {
            let list = api
                .call_json(
                    Method::GET,
                    "git-credentials",
                    None,
                    "cannot list credentials",
                )
                .await?;
            let credentials = list["credentials"].as_array().cloned().unwrap_or_default();
            if credentials.is_empty() {
                say!(
                    "No git credentials: `ci git-credentials set HOST --username USER` stores one."
                );
            }
            for c in credentials {
                println!(
                    "{}  {}  updated {}",
                    c["host"].as_str().unwrap_or("-"),
                    c["username"].as_str().unwrap_or("-"),
                    c["updated_at"].as_str().unwrap_or("-")
                );
            }
        }
        cli::GitCredentialsCommand::Remove { host } => {
            api.call_empty(
                Method::DELETE,
                &format!("git-credentials/{host}"),
                "cannot remove the credential",
            )
            .await?;
            say!("Removed your credential for {host}.");
        }
    }
    Ok(Exit::Ok)
}

/// `ci triggers create|list|revoke`.
async fn triggers(api: &Api, command: cli::TriggersCommand) -> Result<Exit> {
    use reqwest::Method;
    match command {
        cli::TriggersCommand::Create {
            git,
            git_ref,
            task,
            push,
        } => {
            let body = serde_json::json!({
                "kind": if push { "push" } else { "run" },
                "git": {"url": git, "ref": git_ref},
                "task": task,
            });
            let created = api
                .call_json(
                    Method::POST,
                    "triggers",
                    Some(&body),
                    "the server refused the trigger",
                )
                .await?;
            let server = api
                .current_server()
                .as_str()
                .trim_end_matches('/')
                .to_owned();
            let field = |name: &str| created[name].as_str().unwrap_or_default().to_owned();
            println!(
                "Trigger: {}",
                created["trigger"]["id"].as_str().unwrap_or_default()
            );
            println!("URL:     {server}{}", field("url"));
            println!("Token:   {}", field("token"));
            if let Some(secret) = created["secret"].as_str() {
                println!("Secret:  {secret}");
                say!(
                    "Set the URL as the push webhook's address and the secret as its secret \
                     (content type application/json). Neither is shown again."
                );
            } else {
                say!(
                    "POST to the URL to start a job (optional JSON body {{\"ref\": ..., \
                     \"args\": [...]}}). The token is not shown again."
                );
            }
            Ok(Exit::Ok)
        }
        cli::TriggersCommand::List => {
            let list = api
                .call_json(Method::GET, "triggers", None, "cannot list triggers")
                .await?;
            let triggers = list["triggers"].as_array().cloned().unwrap_or_default();
            if triggers.is_empty() {
                say!("No triggers: `ci triggers create --git URL` makes one.");
            }
            for t in triggers {
                let text = |name: &str| t[name].as_str().unwrap_or("-").to_owned();
                let state = if t["revoked_at"].is_string() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}  {:<4}  {:<7}  {}  {} at {}  last used {}",
                    text("id"),
                    text("kind"),
                    state,
                    text("task"),
                    text("git_url"),
                    t["git_ref"].as_str().unwrap_or("HEAD"),
                    text("last_used_at"),
                );
            }
            Ok(Exit::Ok)
        }
        cli::TriggersCommand::Revoke { id } => {
            api.call_json(
                Method::DELETE,
                &format!("triggers/{id}"),
                None,
                "cannot revoke the trigger",
            )
            .await?;
            say!("Trigger {id} revoked.");
            Ok(Exit::Ok)
        }
    }
}

/// `ci retry`: queues the job again (same source, task, arguments and options) and follows the
/// new one as `ci submit` does.
async fn retry(api: &Api, args: RetryArgs, interrupt: &mut Interrupt) -> Result<Exit> {
    let job = api.retry(args.job_id).await?;
    if !args.detach {
        say!("Running job {} again as a new job.", args.job_id);
    }
    follow_new_job(api, job, args.detach, args.json, interrupt).await
}

/// What `ci submit` and `ci retry` do with the job they queued: print its id and return
/// (`detach`, as JSON with `json`), or follow it to its end (Ctrl-C cancels it).
async fn follow_new_job(
    api: &Api,
    job: JobView,
    detach: bool,
    json: bool,
    interrupt: &mut Interrupt,
) -> Result<Exit> {
    let id = job.job_id;
    if detach {
        if json {
            println!("{}", serde_json::json!({ "job_id": id }));
        } else {
            println!("Job submitted: {id}");
        }
        return Ok(Exit::Ok);
    }

    let mut printer = Printer::new(id);
    say!("Job ID: {}", printer.err.bold(&id.to_string()));
    printer.info(&format!("Reattach with: ci wait {id}"));
    waiting(&mut printer, &job);
    let mut source = HttpEvents { api, job_id: id };
    let outcome = tokio::select! {
        result = follow(&mut source, &mut printer, 0, Backoff::default()) => result,
        () = interrupt.recv() => {
            printer.stop_spinner();
            say!("Cancelling job {id}...");
            match tokio::time::timeout(Duration::from_secs(15), api.cancel(id)).await {
                Ok(Ok(job)) => say!("Job {id} {}.", cancel_summary(&job)),
                Ok(Err(e)) => say!("Could not cancel job {id}: {:#}", anyhow::Error::new(e)),
                Err(_) => say!("Could not cancel job {id}: the server did not answer in time (try `ci cancel {id}`)"),
            }
            return Ok(Exit::Interrupted);
        }
    };
    finish(api, &mut printer, id, outcome, interrupt).await
}

/// For a queued job: the spinner, after a notice when no controller is there to run it.
fn waiting(printer: &mut Printer, job: &ci_common::api::JobView) {
    if job.status != ci_common::JobStatus::Queued {
        return;
    }
    if let Some(controller) = job.controller.as_ref().filter(|c| !c.running) {
        let since = match controller.last_seen {
            Some(at) => format!(
                "the last one was seen at {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => "none has ever started on this server's database".to_owned(),
        };
        printer.info(&format!(
            "No controller is running ({since}): the job stays queued until an operator \
             starts ci-controller."
        ));
    }
    printer.spin("Waiting for a runner...");
}

async fn wait(api: &Api, args: WaitArgs, interrupt: &mut Interrupt) -> Result<Exit> {
    let id = args.job_id;
    let job = api.job(id).await?;
    let mut printer = Printer::new(id);
    if job.status.is_terminal() && !args.all {
        let finished = Finished::from_view(&job);
        return finish(api, &mut printer, id, Ok(finished), interrupt).await;
    }
    let after = if args.all {
        0
    } else {
        job.last_seq.unwrap_or(0)
    };
    if !job.status.is_terminal() {
        printer.info(&format!(
            "Following job {id} ({}); Ctrl-C detaches, the job keeps running.",
            job.status
        ));
        waiting(&mut printer, &job);
    }
    let mut source = HttpEvents { api, job_id: id };
    let outcome = tokio::select! {
        result = follow(&mut source, &mut printer, after, Backoff::default()) => result,
        () = interrupt.recv() => {
            printer.stop_spinner();
            say!("Detached; job {id} continues on the server. Reattach with: ci wait {id}");
            return Ok(Exit::Interrupted);
        }
    };
    finish(api, &mut printer, id, outcome, interrupt).await
}

/// Prints the end of a followed job: its tests when it has results (the summary from its
/// `summary` event, or its counts when that came before we followed), then the final line.
async fn finish(
    api: &Api,
    printer: &mut Printer,
    id: JobId,
    outcome: Result<Finished>,
    interrupt: &mut Interrupt,
) -> Result<Exit> {
    printer.stop_spinner();
    let finished = outcome.with_context(|| {
        format!("stopped following job {id}; it may still be running: reattach with `ci wait {id}`")
    })?;
    let summary = printer.summary.take().or_else(|| {
        finished.tests.clone().map(|counts| TestSummary {
            counts,
            ..TestSummary::default()
        })
    });
    if let Some(summary) = summary {
        let fetch = tokio::time::timeout(TESTS_TIMEOUT, failing_tests(api, id, &summary));
        let why = tokio::select! {
            fetched = fetch => match fetched {
                Ok(Ok(failures)) => {
                    printer.tests(&summary, Some(&failures));
                    None
                }
                Ok(Err(e)) => Some(format!("{:#}", anyhow::Error::new(e))),
                Err(_) => Some("the server did not answer in time".to_owned()),
            },
            () = interrupt.recv() => Some("interrupted".to_owned()),
        };
        if let Some(why) = why {
            printer.tests(&summary, None);
            printer.info(&format!(
                "[ci] cannot show the failing tests ({why}): ci tests {id} --failed"
            ));
        }
    }
    printer.finished(&finished);
    Ok(Exit::for_job(&finished))
}

/// How long the failing tests may take to arrive at the end of a run.
const TESTS_TIMEOUT: Duration = Duration::from_secs(15);

/// The job's first failing tests, failed ones first, as many as the end of a run lists, then its
/// first flaky ones.
async fn failing_tests(
    api: &Api,
    id: JobId,
    summary: &TestSummary,
) -> Result<Vec<TestResult>, ApiError> {
    let max = output::MAX_LISTED_FAILURES;
    let mut failures = Vec::new();
    for outcome in [TestOutcome::Failed, TestOutcome::Error] {
        if summary.counts.get(outcome) > 0 && failures.len() < max {
            let room = (max - failures.len()) as u32;
            failures.extend(api.tests(id, Some(outcome), room, 0).await?.tests);
        }
    }
    if summary.counts.get(TestOutcome::Flaky) > 0 {
        let flaky = api
            .tests(id, Some(TestOutcome::Flaky), max as u32, 0)
            .await?;
        failures.extend(flaky.tests);
    }
    Ok(failures)
}

fn cancel_summary(job: &JobView) -> String {
    if job.status.is_terminal() {
        format!("is {}", job.status)
    } else {
        format!(
            "was {}; cancellation requested, it ends as cancelled shortly",
            job.status
        )
    }
}

async fn list(api: &Api, args: ListArgs) -> Result<Exit> {
    let mut jobs: Vec<JobView> = Vec::new();
    let mut before = None;
    loop {
        let want = args.limit - jobs.len() as u32;
        let page = api.list(want, before, args.team.as_deref()).await?;
        let got = page.jobs.len();
        jobs.extend(page.jobs);
        match page.next_before {
            Some(next) if got > 0 && jobs.len() < args.limit as usize => before = Some(next),
            _ => break,
        }
    }
    jobs.truncate(args.limit as usize);
    let text = if args.json {
        serde_json::to_string_pretty(&jobs).context("cannot write JSON")? + "\n"
    } else {
        let style = Style::detect(std::io::stdout().is_terminal());
        output::jobs_table(&jobs, &chrono::Local, style)
    };
    write_stdout(text.as_bytes())?;
    Ok(Exit::Ok)
}

async fn status(api: &Api, args: StatusArgs) -> Result<Exit> {
    let job = match (&args.job_id, &args.task) {
        (Some(id), _) => api.job(*id).await?,
        (None, Some(task)) => api.task_status(task, args.project.as_deref()).await?,
        (None, None) => unreachable!("clap requires a job id or --task"),
    };
    let text = if args.json {
        serde_json::to_string_pretty(&job).context("cannot write JSON")? + "\n"
    } else {
        let style = Style::detect(std::io::stdout().is_terminal());
        output::job_details(&job, &chrono::Local, style)
    };
    write_stdout(text.as_bytes())?;
    Ok(Exit::Ok)
}

async fn tests(api: &Api, args: TestsArgs) -> Result<Exit> {
    let id = args.job_id;
    let list = if args.failed {
        let mut failed = api.all_tests(id, Some(TestOutcome::Failed)).await?;
        let errors = api.all_tests(id, Some(TestOutcome::Error)).await?;
        failed.tests.extend(errors.tests);
        failed.counts = errors.counts.or(failed.counts);
        failed
    } else {
        api.all_tests(id, None).await?
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&list).context("cannot write JSON")?;
        text.push('\n');
        write_stdout(text.as_bytes())?;
        return Ok(Exit::Ok);
    }
    if list.counts.is_none() {
        let job = api.job(id).await?;
        if job.status.is_terminal() {
            let reason = job.reason.map(|r| format!(": {r}")).unwrap_or_default();
            say!(
                "No test results for job {id} ({}{reason}): its tests did not run, or ran before \
                 ci collected results.",
                job.status
            );
        } else {
            say!(
                "No test results for job {id} yet: it is {}, and its results arrive when its \
                 tests have run (`ci wait {id}` follows it).",
                job.status
            );
        }
        return Ok(Exit::Ok);
    }
    let style = Style::detect(std::io::stdout().is_terminal());
    let text = if args.failed {
        output::failures_details(&list.tests, list.counts.as_ref(), style)
    } else {
        output::tests_table(&list.tests, list.counts.as_ref(), style)
    };
    write_stdout(text.as_bytes())?;
    Ok(Exit::Ok)
}

async fn cancel(api: &Api, args: CancelArgs) -> Result<Exit> {
    let id = args.job_id;
    let job = match api.cancel(id).await {
        Ok(job) => job,
        Err(ApiError::Rejected {
            status: StatusCode::CONFLICT,
            message,
            ..
        }) => {
            return Err(anyhow::Error::new(message).context(format!(
                "job {id} has already finished, so there is nothing to cancel (`ci status {id}` shows how it ended)"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!("Job {id} {}.", cancel_summary(&job));
    }
    Ok(Exit::Ok)
}

/// Ctrl-C (SIGINT), listened for from the moment it is created.
pub struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    pub fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?;
            Ok(Interrupt { signal })
        }
        #[cfg(not(unix))]
        Ok(Interrupt {})
    }

    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            self.signal.recv().await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
