//! `ci-controller`: the single process that turns queued jobs into results. It claims jobs from
//! the database, runs each in locked-down Docker containers (dependencies, then pytest), streams
//! their output into `job_events`, and survives its own crashes by reattaching to the containers
//! it finds on start.

pub mod archive;
pub mod config;
pub mod docker;
pub mod error;
pub mod fleet;
pub mod host_path;
pub mod hosts;
pub mod logs;
pub mod metrics;
pub mod runner;
pub mod sandbox;
mod scheduler;
mod singleton;
pub mod webhooks;

#[cfg(test)]
mod docker_double;

use std::sync::Arc;

use anyhow::Context as _;
use ci_common::db::{docker_hosts, lease, policy};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Args;
pub use singleton::AnotherController;

use crate::docker::BollardDocker;
use crate::host_path::HostPaths;
use crate::logs::LogCap;
use crate::metrics::Metrics;
use crate::runner::{Ctx, JobSettings};
use crate::sandbox::{Runtimes, Sandbox};
use crate::scheduler::{Host, HostTiming, Scheduler};

/// Database connections of the controller unless `--db-connections` says otherwise.
pub const DB_CONNECTIONS: u32 = 8;

/// Runs the controller until `shutdown` is cancelled (SIGTERM/SIGINT) or it loses its lease.
///
/// On shutdown the controller stops claiming jobs, writes the log lines it has read, and
/// **leaves running job containers alone**: the next controller reattaches to them and continues
/// their logs from the stored cursor, so a restart (an upgrade, a deploy) neither kills the
/// users' jobs nor loses output. It then releases its lease and its lock and returns `Ok`.
/// How often `--retain` looks for jobs to delete.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// `--retain`: deletes the jobs `rule` selects now and then every [`PRUNE_EVERY`], until `stop`
/// (see [`ci_common::db::retention`]: small paced batches, never a queued or running job). A
/// prune under way stops with `stop` too, so that shutting down never waits for a long one: each
/// of its statements is a transaction of its own, and the next prune finishes a job it left
/// half deleted.
async fn prune_old_jobs(
    db: ci_common::db::Db,
    rule: ci_common::db::retention::Rule,
    stop: CancellationToken,
) {
    loop {
        let pruned = tokio::select! {
            () = stop.cancelled() => return,
            pruned = ci_common::db::retention::prune(&db, rule, chrono::Utc::now(), false) => pruned,
        };
        match pruned {
            Ok(pruned) if pruned.jobs > 0 => {
                info!(
                    jobs = pruned.jobs,
                    events = pruned.events,
                    "deleted jobs past --retain"
                );
            }
            Ok(_) => {}
            Err(e) => warn!("cannot delete jobs past --retain: {e}"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let specs = args.hosts().map_err(anyhow::Error::msg)?;
    let mut engines = Vec::with_capacity(specs.len());
    for spec in &specs {
        let docker = BollardDocker::connect(spec).await.with_context(|| {
            format!(
                "cannot connect to the Docker host {} ({}): is its daemon running and is its \
                 address right (DOCKER_HOST, --docker-host or --docker-hosts-file)?",
                spec.name,
                spec.shown_url()
            )
        })?;
        let (installed, default_runtime) = docker.runtimes().await.with_context(|| {
            format!(
                "cannot ask the Docker host {} for its runtimes (docker info)",
                spec.name
            )
        })?;
        let runtimes = Runtimes::resolve(&args, &installed, default_runtime.as_deref())
            .map_err(|e| anyhow::anyhow!("Docker host {}: {e}", spec.name))?;
        for (what, runtime) in [("without", &runtimes.offline), ("with", &runtimes.online)] {
            if let Some(name) = &runtime.name {
                info!(
                    host = spec.name,
                    runtime = name,
                    gvisor = runtime.gvisor,
                    "steps {what} network run in {name}"
                );
            }
        }
        engines.push((spec, docker, runtimes));
    }
    let memory = i64::try_from(args.memory).unwrap_or(i64::MAX);
    if let Some(fits) = engines
        .iter()
        .flat_map(|(_, _, runtimes)| [&runtimes.offline, &runtimes.online])
        .find_map(|runtime| runtime.pids_limit_past_memory(args.pids_limit, memory))
    {
        warn!(
            "under gVisor a forked process costs up to 20 MiB: a job forking without end \
             fills --memory after about {fits} processes, before --pids-limit {} is \
             reached, and ends out of memory; --pids-limit {fits} makes fork fail first",
            args.pids_limit
        );
    }
    let db = args.db.open(DB_CONNECTIONS).await?;
    let Some(lock) = singleton::lock(&args, &db, &shutdown).await? else {
        return Ok(());
    };
    let holder = singleton::holder();
    let lease = lease::acquire(&db, &holder)
        .await
        .context("cannot take the controller lease")?;
    let epoch = lease.epoch;
    info!(epoch, holder, "holding the controller lease");

    let policy = args.policy();
    policy::publish(&db, epoch, &policy)
        .await
        .context("cannot publish the operator policy")?;
    let (uid, gid) = args.uid_gid();
    let (plugins_dir, identity_dir) = (args.plugins_dir(), args.identity_dir());
    sandbox::write_plugins(&plugins_dir).with_context(|| {
        format!(
            "cannot write ci's pytest plugin into {} (set --state-dir to a writable folder)",
            plugins_dir.display()
        )
    })?;
    sandbox::write_identity(&identity_dir, uid, gid).with_context(|| {
        format!(
            "cannot write the job user's passwd and group files into {} (set --state-dir to a writable folder)",
            identity_dir.display()
        )
    })?;
    let settings = JobSettings {
        job_timeout: args.job_timeout,
        stop_grace: args.stop_grace,
        max_line_bytes: args.max_line_bytes as usize,
        log_cap: LogCap {
            lines: args.log_cap_lines,
            bytes: args.log_cap_bytes,
        },
        workspace_size: args.workspace_size,
        report_max_bytes: args.report_max_bytes,
        cache: args.cache_bounds(),
        installer: args.installer,
        source_retain: args.source_retain,
        artifact_retain: args.artifact_retain,
        git_timeout: args.git_timeout,
        max_running_per_user: args.max_running_per_user,
        secrets: args
            .secrets_key_file
            .as_deref()
            .map(ci_common::secrets::SecretsKey::from_file)
            .transpose()?,
        uid,
        gid,
    };
    let metrics = Arc::new(Metrics::default());
    metrics.set_epoch(epoch);
    let mut hosts = Vec::with_capacity(engines.len());
    for (spec, docker, runtimes) in engines {
        let mut sandbox = Sandbox::from_args(&args, runtimes);
        // Job containers mount those files from where the Docker host sees them.
        let host = HostPaths::discover(&docker).await.with_context(|| {
            format!(
                "cannot ask the Docker host {} about the controller's own container",
                spec.name
            )
        })?;
        sandbox.plugins_dir = host.translate(&plugins_dir)?;
        sandbox.identity_dir = host.translate(&identity_dir)?;
        let ctx = Arc::new(Ctx {
            host: spec.name.clone(),
            docker,
            db: db.clone(),
            epoch,
            policy: policy.clone(),
            sandbox,
            settings: settings.clone(),
            metrics: metrics.clone(),
            image_seen: Default::default(),
            pip_cache_busy: Default::default(),
        });
        hosts.push(Host::new(
            ctx,
            spec.shown_url(),
            spec.capacity.map(|c| c.get()),
        ));
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    docker_hosts::retain(&db, epoch, &names)
        .await
        .context("cannot record the Docker hosts")?;

    if let Some(addr) = args.metrics_addr {
        metrics::start(&metrics, &db, addr, shutdown.clone()).await?;
    }

    let timing = HostTiming {
        check_every: args.host_check_interval,
        lost_after: args.host_lost_after,
    };
    let mut scheduler = Scheduler::new(
        hosts,
        timing,
        args.max_concurrent(),
        args.interval(),
        shutdown.clone(),
    );
    scheduler
        .reconcile(true)
        .await
        .context("startup reconciliation failed")?;
    println!("controller ready (epoch {epoch})");
    // Webhooks are sent while this controller holds the lease, beside the scheduler and
    // never in its way.
    let allow = policy
        .webhook_allowlist()
        .context("cannot read the --webhook-allow rules")?;
    let sending = shutdown.child_token();
    let sender = tokio::spawn(webhooks::run(
        db.clone(),
        epoch,
        allow,
        args.webhook_settings(),
        sending.clone(),
    ));
    let pruner = (!args.retain.is_zero()).then(|| {
        tokio::spawn(prune_old_jobs(
            db.clone(),
            ci_common::db::retention::Rule {
                older_than: chrono::Duration::from_std(args.retain)
                    .unwrap_or(chrono::Duration::MAX),
                keep_last: args.retain_keep_last,
            },
            sending.clone(),
        ))
    });
    let result = scheduler.run().await;
    sending.cancel();
    let _ = sender.await;
    if let Some(pruner) = pruner {
        let _ = pruner.await;
    }
    scheduler.detach_all().await;
    if let Err(e) = lease::release(&db, epoch).await {
        warn!("cannot release the lease: {e}");
    }
    lock.release().await;
    db.close().await;
    info!("controller stopped");
    result
}
