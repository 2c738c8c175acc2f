//! How Ferry asks the Kubernetes API: the kinds it reads, whether
//! Knative's core runs beside it, reads that treat 404 as absent, and
//! watches that wake a loop.

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    api::{Api, DynamicObject},
    core::{ApiResource, GroupVersionKind},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Knative Eventing's core controller, whose subscription controller
/// writes channels' `spec.subscribers`.
const KNATIVE_CORE: (&str, &str) = ("knative-eventing", "eventing-controller");

/// Whether Knative's core runs here: its controller's Deployment exists.
pub async fn knative_core_runs(client: &Client) -> bool {
    let api: Api<Deployment> = Api::namespaced(client.clone(), KNATIVE_CORE.0);
    match absent_or(api.get(KNATIVE_CORE.1).await) {
        Ok(found) => found.is_some(),
        Err(error) => {
            tracing::warn!(%error, "cannot tell whether Knative's core runs; reading Subscriptions");
            false
        }
    }
}

/// (group, version, kind, plural).
pub type Kind = (&'static str, &'static str, &'static str, &'static str);

/// The kinds Ferry always reconciles: Knative's for a Broker class and a
/// channel implementation, and the reference Kafka broker's own.
pub const CORE_KINDS: [Kind; 9] = [
    ("eventing.knative.dev", "v1", "Broker", "brokers"),
    ("eventing.knative.dev", "v1", "Trigger", "triggers"),
    (
        "messaging.knative.dev",
        "v1beta1",
        "KafkaChannel",
        "kafkachannels",
    ),
    ("messaging.knative.dev", "v1", "Channel", "channels"),
    (
        "messaging.knative.dev",
        "v1",
        "Subscription",
        "subscriptions",
    ),
    // Knative's storage version; the API server converts v1beta2 ones.
    ("eventing.knative.dev", "v1beta3", "EventType", "eventtypes"),
    (
        "eventing.knative.dev",
        "v1alpha1",
        "KafkaSink",
        "kafkasinks",
    ),
    ("sources.knative.dev", "v1", "KafkaSource", "kafkasources"),
    (
        "eventing.knative.dev",
        "v1alpha1",
        "EventPolicy",
        "eventpolicies",
    ),
];

/// Sources, which Ferry runs unless Knative's own source controllers do.
pub const SOURCE_KINDS: [Kind; 4] = [
    ("sources.knative.dev", "v1", "PingSource", "pingsources"),
    (
        "sources.knative.dev",
        "v1",
        "ApiServerSource",
        "apiserversources",
    ),
    (
        "sources.knative.dev",
        "v1",
        "ContainerSource",
        "containersources",
    ),
    ("sources.knative.dev", "v1", "SinkBinding", "sinkbindings"),
];

/// Flows, which Ferry builds unless Knative's flows controller does.
pub const FLOW_KINDS: [Kind; 2] = [
    ("flows.knative.dev", "v1", "Sequence", "sequences"),
    ("flows.knative.dev", "v1", "Parallel", "parallels"),
];

/// One of [`CORE_KINDS`], [`SOURCE_KINDS`] or [`FLOW_KINDS`] by its kind.
pub fn kind(kind: &str) -> Kind {
    CORE_KINDS
        .iter()
        .chain(&SOURCE_KINDS)
        .chain(&FLOW_KINDS)
        .find(|k| k.2 == kind)
        .copied()
        .expect("a known kind")
}

pub fn resource(name: &str) -> ApiResource {
    resource_of(kind(name))
}

pub fn resource_of((group, version, kind, plural): Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub async fn get_configmap(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ConfigMap>, kube::Error> {
    absent_or(
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get(name)
            .await,
    )
}

/// `Ok(None)` for any 404: emulators and older servers do not always say
/// "NotFound", which kube's `get_opt` looks for.
pub fn absent_or<K>(result: Result<K, kube::Error>) -> Result<Option<K>, kube::Error> {
    match result {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}

/// Wakes `wake` whenever anything of `api` changes, until `stop`.
pub fn wake_on_changes(
    api: Api<DynamicObject>,
    what: &'static str,
    wake: mpsc::Sender<()>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(_)) => { let _ = wake.try_send(()); }
                    Some(Err(error)) => tracing::debug!(%error, what, "watch interrupted; resuming"),
                    None => return,
                },
            }
        }
    });
}
