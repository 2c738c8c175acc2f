//! Ferry's control plane: Knative Brokers, Triggers, Channels and
//! Subscriptions become topics, consumer groups, the data-plane contract
//! and a status each; PingSources become schedules that the folder
//! controller fires (`ferry_sources::scheduler`).
//!
//! - [`resources`]: Knative objects as users write them.
//! - [`plan`]: the reconciler's decisions (pure): brokers, triggers,
//!   channels, sources, delivery, addresses.
//! - [`reconciler`]: applies plans ([`contract_file`]; what to delete,
//!   [`deletions`]; Kafka in the background, [`kafka_work`] through
//!   [`kafka_admin`]; consumer groups pinned before Ready, [`plan::group_starts`]).
//! - [`folder`]: resources from a watched folder of YAML.
//! - [`kube`]: resources from the Kubernetes API, with leader election.

pub mod annotation_requests;
pub mod contract_file;
pub mod deletions;
pub mod duration;
pub mod folder;
pub mod kafka_admin;
pub mod kafka_work;
pub mod kube;
pub mod metrics;
pub mod plan;
pub mod reconciler;
pub mod resources;

use std::{path::PathBuf, time::Duration};

use tokio_util::sync::CancellationToken;

pub use reconciler::StatusRx;

#[derive(Clone, Debug)]
pub struct Config {
    pub resources: PathBuf,
    pub contract: PathBuf,
    pub settings: plan::Settings,
    /// How often everything is reconciled again without a change.
    pub resync: Duration,
    pub kafka_overrides: ferry_common::kafka::Overrides,
    /// The contract a previous run published, when it is not at `contract`.
    pub previous_contract: Option<PathBuf>,
    pub metrics: metrics::ControllerMetrics,
    /// The Kubernetes API ApiServerSources watch, if one was given.
    pub cluster: Option<ferry_sources::apiserver::Cluster>,
    /// Where sources' declared pairs become EventTypes.
    pub event_types: Option<std::sync::Arc<ferry_registry::Recorder>>,
    /// A folder of EventTypes read beside `resources` (standalone's
    /// registry, which its recorder writes).
    pub registry: Option<PathBuf>,
    /// Where `ferry replay` writes annotation requests (standalone's).
    pub annotation_requests: Option<PathBuf>,
}

/// Reconciles a folder of resources until shutdown; the statuses are
/// returned at once and follow every change.
pub fn start_folder(
    config: Config,
    shutdown: CancellationToken,
) -> (StatusRx, tokio::task::JoinHandle<()>) {
    // A folder's Secrets are resources of the folder.
    let kafka = kafka_work::KafkaWork::new(
        config.kafka_overrides.clone(),
        ferry_common::secrets::Secrets::Folder(config.resources.clone()),
    );
    config.metrics.leading(true);
    let (reconciler, statuses) = reconciler::Reconciler::new(
        config.settings.clone(),
        &config.contract,
        config.previous_contract.as_deref(),
        kafka,
        config.metrics.clone(),
    );
    let reconciler = reconciler.with_event_types(config.event_types.clone());
    // The folder's controller is the only one, so it runs the sources.
    ferry_sources::spawn(
        reconciler.source_work(),
        config.metrics.sources.clone(),
        config.cluster.clone(),
        ferry_sources::Local::WithProcesses,
        shutdown.clone(),
    );
    let task = tokio::spawn(async move {
        let folders: Vec<PathBuf> = std::iter::once(config.resources.clone())
            .chain(config.registry.clone())
            .collect();
        if let Err(error) = folder::run(
            &folders,
            config.annotation_requests.clone(),
            reconciler,
            config.resync,
            shutdown,
        )
        .await
        {
            tracing::error!(%error, folder = %config.resources.display(), "cannot watch the resources folder");
        }
    });
    (statuses, task)
}
