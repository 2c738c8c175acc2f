//! Ferry's event sources, which run beside the controller rather than in
//! the data plane.
//!
//! - [`schedule`]: a PingSource's cron schedule in its time zone (pure).
//! - [`ping`]: a validated PingSource and the event each tick sends (pure).
//! - [`scheduler`]: the one task that fires every PingSource's ticks.
//! - [`sink`]: sending a source's event to its sink, with retries, counted.
//! - [`container`]: a ContainerSource's command as a local process (the
//!   standalone form of its Deployment), restarted when it exits.
//! - [`apiserver`]: ApiServerSources, changes to Kubernetes objects as
//!   events.
//!
//! The controller publishes the [`Work`] of its last plan; the scheduler
//! and the container runner each follow it.

pub mod apiserver;
pub mod container;
mod keeper;
pub mod ping;
pub mod schedule;
pub mod scheduler;
pub mod sink;

use std::sync::Arc;

use tokio::sync::watch;

/// What the sources of the last plan run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Work {
    pub pings: Vec<ping::Ping>,
    pub containers: Vec<container::Container>,
    pub apiservers: Vec<apiserver::ApiServer>,
}

pub type WorkRx = watch::Receiver<Arc<Work>>;

/// Which sources a controller runs itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// ContainerSources as local processes too (a folder, standalone).
    WithProcesses,
    /// No local processes (in a cluster their Deployments run them).
    WithoutProcesses,
}

/// Starts the sources of `work` until `stop`: the PingSource scheduler,
/// ApiServerSources when there is a cluster to watch, and (`local`)
/// ContainerSources' processes.
pub fn spawn(
    work: WorkRx,
    metrics: sink::SourceMetrics,
    cluster: Option<apiserver::Cluster>,
    local: Local,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(scheduler::run(work.clone(), metrics.clone(), stop.clone()));
    if let Some(cluster) = cluster {
        tokio::spawn(apiserver::run(work.clone(), cluster, metrics, stop.clone()));
    }
    if local == Local::WithProcesses {
        tokio::spawn(container::run(work, stop));
    }
}
