//! What ContainerSources and SinkBindings do in a cluster, which the
//! plan cannot decide alone because it acts on other objects: a
//! ContainerSource's Deployment and SinkBinding ([`container_sources`]),
//! a SinkBinding's variables in its subjects ([`bindings`], by the patches
//! of [`injection`]). One task, apart from the contract loop, so a slow
//! workload API never holds brokers up; it follows the leader's last
//! list of resources and every change to a workload, and writes these two
//! kinds' statuses.

mod bindings;
mod container_sources;
mod injection;

use std::{collections::HashMap, sync::Arc, time::Duration};

use kube::Client;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{
    api::{resource_of, wake_on_changes},
    status::{patch_statuses, Generations, Patched},
};
use crate::{
    plan::Status,
    resources::{ContainerSource, SinkBinding},
};

pub use bindings::WORKLOAD_KINDS;

/// A SinkBinding, and the status the plan gave it (its sink resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub spec: SinkBinding,
    pub planned: Status,
}

/// The leader's last list: what this task makes real.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub container_sources: Vec<ContainerSource>,
    pub bindings: Vec<Binding>,
    pub generations: Generations,
}

pub type DesiredTx = watch::Sender<Option<Arc<Desired>>>;

/// Runs until `stop`; nothing happens before the first [`Desired`].
pub fn spawn(client: Client, resync: Duration, stop: CancellationToken) -> DesiredTx {
    let (tx, mut desired) = watch::channel(None::<Arc<Desired>>);
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    for kind in WORKLOAD_KINDS {
        let api = kube::Api::all_with(client.clone(), &resource_of(kind));
        wake_on_changes(api, kind.2, wake_tx.clone(), stop.clone());
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(resync);
        let mut patched = Patched::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = desired.changed() => if changed.is_err() { return },
                _ = wake.recv() => {}
                _ = ticker.tick() => {}
            }
            let current = desired.borrow_and_update().clone();
            if let Some(current) = current {
                pass(&client, &current, &mut patched).await;
            }
        }
    });
    tx
}

/// One pass: bindings first, so a ContainerSource reports its binding's
/// state of this pass.
async fn pass(client: &Client, desired: &Desired, patched: &mut Patched) {
    let workloads = match bindings::Workloads::list(client).await {
        Ok(workloads) => workloads,
        Err(error) => {
            tracing::warn!(%error, "cannot list workloads; SinkBindings wait");
            return;
        }
    };
    let mut statuses = bindings::bind_all(client, &desired.bindings, &workloads).await;
    let by_name: HashMap<(String, String), Status> = statuses
        .iter()
        .map(|s| ((s.namespace.clone(), s.name.clone()), s.clone()))
        .collect();
    for source in &desired.container_sources {
        statuses.push(container_sources::apply(client, source, &by_name).await);
    }
    container_sources::delete_orphans(client, &desired.container_sources, &workloads).await;
    patch_statuses(client, &desired.generations, &statuses, patched).await;
}
