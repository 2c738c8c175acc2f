//! Resources from the Kubernetes API: the same reconciler as the folder
//! source, fed by listing every kind whenever a watch says something
//! changed (and on a resync). Statuses go to the status subresource, the
//! contract to the ConfigMap the data-plane pods mount. Only the holder
//! of the Lease acts, so several replicas can run.
//!
//! - [`api`]: the kinds, and how they are read and watched.
//! - [`list`]: one list of everything the reconciler reads.
//! - [`configmaps`]: the contract ConfigMap and the Kafka defaults.
//! - [`channel_services`]: each KafkaChannel's Service.
//! - [`generated`]: flows' channels and subscriptions as API objects.
//! - [`status`]: statuses in Knative's shape, written when they change.
//! - [`lease`]: leader election.
//! - [`workloads`]: ContainerSources' Deployments, SinkBindings' subjects.

pub mod api;
mod channel_services;
pub mod configmaps;
mod generated;
mod lease;
mod list;
pub mod status;
mod workloads;

use std::{path::PathBuf, sync::Arc, time::Duration};

use ferry_sources::apiserver::Cluster;
use kube::api::Api;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    kafka_work::KafkaWork,
    plan::{ChannelSubscribers, Settings, Status},
    reconciler::Reconciler,
    resources::Resources,
};

pub use configmaps::{CONTRACT_CONFIGMAP, DEFAULTS_CONFIGMAP};
pub use lease::LEASE;
pub use status::knative_status;

#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// Where the contract ConfigMap, the defaults and the Lease live.
    pub namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    pub settings: Settings,
    pub resync: Duration,
    pub kafka_overrides: ferry_common::kafka::Overrides,
    /// A local copy of the contract, to compare and to count generations.
    pub state_file: PathBuf,
    pub metrics: crate::metrics::ControllerMetrics,
    /// Where channels' subscribers come from; `None`: from Knative's core
    /// if it runs in the cluster, else from Subscriptions.
    pub channel_subscribers: Option<ChannelSubscribers>,
    /// Whether Ferry runs sources (PingSource, ApiServerSource,
    /// ContainerSource, SinkBinding); `None`: unless Knative's core runs,
    /// whose source controllers would run them too.
    pub sources: Option<bool>,
}

/// What the leader keeps while it leads.
struct Leading {
    reconciler: Reconciler,
    statuses: crate::StatusRx,
    /// Stops the sources and the workloads task when the lease is lost.
    stop: CancellationToken,
    workloads: Option<workloads::DesiredTx>,
    pushed: Option<String>,
    patched: status::Patched,
}

pub async fn run(cluster: Cluster, mut config: KubeConfig, shutdown: CancellationToken) {
    let client = cluster.client.clone();
    let core = if config.channel_subscribers.is_none() || config.sources.is_none() {
        api::knative_core_runs(&client).await
    } else {
        false
    };
    config.settings.channel_subscribers = match config.channel_subscribers {
        Some(chosen) => chosen,
        None if core => ChannelSubscribers::ChannelSpec,
        None => ChannelSubscribers::Subscriptions,
    };
    let sources = config.sources.unwrap_or(!core);
    tracing::info!(channel_subscribers = ?config.settings.channel_subscribers, sources, "channels' subscribers, and whether Ferry runs sources");
    let flows = config.settings.channel_subscribers == ChannelSubscribers::Subscriptions;
    let kinds = api::CORE_KINDS
        .iter()
        .chain(api::SOURCE_KINDS.iter().filter(|_| sources))
        .chain(api::FLOW_KINDS.iter().filter(|_| flows));
    let apis: list::Apis = kinds
        .map(|k| (k.2, Api::all_with(client.clone(), &api::resource_of(*k))))
        .collect();
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    for (kind, api) in &apis {
        api::wake_on_changes(api.clone(), kind, wake_tx.clone(), shutdown.clone());
    }
    let mut leader = lease::spawn_lease_keeper(
        client.clone(),
        config.namespace.clone(),
        config.identity.clone(),
        shutdown.clone(),
    );
    let mut ticker = tokio::time::interval(config.resync);
    let mut leading: Option<Leading> = None;
    loop {
        let kafka_reported = leading.as_ref().map(|l| l.reconciler.kafka_reported());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.recv() => {}
            _ = ticker.tick() => {}
            _ = async {
                match &kafka_reported {
                    Some(reported) => reported.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
            changed = leader.changed() => if changed.is_err() { return },
        }
        config.metrics.leading(*leader.borrow());
        if !*leader.borrow() {
            if let Some(lost) = leading.take() {
                tracing::warn!("lost the lease; standing by");
                lost.stop.cancel();
            }
            continue;
        }
        let leading = match &mut leading {
            Some(leading) => leading,
            None => leading.insert(lead(&cluster, &config, sources, &shutdown).await),
        };
        let (resources, generations) = match list::list(&apis, &client, &config.namespace).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "cannot list resources; will retry");
                continue;
            }
        };
        for (source, error) in &resources.errors {
            tracing::warn!(%source, %error, "resource not used");
        }
        leading.reconciler.reconcile(&resources).await;
        if let Ok(contract) = std::fs::read_to_string(&config.state_file) {
            if leading.pushed.as_ref() != Some(&contract) {
                match configmaps::push_contract(&client, &config.namespace, &contract).await {
                    Ok(()) => leading.pushed = Some(contract),
                    Err(error) => {
                        tracing::error!(%error, "cannot write the contract ConfigMap; will retry")
                    }
                }
            }
        }
        let expanded = crate::plan::expand_flows(&resources);
        generated::mirror(&client, &resources, &expanded).await;
        channel_services::ensure_channel_services(&client, &expanded, &config.settings.ingress_url)
            .await;
        let current = leading.statuses.borrow().clone();
        if let Some(workloads) = &leading.workloads {
            let desired = desired(&resources, &current, &generations);
            workloads.send_if_modified(|last| {
                let changed = last.as_deref() != Some(&desired);
                if changed {
                    *last = Some(Arc::new(desired));
                }
                changed
            });
        }
        // The workloads task writes these two kinds' statuses.
        let own = current
            .iter()
            .filter(|s| !matches!(s.kind.as_str(), "ContainerSource" | "SinkBinding"));
        status::patch_statuses(&client, &generations, own, &mut leading.patched).await;
    }
}

/// Starts leading: the contract's generation continued, a reconciler, and
/// (when Ferry runs sources) the sources and the workloads task.
async fn lead(
    cluster: &Cluster,
    config: &KubeConfig,
    sources: bool,
    shutdown: &CancellationToken,
) -> Leading {
    tracing::info!(identity = %config.identity, "leading");
    let mut pushed = None;
    if let Some(existing) = configmaps::contract_configmap(&cluster.client, &config.namespace).await
    {
        let _ = std::fs::write(&config.state_file, existing.as_bytes());
        pushed = Some(existing);
    }
    let kafka = KafkaWork::new(
        config.kafka_overrides.clone(),
        ferry_common::secrets::Secrets::Kube(cluster.client.clone()),
    );
    let (reconciler, statuses) = Reconciler::new(
        config.settings.clone(),
        &config.state_file,
        None,
        kafka,
        config.metrics.clone(),
    );
    let stop = shutdown.child_token();
    let store = ferry_registry::Store::Kube(cluster.client.clone());
    let reconciler =
        reconciler.with_event_types(Some(ferry_registry::Recorder::spawn(store, stop.clone())));
    let workloads = sources.then(|| {
        ferry_sources::spawn(
            reconciler.source_work(),
            config.metrics.sources.clone(),
            Some(cluster.clone()),
            ferry_sources::Local::WithoutProcesses,
            stop.clone(),
        );
        workloads::spawn(cluster.client.clone(), config.resync, stop.clone())
    });
    Leading {
        reconciler,
        statuses,
        stop,
        workloads,
        pushed,
        patched: status::Patched::new(),
    }
}

/// The workloads task's share of a list and its plan.
fn desired(
    resources: &Resources,
    statuses: &[Status],
    generations: &status::Generations,
) -> workloads::Desired {
    let bindings = resources
        .sink_bindings
        .iter()
        .filter_map(|b| {
            let planned = statuses.iter().find(|s| {
                s.kind == "SinkBinding"
                    && s.namespace == b.metadata.namespace()
                    && s.name == b.metadata.name
            })?;
            Some(workloads::Binding {
                spec: b.clone(),
                planned: planned.clone(),
            })
        })
        .collect();
    let kinds = ["ContainerSource", "SinkBinding"];
    workloads::Desired {
        container_sources: resources.container_sources.clone(),
        bindings,
        generations: generations
            .iter()
            .filter(|(k, _)| kinds.contains(&k.0.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    }
}
