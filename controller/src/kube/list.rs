//! One list of everything the reconciler reads: every kind's objects,
//! their generations, and the ConfigMaps brokers name.

use kube::{
    api::{Api, DynamicObject},
    Client,
};
use serde_json::json;

use super::{
    api::{self, absent_or, get_configmap},
    configmaps::DEFAULTS_CONFIGMAP,
    status::Generations,
};
use crate::{
    plan::AUTOCREATE_ANNOTATION,
    resources::{KReference, Resources},
};

/// Knative's feature flags.
const FEATURES_CONFIGMAP: &str = "config-features";

/// Every kind's API, cluster-wide.
pub type Apis = Vec<(&'static str, Api<DynamicObject>)>;

/// Every kind's objects, and the ConfigMaps brokers name (plus the defaults).
pub async fn list(
    apis: &Apis,
    client: &Client,
    namespace: &str,
) -> Result<(Resources, Generations), kube::Error> {
    let mut resources = Resources::default();
    let mut generations = Generations::new();
    // Every kind at once: one after the other, a pass waited for each
    // answer in turn (seconds on a busy API server).
    let lists = futures::future::join_all(
        apis.iter()
            .map(|(_, api)| async move { absent_or(api.list(&Default::default()).await) }),
    )
    .await;
    for ((kind, _), listed) in apis.iter().zip(lists) {
        let (group, version, ..) = api::kind(kind);
        // A kind whose CRD is not installed has no objects.
        let Some(objects) = listed? else {
            continue;
        };
        for object in objects {
            // What Ferry generated for a flow is generated again from it.
            let labels = object.metadata.labels.as_ref();
            if labels.is_some_and(|l| l.contains_key(super::generated::GENERATED_LABEL)) {
                continue;
            }
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
    // Knative's `eventtype-auto-create` feature, as if each Broker and
    // Channel that does not say otherwise were annotated with it.
    let features = get_configmap(client, namespace, FEATURES_CONFIGMAP)
        .await?
        .and_then(|cm| cm.data)
        .unwrap_or_default();
    resources.features = features.clone().into_iter().collect();
    let feature = features.get("eventtype-auto-create").cloned().map(|v| {
        if v == "enabled" {
            "enabled"
        } else {
            "disabled"
        }
    });
    if let Some(feature) = feature {
        let metadata = resources
            .brokers
            .iter_mut()
            .map(|b| &mut b.metadata)
            .chain(resources.channels.iter_mut().map(|c| &mut c.metadata));
        for m in metadata {
            m.annotations
                .entry(AUTOCREATE_ANNOTATION.to_owned())
                .or_insert_with(|| feature.to_owned());
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
