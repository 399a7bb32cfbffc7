//! `ci-admin`: manage users, API keys and the dependency cache directly in the database.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, Local, Utc};
use ci_common::db::api_keys::{self, ApiKey};
use ci_common::db::audit::{self, Action, Actor, AuditFilter, AuditRecord, Outcome};
use ci_common::db::cache::{self, CacheEntry, CacheState};
use ci_common::db::legacy::{self, ImportSummary};
use ci_common::db::users::{self, User};
use ci_common::db::{self, DatabaseArgs, Db, DbError};
use ci_common::keys::SecretKey;
use ci_common::{ApiKeyId, UserId};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

mod team;
pub use team::TeamCommand;

#[derive(Debug, Parser)]
#[command(
    name = "ci-admin",
    version,
    about = "Manage ci users, API keys, teams and the dependency cache, and read the audit log"
)]
pub struct Cli {
    /// The database (the same default as ci-server and ci-controller).
    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect, activate and deactivate users.
    #[command(subcommand)]
    User(UserCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create, list, show and delete teams, and add and remove their members.
    #[command(subcommand)]
    Team(TeamCommand),
    /// List and prune the dependency cache (the Docker volumes of installed packages that jobs
    /// reuse instead of installing).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Copy the users, API keys and past jobs (with their logs) of the Python prototype's
    /// database into this one. Safe to run again: what is already here is left alone.
    ImportLegacy(ImportLegacyArgs),
    /// Move the database between backends.
    #[command(subcommand)]
    Db(DbCommand),
    /// Delete jobs that ended more than --older-than ago, with their logs, results and
    /// artifacts, in small batches (as `ci-controller --retain` does on its own). Queued and
    /// running jobs are never touched.
    Prune {
        /// How long ago a job must have ended: `30d`, `12h`, ...
        #[arg(long, value_parser = parse_duration)]
        older_than: std::time::Duration,
        /// Keep each user's N newest jobs however old.
        #[arg(long, default_value_t = 0)]
        keep_last: u32,
        /// Only say which jobs would go.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the controller's Docker hosts as it last saw them: health, capacity, running jobs,
    /// and the CPU and memory their job containers use.
    Hosts {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log: who did what (users, keys, jobs, triggers, webhooks, git
    /// credentials, sign-ins, and these commands), when, from where, to what, and how it ended;
    /// the newest entries, oldest first.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries from then on: a time back from now (`7d`, `12h`, `30m`) or a moment (RFC
    /// 3339, `2026-12-01T09:00:00Z`, or a day, `2026-12-01`, from its midnight UTC).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Only entries of this actor: a user's name, email or ID, or `admin:<OS user>` for
    /// ci-admin's.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only entries of this action (`job.cancel`), or of every action of a kind (`job`).
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    pub action: Option<String>,
    /// The newest N entries that match (0: all of them).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Print JSON (an array of entries) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--since`: a time back from when the command runs, or a moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Since {
    Ago(std::time::Duration),
    At(DateTime<Utc>),
}

impl Since {
    fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::At(at) => at,
            Since::Ago(ago) => Duration::from_std(ago)
                .ok()
                .and_then(|ago| now.checked_sub_signed(ago))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every table of an SQLite database into a new, empty PostgreSQL database, in one
    /// transaction, and compare the row counts. Stop ci-server and ci-controller first; the
    /// source is only read (and brought to this version's schema, as any ci binary does).
    Copy {
        /// The SQLite database: sqlite://PATH (e.g. sqlite:///var/lib/ci/ci.db).
        // Parsed after clap, whose own error would repeat a refused URL with its password.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. It must
        /// exist and hold no rows; its schema is created here.
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ImportLegacyArgs {
    /// The prototype's SQLite database (its CI_DB_PATH: by default ~/.ci/jobs.db for its
    /// ci-admin, ci_jobs.db in its server's folder). It is only read.
    pub path: PathBuf,
    /// Give the prototype's jobs that have no owner (from before it had users) to this user,
    /// ours or one being imported; without it they are skipped.
    #[arg(long, value_name = "EMAIL")]
    pub owner_email: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
    },
    /// List all users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user, by ID or email.
    Get {
        /// The user's ID.
        #[arg(required_unless_present = "email", conflicts_with = "email")]
        id: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a user: their keys stop working until they are activated again.
    Deactivate { id: String },
    /// Activate a user.
    Activate { id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user; the key is printed once.
    Create {
        #[command(flatten)]
        user: UserRef,
        /// A name to recognise the key by (e.g. "laptop").
        #[arg(long)]
        name: String,
        /// Make the key expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// What the key may do: `submit` (everything its user may) or `read` (list, follow and
        /// download; not submit, cancel or change anything).
        #[arg(long, default_value = "submit", value_parser = parse_scope)]
        scope: api_keys::KeyScope,
    },
    /// List API keys (all, or one user's).
    List {
        #[command(flatten)]
        user: OptionalUserRef,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by its key ID.
    Revoke { key_id: String },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UserRef {
    /// The user's email.
    #[arg(long)]
    email: Option<String>,
    /// The user's ID.
    #[arg(long)]
    user_id: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct OptionalUserRef {
    /// Only this user's keys (by email).
    #[arg(long)]
    email: Option<String>,
    /// Only this user's keys (by ID).
    #[arg(long)]
    user_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cache entries (all, or one user's), most recently used first.
    List {
        #[command(flatten)]
        user: CacheUserRef,
        #[arg(long)]
        json: bool,
    },
    /// Mark published cache entries for removal (all, one user's, and/or those unused for a
    /// while); the controller removes their volumes on its next sweep.
    Prune {
        #[command(flatten)]
        user: CacheUserRef,
        /// Only entries no job used for longer than this: `30m`, `12h`, `7d`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        unused_for: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct CacheUserRef {
    /// Only this user's entries (by email).
    #[arg(long = "user", visible_alias = "email", value_name = "EMAIL")]
    email: Option<String>,
    /// Only this user's entries (by ID).
    #[arg(long, value_name = "ID")]
    user_id: Option<String>,
}

/// Database connections of ci-admin unless `--db-connections` says otherwise.
pub const DB_CONNECTIONS: u32 = 2;

/// Runs one command, writing its human or JSON output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    // Copying names both databases itself; --database-url is not opened.
    if let Command::Db(command) = cli.command {
        return db_command(command, out).await;
    }
    // The prototype's database is checked before ours is opened (and perhaps created).
    let prototype = match &cli.command {
        Command::ImportLegacy(args) => Some(legacy::Prototype::open(&args.path).await?),
        _ => None,
    };
    let pool = cli.db.open(DB_CONNECTIONS).await?;
    let result = match cli.command {
        Command::User(command) => user_command(&pool, command, out).await,
        Command::Key(command) => key_command(&pool, command, out).await,
        Command::Team(command) => team::run(&pool, command, out).await,
        Command::Cache(command) => cache_command(&pool, command, out).await,
        Command::Hosts { json } => hosts_command(&pool, json, out).await,
        Command::Audit(args) => audit_command(&pool, args, out).await,
        Command::Prune {
            older_than,
            keep_last,
            dry_run,
            json,
        } => prune_command(&pool, older_than, keep_last, dry_run, json, out).await,
        Command::ImportLegacy(args) => {
            let prototype = prototype.expect("opened above");
            import_legacy(&pool, prototype, args, out).await
        }
        Command::Db(_) => unreachable!("handled above"),
    };
    pool.close().await;
    result
}

async fn user_command(pool: &Db, command: UserCommand, out: &mut impl Write) -> Result<()> {
    match command {
        UserCommand::Create { name, email } => {
            let name = name.trim();
            let email = email.trim();
            if name.is_empty() {
                bail!("the name is empty: pass --name \"Full Name\"");
            }
            users::validate_email(email).map_err(|e| anyhow!(e))?;
            let entry = admin().entry(Action::UserCreate, format!("user {email}"));
            let mut tx = pool.begin_write().await?;
            let user = match users::create(&mut tx, name, email).await {
                Ok(user) => user,
                Err(DbError::EmailTaken(email)) => {
                    drop(tx);
                    let failed = entry
                        .outcome(Outcome::Failed)
                        .detail(json!({ "name": name, "error": "email_taken" }));
                    audit::record(pool, &failed).await?;
                    bail!(
                        "a user with the email {email} already exists (see `ci-admin user get --email {email}`)"
                    );
                }
                Err(other) => {
                    return Err(anyhow::Error::new(other).context("cannot create the user"))
                }
            };
            let entry = entry.detail(json!({ "user_id": user.id, "name": user.name }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            writeln!(out, "✓ User created successfully")?;
            writeln!(out, "ID: {}", user.id)?;
            writeln!(out, "Name: {}", user.name)?;
            writeln!(out, "Email: {}", user.email)?;
        }
        UserCommand::List { json } => {
            let all = users::list(pool).await?;
            if json {
                let rows: Vec<_> = all.iter().map(user_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if all.is_empty() {
                writeln!(out, "No users found.")?;
            } else {
                let rows = all.iter().map(|u| {
                    vec![
                        u.id.to_string(),
                        u.name.clone(),
                        u.email.clone(),
                        active_label(u.active).to_owned(),
                        local_time(u.created_at),
                    ]
                });
                write_table(out, &["ID", "NAME", "EMAIL", "STATUS", "CREATED"], rows)?;
            }
        }
        UserCommand::Get { id, email, json } => {
            let user = match (id, email) {
                (Some(id), _) => find_user_by_id(pool, &id).await?,
                (None, Some(email)) => find_user_by_email(pool, &email).await?,
                (None, None) => unreachable!("clap requires an ID or --email"),
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&user_json(&user))?)?;
            } else {
                let keys = api_keys::list(pool, Some(user.id)).await?;
                let active = keys.iter().filter(|k| k.revoked_at.is_none()).count();
                writeln!(out, "ID: {}", user.id)?;
                writeln!(out, "Name: {}", user.name)?;
                writeln!(out, "Email: {}", user.email)?;
                writeln!(out, "Status: {}", active_label(user.active))?;
                writeln!(out, "Created: {}", local_time(user.created_at))?;
                writeln!(out, "API keys: {} ({active} not revoked)", keys.len())?;
            }
        }
        UserCommand::Deactivate { id } => set_active(pool, &id, false, out).await?,
        UserCommand::Activate { id } => set_active(pool, &id, true, out).await?,
    }
    Ok(())
}

async fn set_active(pool: &Db, id: &str, active: bool, out: &mut impl Write) -> Result<()> {
    let user = find_user_by_id(pool, id).await?;
    let mut tx = pool.begin_write().await?;
    let user = users::set_active(&mut tx, user.id, active)
        .await?
        .context("the user vanished")?;
    let action = if active {
        Action::UserActivate
    } else {
        Action::UserDeactivate
    };
    let entry = admin()
        .entry(action, format!("user {}", user.email))
        .detail(json!({ "user_id": user.id, "name": user.name }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    let verb = if active { "activated" } else { "deactivated" };
    writeln!(out, "✓ User {} ({}) {verb}", user.email, user.id)?;
    if !active {
        writeln!(
            out,
            "Their API keys are refused until `ci-admin user activate {}`.",
            user.id
        )?;
    }
    Ok(())
}

async fn key_command(pool: &Db, command: KeyCommand, out: &mut impl Write) -> Result<()> {
    match command {
        KeyCommand::Create {
            user,
            name,
            expires_in_days,
            scope,
        } => {
            let user = resolve_user(pool, user.email, user.user_id).await?;
            let name = name.trim();
            if name.is_empty() {
                bail!("the key name is empty: pass --name, e.g. --name laptop");
            }
            let expires_at = expires_in_days.map(|days| Utc::now() + Duration::days(days.into()));
            let secret = SecretKey::generate();
            let mut tx = pool.begin_write().await?;
            let key =
                api_keys::create_scoped(&mut tx, user.id, name, &secret, expires_at, scope).await?;
            let entry = admin()
                .entry(Action::KeyCreate, format!("key {}", key.label()))
                .detail(json!({
                    "key_id": key.id,
                    "user_id": user.id,
                    "user": user.email,
                    "scope": key.scope,
                    "expires_at": key.expires_at,
                }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            writeln!(out, "✓ API key created successfully")?;
            writeln!(out, "Key ID: {}", key.id)?;
            writeln!(out, "Name: {}", key.name)?;
            writeln!(out, "User: {} ({})", user.email, user.id)?;
            writeln!(out, "Scope: {}", key.scope.as_str())?;
            if let Some(at) = key.expires_at {
                writeln!(out, "Expires: {}", local_time(at))?;
            }
            writeln!(out, "API Key: {}", secret.expose())?;
            writeln!(out)?;
            writeln!(
                out,
                "⚠ Save this key now: it is shown only once and cannot be recovered."
            )?;
        }
        KeyCommand::List { user, json } => {
            let owner = optional_user(pool, user.email, user.user_id).await?;
            let keys = api_keys::list(pool, owner.as_ref().map(|u| u.id)).await?;
            let emails = user_emails(pool).await?;
            let now = Utc::now();
            if json {
                let rows: Vec<_> = keys.iter().map(|k| key_json(k, &emails, now)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if keys.is_empty() {
                writeln!(out, "No API keys found.")?;
            } else {
                let rows = keys.iter().map(|k| {
                    vec![
                        k.id.to_string(),
                        hint_cell(k),
                        k.name.clone(),
                        emails.get(&k.user_id).cloned().unwrap_or_default(),
                        k.scope.as_str().to_owned(),
                        k.state(now).label().to_owned(),
                        local_time(k.created_at),
                        k.last_used_at
                            .map(local_time)
                            .unwrap_or_else(|| "never".to_owned()),
                    ]
                });
                let header = [
                    "KEY ID",
                    "HINT",
                    "NAME",
                    "USER",
                    "SCOPE",
                    "STATUS",
                    "CREATED",
                    "LAST USED",
                ];
                write_table(out, &header, rows)?;
            }
        }
        KeyCommand::Revoke { key_id } => {
            let id: ApiKeyId = key_id.parse().map_err(|_| unknown_key(&key_id))?;
            let mut tx = pool.begin_write().await?;
            let key = api_keys::revoke(&mut tx, id, Utc::now())
                .await?
                .ok_or_else(|| unknown_key(&key_id))?;
            let entry = admin()
                .entry(Action::KeyRevoke, format!("key {}", key.label()))
                .detail(json!({ "key_id": key.id, "user_id": key.user_id }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            writeln!(out, "✓ API key revoked: {} ({})", key.label(), key.id)?;
        }
    }
    Ok(())
}

async fn hosts_command(pool: &Db, json: bool, out: &mut impl Write) -> Result<()> {
    let hosts = ci_common::db::docker_hosts::list(pool).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&hosts)?)?;
        return Ok(());
    }
    if hosts.is_empty() {
        writeln!(
            out,
            "No Docker hosts recorded: no controller has run on this database yet."
        )?;
        return Ok(());
    }
    let dash = || "-".to_owned();
    let rows = hosts.iter().map(|h| {
        vec![
            h.name.clone(),
            if h.healthy {
                "healthy".to_owned()
            } else {
                match h.unhealthy_at {
                    Some(since) => format!("not answering since {}", local_time(since)),
                    None => "not answering".to_owned(),
                }
            },
            h.capacity.map_or_else(dash, |c| c.to_string()),
            h.running.to_string(),
            h.cpu_millicores
                .map_or_else(dash, |m| format!("{:.2}", m as f64 / 1000.0)),
            h.memory_bytes
                .map_or_else(dash, |b| ci_common::config::human_bytes(b.max(0) as u64)),
            local_time(h.checked_at),
            h.url.clone(),
        ]
    });
    let header = [
        "HOST", "HEALTH", "CAPACITY", "RUNNING", "CPU", "MEMORY", "CHECKED", "URL",
    ];
    write_table(out, &header, rows)?;
    for h in hosts.iter().filter(|h| !h.healthy) {
        if let Some(error) = &h.error {
            writeln!(out, "{}: {error}", h.name)?;
        }
    }
    Ok(())
}

async fn cache_command(pool: &Db, command: CacheCommand, out: &mut impl Write) -> Result<()> {
    match command {
        CacheCommand::List { user, json } => {
            let owner = optional_user(pool, user.email, user.user_id).await?;
            let entries = cache::list(pool, owner.map(|u| u.id)).await?;
            let emails = user_emails(pool).await?;
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| cache_entry_json(e, &emails))
                    .collect::<Result<_, _>>()?;
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if entries.is_empty() {
                writeln!(out, "No cache entries found.")?;
            } else {
                let rows = entries.iter().map(|e| {
                    vec![
                        emails
                            .get(&e.user_id)
                            .cloned()
                            .unwrap_or_else(|| e.user_id.to_string()),
                        e.key.get(..12).unwrap_or(&e.key).to_owned(),
                        cache_state_label(e.state).to_owned(),
                        match e.state {
                            // Known once the install passed.
                            CacheState::Building => "-".to_owned(),
                            _ => ci_common::config::human_bytes(e.size_bytes.max(0) as u64),
                        },
                        e.hits.to_string(),
                        local_time(e.last_used_at),
                        e.volume.clone(),
                    ]
                });
                let header = [
                    "USER",
                    "KEY",
                    "STATE",
                    "SIZE",
                    "HITS",
                    "LAST USED",
                    "VOLUME",
                ];
                write_table(out, &header, rows)?;
                let ready: Vec<&CacheEntry> = entries
                    .iter()
                    .filter(|e| e.state == CacheState::Ready)
                    .collect();
                let bytes: i64 = ready.iter().map(|e| e.size_bytes.max(0)).sum();
                writeln!(
                    out,
                    "Total: {}; {} ready, {}",
                    entries_count(entries.len() as u64),
                    ready.len(),
                    ci_common::config::human_bytes(bytes as u64),
                )?;
            }
        }
        CacheCommand::Prune {
            user,
            unused_for,
            json,
        } => {
            let owner = optional_user(pool, user.email, user.user_id).await?;
            let mut tx = pool.begin_write().await?;
            let marked = cache::prune(&mut tx, owner.as_ref().map(|u| u.id), unused_for)
                .await
                .context("cannot mark the cache entries for removal")?;
            let target = match &owner {
                Some(user) => format!("cache of {}", user.email),
                None => "cache".to_owned(),
            };
            let entry = admin().entry(Action::CachePrune, target).detail(json!({
                "marked": marked,
                "unused_for_secs": unused_for.map(|d| d.as_secs()),
            }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            if json {
                let body = serde_json::json!({ "marked": marked });
                writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
            } else if marked == 0 {
                writeln!(
                    out,
                    "No ready cache entries matched: nothing marked for removal."
                )?;
            } else {
                writeln!(
                    out,
                    "✓ Marked {} for removal; the controller removes their volumes within 30 s \
                     (once no running job uses them).",
                    entries_count(marked)
                )?;
            }
        }
    }
    Ok(())
}

/// This command's actor in the audit log: `admin:<OS user>`, the user who ran it (the one who
/// ran `sudo`, under sudo), from the machine itself.
fn admin() -> Actor {
    Actor::admin(&os_user())
}

/// The operating system's user running this command: `SUDO_USER` (who ran `sudo`), else `USER`,
/// else `LOGNAME`; without those (a container's environment), the process's user as
/// `/etc/passwd` names it, or `uid <N>`.
fn os_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .unwrap_or_else(process_user)
}

/// The name of the user owning this process (the owner of `/proc/self`), or `uid <N>`.
fn process_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".to_owned();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse() == Ok(uid)).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

async fn audit_command(pool: &Db, args: AuditArgs, out: &mut impl Write) -> Result<()> {
    // An email names its user by ID, which the rows keep beside the name.
    let actor = match args.actor.as_deref().map(str::trim) {
        Some(email) if email.contains('@') => {
            Some(find_user_by_email(pool, email).await?.id.to_string())
        }
        other => other.map(str::to_owned),
    };
    let filter = AuditFilter {
        since: args.since.map(|s| s.at(Utc::now())),
        actor,
        action: args.action,
        limit: (args.limit > 0).then_some(i64::from(args.limit)),
    };
    let rows = audit::list(pool, &filter).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "No audit entries found.")?;
        return Ok(());
    }
    let table = rows.iter().map(|r: &AuditRecord| {
        vec![
            local_time(r.at),
            r.actor.clone(),
            r.source.clone(),
            r.action.clone(),
            r.target.clone(),
            r.outcome.as_str().to_owned(),
            detail_cell(&r.detail),
        ]
    });
    let header = [
        "TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "OUTCOME", "DETAIL",
    ];
    write_table(out, &header, table)?;
    if filter.limit == Some(rows.len() as i64) {
        writeln!(
            out,
            "(only the newest {} shown: --limit N shows more, --limit 0 all)",
            rows.len()
        )?;
    }
    Ok(())
}

/// An entry's detail in a table: `key=value` pairs (`{}`: `-`).
fn detail_cell(detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::Object(map) if map.is_empty() => "-".to_owned(),
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// `--since`: RFC 3339 (`2026-12-01T09:00:00Z`), a day (`2026-12-01`, midnight UTC), or a
/// duration back from now ([`parse_duration`]: `7d`).
fn parse_since(s: &str) -> Result<Since, String> {
    let text = s.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Since::At(
            day.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        ));
    }
    parse_duration(text)
        .map(Since::Ago)
        .map_err(|e| format!("{e}; or give a moment, e.g. 2026-12-01T09:00:00Z or 2026-12-01"))
}

/// `--action`: an action's dotted name, or the kind before its dot.
fn parse_action(s: &str) -> Result<String, String> {
    let text = s.trim();
    let known = Action::ALL.iter().any(|a| {
        a.as_str() == text || a.as_str().split_once('.').map(|(kind, _)| kind) == Some(text)
    });
    if known {
        Ok(text.to_owned())
    } else {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        Err(format!(
            "unknown action {text:?}: give one of {}, or the part before a dot (e.g. job)",
            names.join(", ")
        ))
    }
}

/// `1 cache entry`, `2 cache entries`.
fn entries_count(n: u64) -> String {
    if n == 1 {
        "1 cache entry".to_owned()
    } else {
        format!("{n} cache entries")
    }
}

fn cache_state_label(state: CacheState) -> &'static str {
    match state {
        CacheState::Building => "Building",
        CacheState::Ready => "Ready",
        CacheState::Removing => "Removing",
    }
}

/// A cache entry as `--json` shows it: its stored fields, plus its owner's email.
fn cache_entry_json(
    entry: &CacheEntry,
    emails: &HashMap<UserId, String>,
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(entry)?;
    value["user_email"] = serde_json::json!(emails.get(&entry.user_id));
    Ok(value)
}

/// `30m`, `12h`, `7d`, `90s`: [`ci_common::config::parse_duration`], but a unit is required (a
/// bare number is more likely meant as days than as the seconds it would be).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if !s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("{s:?} has no unit: use s, m, h or d, e.g. 7d"));
    }
    ci_common::config::parse_duration(s)
}

async fn prune_command(
    pool: &Db,
    older_than: std::time::Duration,
    keep_last: u32,
    dry_run: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let rule = ci_common::db::retention::Rule {
        older_than: Duration::from_std(older_than).context("--older-than is too long")?,
        keep_last,
    };
    let now = Utc::now();
    let pruned = ci_common::db::retention::prune(pool, rule, now, dry_run).await;
    if !dry_run {
        // The prune's small batches are transactions of their own: its row comes after them.
        let cutoff = ci_common::db::timestamp(now - rule.older_than);
        let entry = admin().entry(
            Action::JobPrune,
            format!(
                "jobs ended before {}",
                cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
        let settings = json!({ "older_than_secs": older_than.as_secs(), "keep_last": keep_last });
        let entry = match &pruned {
            Ok(p) => {
                let mut detail = settings;
                detail["jobs"] = json!(p.jobs);
                detail["events"] = json!(p.events);
                entry.detail(detail)
            }
            Err(_) => entry.outcome(Outcome::Failed).detail(settings),
        };
        audit::record(pool, &entry).await?;
    }
    let pruned = pruned?;
    if json {
        let mut value = serde_json::to_value(&pruned)?;
        value["dry_run"] = serde_json::json!(dry_run);
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else if dry_run {
        writeln!(
            out,
            "Would delete {} job(s) with {} log line(s) (dry run: nothing deleted).",
            pruned.jobs, pruned.events
        )?;
    } else {
        writeln!(
            out,
            "Deleted {} job(s) with {} log line(s). On SQLite the freed pages are reused by new \
             rows; `VACUUM` (with the service stopped) gives them back to the file system.",
            pruned.jobs, pruned.events
        )?;
    }
    Ok(())
}

async fn db_command(command: DbCommand, out: &mut impl Write) -> Result<()> {
    let DbCommand::Copy { from, to, json } = command;
    let from: db::DatabaseUrl = from.parse().context("--from")?;
    let to: db::DatabaseUrl = to.parse().context("--to")?;
    let Some(path) = from.sqlite_path() else {
        bail!("--from must be an SQLite database (sqlite://PATH), not {from}");
    };
    let db::DatabaseUrl::Postgres(url) = &to else {
        bail!("--to must be a PostgreSQL database (postgres://USER@HOST:PORT/DATABASE), not {to}");
    };
    if !path.is_file() {
        bail!("there is no SQLite database at {}", path.display());
    }
    let source = db::connect(path, 2)
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    let settings = db::PostgresSettings {
        max_connections: 2,
        statement_timeout: None,
    };
    let target = db::connect_postgres(url, &settings).await?;
    let copied = db::copy::sqlite_to_postgres(&source, &target).await;
    source.close().await;
    target.close().await;
    let report = copied?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let rows: i64 = report.tables.iter().map(|t| t.rows).sum();
        writeln!(
            out,
            "copied {} in {} from {from} to {to}; the row counts match:",
            count(rows, "row"),
            count(report.tables.len() as i64, "table"),
        )?;
        for table in &report.tables {
            writeln!(out, "  {:<18} {:>10}", table.table, table.rows)?;
        }
        if report.nul_replaced > 0 {
            writeln!(
                out,
                "{} held NUL characters, which PostgreSQL cannot store: each became U+FFFD",
                count(report.nul_replaced as i64, "text value")
            )?;
        }
    }
    Ok(())
}

async fn import_legacy(
    pool: &Db,
    prototype: legacy::Prototype,
    args: ImportLegacyArgs,
    out: &mut impl Write,
) -> Result<()> {
    let mut tx = pool.begin_write().await?;
    let summary = prototype
        .import_into(&mut tx, args.owner_email.as_deref())
        .await?;
    let entry = admin()
        .entry(
            Action::LegacyImport,
            format!("legacy {}", args.path.display()),
        )
        .detail(json!({
            "users": summary.users.imported,
            "keys": summary.keys.imported,
            "jobs": summary.jobs.imported,
            "owner_email": args.owner_email,
        }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        write!(
            out,
            "{}",
            import_report(&summary, args.owner_email.as_deref())
        )?;
    }
    Ok(())
}

/// What `import-legacy` says: one summary line, then a note per thing worth knowing.
fn import_report(s: &ImportSummary, owner_email: Option<&str>) -> String {
    let mut line = if s.changed {
        let mut jobs = vec![count(s.log_lines, "log line")];
        if s.unfinished_jobs > 0 {
            jobs.push(format!("{} unfinished, now lost", s.unfinished_jobs));
        }
        format!(
            "imported {}, {}, {}",
            tally(s.users.imported, "user", s.users.already_there, vec![]),
            tally(
                s.keys.imported,
                "key",
                s.keys.already_there,
                (s.revoked_keys > 0)
                    .then(|| format!("{} revoked", s.revoked_keys))
                    .into_iter()
                    .collect()
            ),
            tally(s.jobs.imported, "job", s.jobs.already_there, jobs),
        )
    } else {
        format!(
            "nothing new to import: {}, {} and {} were already there",
            count(s.users.already_there, "user"),
            count(s.keys.already_there, "key"),
            count(s.jobs.already_there, "job"),
        )
    };
    let k = &s.skipped;
    let skipped: Vec<String> = [
        (
            k.jobs_without_owner,
            "job without an owner (pass --owner-email EMAIL to give them to a user)",
            "jobs without an owner (pass --owner-email EMAIL to give them to a user)",
        ),
        (
            k.jobs_of_unknown_users,
            "job of an unknown user",
            "jobs of unknown users",
        ),
        (
            k.keys_of_unknown_users,
            "key of an unknown user",
            "keys of unknown users",
        ),
        (
            k.keys_with_bad_hash,
            "key whose hash is not SHA-256 hex",
            "keys whose hash is not SHA-256 hex",
        ),
        (
            k.events_of_other_types,
            "event that is neither log nor complete",
            "events that are neither log nor complete",
        ),
    ]
    .into_iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
    .collect();
    if !skipped.is_empty() {
        line.push_str("; skipped ");
        line.push_str(&skipped.join(", "));
    }
    line.push('\n');
    for m in &s.matched_by_email {
        line.push_str(&format!(
            "note: the prototype's user {} ({}) is the existing user {}: its keys and jobs went to that user\n",
            m.prototype_id, m.email, m.user_id
        ));
    }
    if s.jobs_given_to_owner > 0 {
        line.push_str(&format!(
            "note: {} without an owner went to {}\n",
            count(s.jobs_given_to_owner, "job"),
            owner_email.unwrap_or_default()
        ));
    }
    for id in &s.new_ids {
        line.push_str(&format!(
            "note: the prototype's {} id {:?} is not a UUID: it is now {}\n",
            id.kind, id.prototype_id, id.id
        ));
    }
    if s.before_authentication {
        line.push_str("note: this database is from before the prototype had users: it holds no users or keys\n");
    }
    line
}

/// `3 jobs (41 log lines, 1 already there)`.
fn tally(imported: i64, noun: &str, already_there: i64, mut details: Vec<String>) -> String {
    if already_there > 0 {
        details.push(format!("{already_there} already there"));
    }
    let mut text = count(imported, noun);
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    text
}

/// `1 job`, `2 jobs`.
fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A user as `--json` shows it: our fields, plus the prototype's `is_active` (the same as
/// `active`), so that its users' scripts keep working.
fn user_json(user: &User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "active": user.active,
        "is_active": user.active,
        "created_at": user.created_at,
    })
}

/// A key's hint for tables: `…3fQz`, or `-` for keys issued before hints.
fn hint_cell(key: &ApiKey) -> String {
    if key.hint.is_empty() {
        "-".to_owned()
    } else {
        key.hint.clone()
    }
}

/// A key as `--json` shows it: our fields, plus the prototype's `is_active` (true while the key
/// can be used: not revoked, not expired). No part of the secret but its last four characters.
fn parse_scope(s: &str) -> Result<api_keys::KeyScope, String> {
    s.parse()
}

fn key_json(
    key: &ApiKey,
    emails: &HashMap<UserId, String>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "id": key.id,
        "user_id": key.user_id,
        "user_email": emails.get(&key.user_id),
        "name": key.name,
        "hint": key.hint,
        "scope": key.scope,
        "status": key.state(now),
        "is_active": key.state(now) == api_keys::KeyState::Active,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    })
}

async fn resolve_user(pool: &Db, email: Option<String>, id: Option<String>) -> Result<User> {
    match (email, id) {
        (Some(email), _) => find_user_by_email(pool, &email).await,
        (None, Some(id)) => find_user_by_id(pool, &id).await,
        (None, None) => bail!("name the user with --email or --user-id"),
    }
}

/// The user an optional email or ID names, if either is given.
async fn optional_user(
    pool: &Db,
    email: Option<String>,
    id: Option<String>,
) -> Result<Option<User>> {
    Ok(match (email, id) {
        (None, None) => None,
        (email, id) => Some(resolve_user(pool, email, id).await?),
    })
}

/// Every user's email, by ID (for tables and JSON that show whose a row is).
async fn user_emails(pool: &Db) -> Result<HashMap<UserId, String>> {
    Ok(users::list(pool)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect())
}

async fn find_user_by_id(pool: &Db, id: &str) -> Result<User> {
    let unknown =
        || anyhow!("user not found: no user with the ID {id:?} (see `ci-admin user list`)");
    let id: UserId = id.parse().map_err(|_| unknown())?;
    users::get(pool, id).await?.ok_or_else(unknown)
}

async fn find_user_by_email(pool: &Db, email: &str) -> Result<User> {
    users::find_by_email(pool, email.trim())
        .await?
        .ok_or_else(|| {
            anyhow!(
                "user not found with email: {email:?} (see `ci-admin user list`, or create one with `ci-admin user create`)"
            )
        })
}

fn unknown_key(id: &str) -> anyhow::Error {
    anyhow!("API key not found: no key with the ID {id:?} (see `ci-admin key list`)")
}

fn active_label(active: bool) -> &'static str {
    if active {
        "Active"
    } else {
        "Inactive"
    }
}

fn local_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Writes a left-aligned table with a header row.
fn write_table(
    out: &mut impl Write,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_owned(), "✓".to_owned()],
            vec!["long".to_owned(), "x".to_owned()],
        ];
        write_table(&mut out, &["ID", "OK"], rows.into_iter()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    OK\na     ✓\nlong  x\n"
        );
    }

    #[test]
    fn the_import_report_says_what_was_imported_skipped_and_already_there() {
        use ci_common::db::legacy::{EmailMatch, Skipped, Tally};
        let first = ImportSummary {
            changed: true,
            users: Tally {
                imported: 2,
                already_there: 1,
            },
            keys: Tally {
                imported: 2,
                already_there: 0,
            },
            jobs: Tally {
                imported: 5,
                already_there: 0,
            },
            log_lines: 41,
            revoked_keys: 1,
            unfinished_jobs: 1,
            skipped: Skipped {
                jobs_without_owner: 1,
                ..Skipped::default()
            },
            matched_by_email: vec![EmailMatch {
                prototype_id: "p-1".into(),
                email: "ada@example.com".into(),
                user_id: UserId(uuid::Uuid::nil()),
            }],
            ..ImportSummary::default()
        };
        assert_eq!(
            import_report(&first, None),
            "imported 2 users (1 already there), 2 keys (1 revoked), 5 jobs (41 log lines, 1 \
             unfinished, now lost); skipped 1 job without an owner (pass --owner-email EMAIL to \
             give them to a user)\n\
             note: the prototype's user p-1 (ada@example.com) is the existing user \
             00000000-0000-0000-0000-000000000000: its keys and jobs went to that user\n"
        );
        let again = ImportSummary {
            users: Tally {
                imported: 0,
                already_there: 3,
            },
            keys: Tally {
                imported: 0,
                already_there: 2,
            },
            jobs: Tally {
                imported: 0,
                already_there: 1,
            },
            jobs_given_to_owner: 0,
            ..ImportSummary::default()
        };
        assert_eq!(
            import_report(&again, Some("ada@example.com")),
            "nothing new to import: 3 users, 2 keys and 1 job were already there\n"
        );
    }

    #[test]
    fn durations_take_seconds_minutes_hours_and_days_and_need_a_unit() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(30 * 60));
        assert_eq!(secs("12h"), Ok(12 * 3600));
        assert_eq!(secs("7d"), Ok(7 * 86400));
        assert_eq!(secs(" 2 days "), Ok(2 * 86400));
        assert_eq!(secs("0s"), Ok(0));
        assert!(secs("7").unwrap_err().contains("no unit"));
        assert!(secs("7w").unwrap_err().contains("unknown unit"));
        assert_eq!(secs("1.5h"), Ok(5400));
        for bad in ["d", "-1d"] {
            assert!(
                secs(bad).unwrap_err().contains("is not a duration"),
                "{bad}"
            );
        }
        assert_eq!(
            secs("36500d"),
            Ok(ci_common::config::MAX_DURATION.as_secs())
        );
        for too_long in ["36501d", "1000000000d", "99999999999999999d"] {
            assert!(
                secs(too_long).unwrap_err().contains("too long"),
                "{too_long}"
            );
        }
    }

    #[test]
    fn since_takes_a_time_back_a_moment_or_a_day() {
        let now = "2026-12-08T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let at = |s: &str| parse_since(s).map(|since| since.at(now).to_rfc3339());
        assert_eq!(at("7d"), Ok("2026-12-01T12:00:00+00:00".to_owned()));
        assert_eq!(
            at("2026-12-01T09:30:00+01:00"),
            Ok("2026-12-01T08:30:00+00:00".to_owned())
        );
        assert_eq!(at("2026-12-01"), Ok("2026-12-01T00:00:00+00:00".to_owned()));
        assert!(at("yesterday").unwrap_err().contains("2026-12-01"));
    }

    #[test]
    fn actions_are_named_whole_or_by_their_kind() {
        assert_eq!(parse_action("job.cancel"), Ok("job.cancel".to_owned()));
        assert_eq!(
            parse_action("git_credential"),
            Ok("git_credential".to_owned())
        );
        assert!(parse_action("jobs").unwrap_err().contains("job.submit"));
    }

    #[test]
    fn details_read_as_pairs_in_tables() {
        assert_eq!(detail_cell(&json!({})), "-");
        assert_eq!(
            detail_cell(&json!({"task": "test", "bytes": 12, "project": null})),
            "bytes=12 task=test"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
