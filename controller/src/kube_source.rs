//! Resources from the Kubernetes API: the same reconciler as the folder
//! source, fed by listing Brokers and Triggers whenever a watch says
//! something changed (and on a resync). Statuses go to the status
//! subresource, the contract to the ConfigMap the data-plane pods mount.
//! Only the holder of the Lease acts, so several replicas can run.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use ferry_sources::apiserver::Cluster;
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    api::{Api, DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    kafka_work::KafkaWork,
    plan::{ChannelSubscribers, Ready, Settings, Status},
    reconciler::Reconciler,
    resources::{KReference, Resources},
};

/// The contract ConfigMap, by the reference implementation's name; the
/// data plane mounts its key `data`.
pub const CONTRACT_CONFIGMAP: &str = "kafka-broker-brokers-triggers";
/// Kafka defaults for brokers whose spec.config names nothing.
pub const DEFAULTS_CONFIGMAP: &str = "kafka-broker-config";
pub const LEASE: &str = "ferry-controller";
const LEASE_SECONDS: i64 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);

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
}

/// Knative Eventing's core controller, whose subscription controller
/// writes channels' `spec.subscribers`.
const KNATIVE_CORE: (&str, &str) = ("knative-eventing", "eventing-controller");

/// Whether Knative's core runs here: its controller's Deployment exists.
async fn knative_core_runs(client: &Client) -> bool {
    let api: Api<Deployment> = Api::namespaced(client.clone(), KNATIVE_CORE.0);
    match absent_or(api.get(KNATIVE_CORE.1).await) {
        Ok(found) => found.is_some(),
        Err(error) => {
            tracing::warn!(%error, "cannot tell whether Knative's core runs; reading Subscriptions");
            false
        }
    }
}

/// The kinds Ferry reconciles: (group, version, kind, plural).
const KINDS: [(&str, &str, &str, &str); 7] = [
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
    // The leader runs them (ContainerSources and SinkBindings need
    // Deployments and injection, which this source does not do yet).
    ("sources.knative.dev", "v1", "PingSource", "pingsources"),
    (
        "sources.knative.dev",
        "v1",
        "ApiServerSource",
        "apiserversources",
    ),
];

fn resource(kind: &str) -> ApiResource {
    let (group, version, kind, plural) = KINDS
        .iter()
        .find(|k| k.2 == kind)
        .copied()
        .expect("a known kind");
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Every kind's API, cluster-wide.
type Apis = Vec<(&'static str, Api<DynamicObject>)>;

pub async fn run(cluster: Cluster, mut config: KubeConfig, shutdown: CancellationToken) {
    let client = cluster.client.clone();
    config.settings.channel_subscribers = match config.channel_subscribers {
        Some(chosen) => chosen,
        None if knative_core_runs(&client).await => ChannelSubscribers::ChannelSpec,
        None => ChannelSubscribers::Subscriptions,
    };
    tracing::info!(channel_subscribers = ?config.settings.channel_subscribers, "channels' subscribers");
    let apis: Apis = KINDS
        .iter()
        .map(|k| (k.2, Api::all_with(client.clone(), &resource(k.2))))
        .collect();
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    for (_, api) in &apis {
        let (api, wake_tx, shutdown) = (api.clone(), wake_tx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(_)) => { let _ = wake_tx.try_send(()); }
                        Some(Err(error)) => tracing::debug!(%error, "watch interrupted; resuming"),
                        None => return,
                    },
                }
            }
        });
    }
    let mut leader = spawn_lease_keeper(
        client.clone(),
        config.namespace.clone(),
        config.identity.clone(),
        shutdown.clone(),
    );
    let mut ticker = tokio::time::interval(config.resync);
    let mut state: Option<(Reconciler, crate::StatusRx)> = None;
    // Cancels the leader's PingSource scheduler when the lease is lost.
    let mut firing: Option<CancellationToken> = None;
    let mut pushed: Option<String> = None;
    let mut patched: HashMap<(String, String, String), Status> = HashMap::new();
    loop {
        let kafka_reported = state.as_ref().map(|(r, _)| r.kafka_reported());
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
            if state.take().is_some() {
                tracing::warn!("lost the lease; standing by");
            }
            if let Some(firing) = firing.take() {
                firing.cancel();
            }
            continue;
        }
        if state.is_none() {
            tracing::info!(identity = %config.identity, "leading");
            // Continue the generation the contract ConfigMap already has.
            if let Some(existing) = contract_configmap(&client, &config.namespace).await {
                let _ = std::fs::write(&config.state_file, existing.as_bytes());
                pushed = Some(existing);
            }
            let kafka = KafkaWork::new(config.kafka_overrides.clone());
            state = Some(Reconciler::new(
                config.settings.clone(),
                &config.state_file,
                None,
                kafka,
                config.metrics.clone(),
            ));
            patched.clear();
            let token = shutdown.child_token();
            let (reconciler, _) = state.as_ref().expect("set above");
            ferry_sources::spawn(
                reconciler.source_work(),
                config.metrics.sources.clone(),
                Some(cluster.clone()),
                ferry_sources::Local::WithoutProcesses,
                token.clone(),
            );
            firing = Some(token);
        }
        let (reconciler, statuses) = state.as_mut().expect("set above");
        let (resources, generations) = match list(&apis, &client, &config.namespace).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "cannot list resources; will retry");
                continue;
            }
        };
        for (source, error) in &resources.errors {
            tracing::warn!(%source, %error, "resource not used");
        }
        reconciler.reconcile(&resources).await;
        if let Ok(contract) = std::fs::read_to_string(&config.state_file) {
            if pushed.as_ref() != Some(&contract) {
                match push_contract(&client, &config.namespace, &contract).await {
                    Ok(()) => pushed = Some(contract),
                    Err(error) => {
                        tracing::error!(%error, "cannot write the contract ConfigMap; will retry")
                    }
                }
            }
        }
        ensure_channel_services(&client, &resources, &config.settings.ingress_url).await;
        let current = statuses.borrow().clone();
        patch_statuses(&client, &generations, &current, &mut patched).await;
    }
}

/// (kind, namespace, name) → metadata.generation, for observedGeneration.
type Generations = HashMap<(String, String, String), i64>;

/// Every kind's objects, and the ConfigMaps brokers name (plus the defaults).
async fn list(
    apis: &Apis,
    client: &Client,
    namespace: &str,
) -> Result<(Resources, Generations), kube::Error> {
    let mut resources = Resources::default();
    let mut generations = Generations::new();
    for (kind, api) in apis {
        let (group, version, ..) = KINDS
            .iter()
            .find(|k| k.2 == *kind)
            .copied()
            .expect("a known kind");
        // A kind whose CRD is not installed has no objects.
        let Some(objects) = absent_or(api.list(&Default::default()).await)? else {
            continue;
        };
        for object in objects {
            let ns = object.metadata.namespace.clone().unwrap_or_default();
            let name = object.metadata.name.clone().unwrap_or_default();
            if let Some(generation) = object.metadata.generation {
                generations.insert((kind.to_string(), ns.clone(), name.clone()), generation);
            }
            let mut value = serde_json::to_value(&object).expect("objects serialise");
            // List items may leave out their type.
            value["apiVersion"] = json!(format!("{group}/{version}"));
            value["kind"] = json!(kind);
            resources.add(&format!("{kind} {ns}/{name}"), value);
        }
    }
    let defaults = get_configmap(client, namespace, DEFAULTS_CONFIGMAP).await?;
    for broker in &mut resources.brokers {
        if broker.spec.config.is_none() && defaults.is_some() {
            broker.spec.config = Some(KReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: DEFAULTS_CONFIGMAP.into(),
                namespace: Some(namespace.into()),
            });
        }
    }
    let mut wanted: Vec<(String, String)> = resources
        .brokers
        .iter()
        .filter_map(|b| {
            let c = b.spec.config.as_ref()?;
            Some((
                c.namespace
                    .clone()
                    .unwrap_or_else(|| b.metadata.namespace().to_owned()),
                c.name.clone(),
            ))
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    for (ns, name) in wanted {
        if let Some(cm) = get_configmap(client, &ns, &name).await? {
            let value = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": cm.data.unwrap_or_default()});
            resources.add(&format!("ConfigMap {ns}/{name}"), value);
        }
    }
    Ok((resources, generations))
}

async fn get_configmap(
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

async fn contract_configmap(client: &Client, namespace: &str) -> Option<String> {
    let cm = get_configmap(client, namespace, CONTRACT_CONFIGMAP)
        .await
        .ok()??;
    cm.data?.remove("data").filter(|d| !d.trim().is_empty())
}

async fn push_contract(
    client: &Client,
    namespace: &str,
    contract: &str,
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    if absent_or(api.get(CONTRACT_CONFIGMAP).await)?.is_some() {
        let patch = json!({"data": {"data": contract}});
        api.patch(
            CONTRACT_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    } else {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONTRACT_CONFIGMAP, "namespace": namespace},
            "data": {"data": contract},
        }))
        .expect("a valid ConfigMap");
        api.create(&PostParams::default(), &cm).await?;
    }
    tracing::info!(
        namespace,
        name = CONTRACT_CONFIGMAP,
        "contract ConfigMap written"
    );
    Ok(())
}

/// Each channel is addressed by the Host `<name>-kn-channel.<namespace>...`,
/// as in the reference implementation: a Service of that name, of type
/// ExternalName, points it at the ingress. The channel owns it, so
/// Kubernetes deletes it with the channel.
async fn ensure_channel_services(client: &Client, resources: &Resources, ingress_url: &str) {
    let ingress_host = ingress_url
        .split("://")
        .last()
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    for channel in &resources.channels {
        let ns = channel.metadata.namespace();
        let name = format!("{}-kn-channel", channel.metadata.name);
        let api = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
        match absent_or(api.get(&name).await) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, service = %name, "cannot read the channel's Service");
                continue;
            }
        }
        let (group, version, ..) = KINDS
            .iter()
            .find(|k| k.2 == channel.kind)
            .copied()
            .expect("a known kind");
        let mut metadata = json!({
            "name": name,
            "namespace": ns,
            "labels": {"messaging.knative.dev/role": "kafka-channel", "app.kubernetes.io/managed-by": "ferry"},
        });
        if let Some(uid) = &channel.metadata.uid {
            metadata["ownerReferences"] = json!([{
                "apiVersion": format!("{group}/{version}"), "kind": channel.kind,
                "name": channel.metadata.name, "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }]);
        }
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {"type": "ExternalName", "externalName": ingress_host},
        }))
        .expect("a valid Service");
        match api.create(&PostParams::default(), &service).await {
            Ok(_) => tracing::info!(namespace = %ns, service = %name, "channel Service created"),
            Err(error) => {
                tracing::warn!(%error, service = %name, "cannot create the channel's Service")
            }
        }
    }
}

/// Writes each object's status when it changed.
async fn patch_statuses(
    client: &Client,
    generations: &Generations,
    statuses: &Arc<Vec<Status>>,
    patched: &mut HashMap<(String, String, String), Status>,
) {
    for status in statuses
        .iter()
        .filter(|s| KINDS.iter().any(|k| k.2 == s.kind))
    {
        let key = (
            status.kind.clone(),
            status.namespace.clone(),
            status.name.clone(),
        );
        if patched.get(&key) == Some(status) {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &status.namespace, &resource(&status.kind));
        let body = knative_status(status, generations.get(&key).copied());
        match api
            .patch_status(&status.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                patched.insert(key, status.clone());
            }
            Err(error) => {
                tracing::warn!(kind = %status.kind, namespace = %status.namespace, name = %status.name, %error, "cannot write status")
            }
        }
    }
}

/// `Ok(None)` for any 404: emulators and older servers do not always say
/// "NotFound", which kube's `get_opt` looks for.
fn absent_or<K>(result: Result<K, kube::Error>) -> Result<Option<K>, kube::Error> {
    match result {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}

/// A status in Knative's shape: a Ready condition, the address, the URIs.
fn condition_name(ready: Ready) -> &'static str {
    match ready {
        Ready::True => "True",
        Ready::False => "False",
        Ready::Unknown => "Unknown",
    }
}

pub fn knative_status(status: &Status, generation: Option<i64>) -> serde_json::Value {
    let condition_status = condition_name(status.ready);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut condition = json!({
        "type": "Ready",
        "status": condition_status,
        "lastTransitionTime": now,
    });
    if !status.reason.is_empty() {
        condition["reason"] = json!(status.reason);
        condition["message"] = json!(status.message);
    }
    let mut conditions = vec![condition];
    for c in &status.conditions {
        let mut entry =
            json!({"type": c.ty, "status": condition_name(c.status), "lastTransitionTime": now});
        if !c.reason.is_empty() {
            entry["reason"] = json!(c.reason);
            entry["message"] = json!(c.message);
        }
        conditions.push(entry);
    }
    let mut body = json!({ "conditions": conditions });
    if let Some(uri) = &status.sink_uri {
        body["sinkUri"] = json!(uri);
    }
    if !status.ce_attributes.is_empty() {
        body["ceAttributes"] = json!(status.ce_attributes);
    }
    if let Some(generation) = generation {
        body["observedGeneration"] = json!(generation);
    }
    if let Some(url) = &status.address {
        body["address"] = json!({ "url": url });
    }
    if let Some(uri) = &status.subscriber_uri {
        body["subscriberUri"] = json!(uri);
    }
    if let Some(uri) = &status.dead_letter_sink_uri {
        body["deadLetterSinkUri"] = json!(uri);
    }
    if !status.subscribers.is_empty() {
        let subscribers: Vec<_> = status
            .subscribers
            .iter()
            .map(|s| {
                let ready = if s.ready == Ready::True {
                    "True"
                } else {
                    "False"
                };
                let mut entry = json!({"uid": s.uid, "ready": ready, "message": s.message});
                if let Some(generation) = s.observed_generation {
                    entry["observedGeneration"] = json!(generation);
                }
                entry
            })
            .collect();
        body["subscribers"] = json!(subscribers);
    }
    json!({ "status": body })
}

/// Holds (or waits for) the Lease; the receiver says whether this replica
/// leads.
fn spawn_lease_keeper(
    client: Client,
    namespace: String,
    identity: String,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client,
        &namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
            "leases",
        ),
    );
    tokio::spawn(async move {
        loop {
            let leading = match try_lead(&leases, &identity).await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, "cannot read or renew the lease");
                    false
                }
            };
            tx.send_if_modified(|current| std::mem::replace(current, leading) != leading);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
        }
    });
    rx
}

async fn try_lead(leases: &Api<DynamicObject>, identity: &str) -> Result<bool, kube::Error> {
    let now = chrono::Utc::now();
    let renew = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let spec = json!({"holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew});
    let Some(lease) = absent_or(leases.get(LEASE).await)? else {
        let lease: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": spec,
        }))
        .expect("a valid Lease");
        leases.create(&PostParams::default(), &lease).await?;
        return Ok(true);
    };
    let holder = lease.data["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default();
    let renewed = lease.data["spec"]["renewTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let expired =
        renewed.is_none_or(|t| now.signed_duration_since(t).num_seconds() > LEASE_SECONDS);
    if holder != identity && !expired {
        return Ok(false);
    }
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_knatives_shape() {
        let status = Status {
            kind: "Trigger".into(),
            namespace: "ns".into(),
            name: "t".into(),
            ready: Ready::False,
            reason: "BrokerDoesNotExist".into(),
            message: "broker 'b' does not exist".into(),
            address: None,
            subscriber_uri: Some("http://s".into()),
            dead_letter_sink_uri: None,
            subscribers: vec![],
            sink_uri: None,
            ce_attributes: vec![],
            ce_overrides: None,
            conditions: vec![],
        };
        let v = knative_status(&status, Some(3));
        assert_eq!(v["status"]["observedGeneration"], 3);
        assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(v["status"]["conditions"][0]["status"], "False");
        assert_eq!(v["status"]["conditions"][0]["reason"], "BrokerDoesNotExist");
        assert_eq!(v["status"]["subscriberUri"], "http://s");
        assert!(v["status"].get("address").is_none());
    }
}
