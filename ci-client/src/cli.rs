//! The command line, as clap sees it. Kept compatible with the original `ci` commands
//! (`ci submit test`, `ci wait <id>`, `ci list`) so existing scripts keep working.

use std::path::PathBuf;

use ci_common::api::DEFAULT_TASK;
use ci_common::webhooks::WebhookEvent;
use ci_common::{JobId, WebhookId};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

/// Run a Python project's tests on the ci service and follow their log.
#[derive(Debug, Parser)]
#[command(name = "ci", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Server URL, or a comma-separated list of replicas tried in order
    /// [env: CI_SERVER_URL] [config: server_url] [default: http://localhost:8000]
    #[arg(long, global = true, value_name = "URL[,URL...]")]
    pub server: Option<String>,

    /// API key (ci_...) [env: CI_API_KEY] [config: api_key]
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload the project in the current folder, run its tests and stream the log.
    ///
    /// Exits 0 if the tests passed and 1 otherwise. Ctrl-C cancels the job.
    Submit(SubmitArgs),
    /// Follow a job's log until it ends (new output only, or everything with --all).
    ///
    /// Exits 0 if the job passed and 1 otherwise. Ctrl-C detaches; the job keeps running.
    Wait(WaitArgs),
    /// List your jobs and your teams' jobs, newest first.
    List(ListArgs),
    /// Show one job: status, reason, exit code, times and log size.
    Status(StatusArgs),
    /// Show a job's tests: outcome, name, duration and place, or only the failures with --failed.
    Tests(TestsArgs),
    /// Cancel a queued or running job.
    Cancel(CancelArgs),
    /// Run a job again as a new job: the same source, task, arguments and options (while the
    /// service still keeps its source), and follow it like `ci submit`.
    Retry(RetryArgs),
    /// Download a job's artifacts (the files its tasks keep with `artifacts = [...]`) and check
    /// each one's SHA-256.
    Artifacts(ArtifactsArgs),
    /// List the project's tasks (built-in `test` and those under [tool.ci.tasks] in
    /// pyproject.toml) with what each runs first; reads only the local files.
    Tasks(TasksArgs),
    /// The teams you are a member of, with their members (administrators manage teams with
    /// `ci-admin team`).
    Teams {
        /// Print the API's JSON (`{"teams": [{"name", "created_at", "members"}]}`).
        #[arg(long)]
        json: bool,
    },
    /// Secret variables of yours or of a team: sealed at rest, never shown again, given to the
    /// steps of the tasks that list them (`secrets = [...]`) and masked in the log.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Your credentials for private git remotes (`ci submit --git`), one per host: stored
    /// sealed, never shown again, given only to the fetch of your jobs from that host.
    #[command(subcommand, name = "git-credentials")]
    GitCredentials(GitCredentialsCommand),
    /// Trigger tokens: start a task on a git repository from another system (a URL and a
    /// token, no API key), or from a signed push webhook (--push).
    #[command(subcommand)]
    Triggers(TriggersCommand),
    /// Manage your outgoing webhooks: URLs that are sent your jobs' events, signed with a
    /// secret (see the README's "Webhooks").
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Print a shell completion script (e.g. `ci completions bash > ~/.local/share/bash-completion/completions/ci`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register a URL that is sent your jobs' events (both unless --event says which); prints
    /// its id and its secret, which is not shown again.
    Add(WebhookAddArgs),
    /// List your webhooks: id, events, when added, URL.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook; its deliveries not sent yet are dropped.
    Remove {
        /// The webhook (as `ci webhooks list` shows it).
        id: WebhookId,
    },
    /// Show a webhook's latest deliveries, newest first: event, job, state, attempts, times
    /// and the last answer or error.
    Deliveries(DeliveriesArgs),
}

#[derive(Debug, Args)]
pub struct WebhookAddArgs {
    /// Where to POST the events: a URL the operator allows (any public HTTPS host by default).
    pub url: String,

    /// An event to send (repeat for several; default: all of them).
    #[arg(long = "event", value_name = "EVENT", value_parser = PossibleValuesParser::new(WebhookEvent::ALL.map(WebhookEvent::as_str)))]
    pub events: Vec<String>,

    /// Print the API's JSON (with the secret).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// The webhook (as `ci webhooks list` shows it).
    pub id: WebhookId,

    /// How many deliveries to show at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,

    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task to run.
    #[arg(default_value = DEFAULT_TASK)]
    pub task: String,

    /// Print the job ID and return at once instead of following the log.
    #[arg(long = "async")]
    pub detach: bool,

    /// The project folder to upload.
    #[arg(short = 'C', long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Run the job on a git repository instead of a folder: the service fetches URL (a remote
    /// the operator allows) and runs the task on it; nothing is uploaded.
    #[arg(long, value_name = "URL", conflicts_with_all = ["dir", "image", "retries", "fail_on_flaky", "project", "no_cache"])]
    pub git: Option<String>,

    /// With --git: the branch, tag or commit to fetch (default: the remote's default branch).
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub git_ref: Option<String>,

    /// With --async: print `{"job_id": ...}` instead of text.
    #[arg(long, requires = "detach")]
    pub json: bool,

    /// Run the job in this image (one the operator allows; overrides `image` under [tool.ci]
    /// in pyproject.toml).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Run failed tests again, up to N times (overrides `retries` under [tool.ci]); a test that
    /// fails and then passes is flaky.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// Fail the job when a test is flaky (overrides `flaky` under [tool.ci]; by default the job
    /// passes and names its flaky tests).
    #[arg(long)]
    pub fail_on_flaky: bool,

    /// The project's name, which groups its jobs' test history (default: `project` under
    /// [tool.ci], else `[project].name`, else the folder's name).
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,

    /// Install the requirements afresh: neither use nor fill the dependency cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Submit the job to a team you are a member of: every member sees it (list, wait, status,
    /// tests, artifacts, cancel, retry), and it uses the team's dependency cache.
    #[arg(long, value_name = "NAME", env = "CI_TEAM")]
    pub team: Option<String>,

    /// Extra arguments for pytest, after `--` (e.g. `ci submit test -- -k slow -x`).
    #[arg(last = true, value_name = "PYTEST_ARGS")]
    pub pytest_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store (or replace) a secret variable; the value is read from standard input (e.g.
    /// `echo "$TOKEN" | ci secrets set PYPI_TOKEN`). Tasks that list NAME under `secrets`
    /// get it as an environment variable, masked in the log.
    Set {
        /// An environment variable's name (letters, digits and `_`), e.g. PYPI_TOKEN.
        name: String,
        /// A team's secret (given to the team's jobs) instead of yours.
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
    },
    /// List the names of your (or a team's) secret variables; values are never shown.
    List {
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret variable.
    Remove {
        name: String,
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GitCredentialsCommand {
    /// Store (or replace) your credential for HOST; the password or token is read from
    /// standard input (e.g. `echo "$TOKEN" | ci git-credentials set github.com --username me`).
    Set {
        /// The remote's host, as in its URLs (github.com).
        host: String,
        #[arg(long)]
        username: String,
    },
    /// List your credentials by host (never their secrets).
    List,
    /// Forget your credential for HOST.
    Remove { host: String },
}

#[derive(Debug, Subcommand)]
pub enum TriggersCommand {
    /// Make a trigger token bound to a task and a git source; prints the token (and, with
    /// --push, the webhook's secret) once.
    Create {
        /// The git remote its jobs fetch (one the operator allows).
        #[arg(long, value_name = "URL")]
        git: String,
        /// The branch, tag or commit (default: the remote's default branch); with --push, the
        /// branch whose pushes start jobs (default: any).
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
        /// The task its jobs run.
        #[arg(long, default_value = DEFAULT_TASK)]
        task: String,
        /// A push webhook (GitHub or Gitea style, signed with the secret shown) instead of a
        /// plain trigger URL.
        #[arg(long)]
        push: bool,
    },
    /// List your triggers (never their tokens).
    List,
    /// Revoke a trigger: its token starts nothing from then on.
    Revoke {
        /// The trigger's id (`ci triggers list`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The job to run again.
    pub job_id: JobId,

    /// Print the new job's ID and return at once instead of following its log.
    #[arg(long = "async")]
    pub detach: bool,

    /// With --async: print `{"job_id": ...}` instead of text.
    #[arg(long, requires = "detach")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    pub job_id: JobId,

    /// The folder to write them into, each at its path in the project.
    #[arg(short = 'o', long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,

    /// Only list them (path, size, SHA-256) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// The project folder.
    #[arg(short = 'C', long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Print the tasks as JSON: `[{"name", "runs", "command"}]`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job to follow (as printed by `ci submit`).
    pub job_id: JobId,

    /// Print the job's whole log from the beginning, not only new output.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the jobs as a JSON array.
    #[arg(long)]
    pub json: bool,

    /// How many jobs to show at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Only the jobs of this team (one you are a member of).
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job (or give --task).
    #[arg(required_unless_present = "task", conflicts_with = "task")]
    pub job_id: Option<JobId>,

    /// Your latest job of this task instead of a job id.
    #[arg(long, value_name = "NAME")]
    pub task: Option<String>,

    /// With --task: only jobs of this project.
    #[arg(long, value_name = "NAME", requires = "task")]
    pub project: Option<String>,

    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TestsArgs {
    pub job_id: JobId,

    /// Only the tests that failed or errored, each with its message and failure text.
    #[arg(long)]
    pub failed: bool,

    /// Print the API's JSON (`{"tests": [...], "counts": {...}, "next_offset": null}`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub job_id: JobId,

    /// Print the job as JSON after the request.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn original_commands_still_parse() {
        let cli = Cli::try_parse_from(["ci", "submit", "test"]).unwrap();
        assert!(matches!(cli.command, Command::Submit(ref a) if a.task == "test" && !a.detach));
        let cli = Cli::try_parse_from(["ci", "submit", "--async"]).unwrap();
        assert!(matches!(cli.command, Command::Submit(ref a) if a.task == "test" && a.detach));
        let id = JobId::new();
        let cli = Cli::try_parse_from(["ci", "wait", &id.to_string(), "--all"]).unwrap();
        assert!(matches!(cli.command, Command::Wait(ref a) if a.job_id == id && a.all));
        let cli = Cli::try_parse_from(["ci", "tests", &id.to_string(), "--failed"]).unwrap();
        assert!(
            matches!(cli.command, Command::Tests(ref a) if a.job_id == id && a.failed && !a.json)
        );
        let cli = Cli::try_parse_from(["ci", "list", "--server", "http://a:1", "--api-key", "k"])
            .unwrap();
        assert_eq!(cli.global.server.as_deref(), Some("http://a:1"));
        assert_eq!(cli.global.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn help_text() {
        insta::assert_snapshot!(Cli::command().render_help().to_string());
        let submit = Cli::try_parse_from(["ci", "submit", "-h"]).unwrap_err();
        insta::assert_snapshot!(submit.render().to_string());
    }

    #[test]
    fn pytest_arguments_follow_a_double_dash() {
        let cli = Cli::try_parse_from(["ci", "submit", "test", "--", "-k", "slow", "-x"]).unwrap();
        let Command::Submit(args) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(args.task, "test");
        assert_eq!(args.pytest_args, ["-k", "slow", "-x"]);
        let cli =
            Cli::try_parse_from(["ci", "submit", "--image", "py:3", "--", "tests/a.py"]).unwrap();
        let Command::Submit(args) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(args.task, "test");
        assert_eq!(args.image.as_deref(), Some("py:3"));
        assert_eq!(args.pytest_args, ["tests/a.py"]);
    }

    #[test]
    fn webhook_commands_parse_and_unknown_events_are_usage_errors() {
        let cli = Cli::try_parse_from([
            "ci",
            "webhooks",
            "add",
            "https://hooks.example.com/ci",
            "--event",
            "job.finished",
        ])
        .unwrap();
        let Command::Webhooks(WebhooksCommand::Add(args)) = cli.command else {
            panic!("not webhooks add")
        };
        assert_eq!(args.url, "https://hooks.example.com/ci");
        assert_eq!(args.events, ["job.finished"]);
        let err =
            Cli::try_parse_from(["ci", "webhooks", "add", "https://h", "--event", "job.done"])
                .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("job.started"), "{err}");
        let id = WebhookId::new();
        let cli = Cli::try_parse_from(["ci", "webhooks", "deliveries", &id.to_string(), "--json"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Webhooks(WebhooksCommand::Deliveries(ref a)) if a.id == id && a.json
        ));
    }

    #[test]
    fn a_mistyped_job_id_is_a_usage_error() {
        let err = Cli::try_parse_from(["ci", "wait", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
