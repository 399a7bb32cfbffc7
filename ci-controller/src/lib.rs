//! `ci-controller`: the single process that turns queued jobs into results. It claims jobs from
//! the database, runs each in locked-down Docker containers (dependencies, then pytest), streams
//! their output into `job_events`, and survives its own crashes by reattaching to the containers
//! it finds on start.

pub mod archive;
pub mod config;
pub mod docker;
pub mod error;
pub mod host_path;
pub mod logs;
pub mod metrics;
pub mod runner;
pub mod sandbox;
mod scheduler;
mod singleton;

#[cfg(test)]
mod docker_double;

use std::sync::Arc;

use anyhow::Context as _;
use ci_common::db::{lease, policy};
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
use crate::scheduler::Scheduler;

/// Database connections of the controller unless `--db-connections` says otherwise.
pub const DB_CONNECTIONS: u32 = 8;

/// Runs the controller until `shutdown` is cancelled (SIGTERM/SIGINT) or it loses its lease.
///
/// On shutdown the controller stops claiming jobs, writes the log lines it has read, and
/// **leaves running job containers alone**: the next controller reattaches to them and continues
/// their logs from the stored cursor, so a restart (an upgrade, a deploy) neither kills the
/// users' jobs nor loses output. It then releases its lease and its lock and returns `Ok`.
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let docker = BollardDocker::connect(args.docker_host.as_deref())
        .await
        .context("cannot connect to Docker: is the daemon running and is DOCKER_HOST (or --docker-host) right?")?;
    let (installed, default_runtime) = docker
        .runtimes()
        .await
        .context("cannot ask Docker for its runtimes (docker info)")?;
    let runtimes = Runtimes::resolve(&args, &installed, default_runtime.as_deref())
        .map_err(anyhow::Error::msg)?;
    for (what, runtime) in [("without", &runtimes.offline), ("with", &runtimes.online)] {
        if let Some(name) = &runtime.name {
            info!(
                runtime = name,
                gvisor = runtime.gvisor,
                "steps {what} network run in {name}"
            );
        }
    }
    let memory = i64::try_from(args.memory).unwrap_or(i64::MAX);
    if let Some(fits) = [&runtimes.offline, &runtimes.online]
        .into_iter()
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
    let mut sandbox = Sandbox::from_args(&args, runtimes);
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

    // Job containers mount those files from where the Docker host sees them.
    let host = HostPaths::discover(&docker)
        .await
        .context("cannot ask Docker about the controller's own container")?;
    sandbox.plugins_dir = host.translate(&plugins_dir)?;
    sandbox.identity_dir = host.translate(&identity_dir)?;
    let metrics = Arc::new(Metrics::default());
    metrics.set_epoch(epoch);
    let ctx = Arc::new(Ctx {
        docker,
        db: db.clone(),
        epoch,
        policy,
        sandbox,
        settings: JobSettings {
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
            uid,
            gid,
        },
        metrics: metrics.clone(),
        image_seen: Default::default(),
        pip_cache_busy: Default::default(),
    });

    if let Some(addr) = args.metrics_addr {
        metrics::start(&metrics, &db, addr, shutdown.clone()).await?;
    }

    let mut scheduler = Scheduler::new(
        ctx,
        args.max_concurrent(),
        args.interval(),
        shutdown.clone(),
    );
    scheduler
        .reconcile(true)
        .await
        .context("startup reconciliation failed")?;
    println!("controller ready (epoch {epoch})");
    let result = scheduler.run().await;
    scheduler.detach_all().await;
    if let Err(e) = lease::release(&db, epoch).await {
        warn!("cannot release the lease: {e}");
    }
    lock.release().await;
    db.close().await;
    info!("controller stopped");
    result
}
