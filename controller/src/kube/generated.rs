//! A flow's generated KafkaChannels and Subscriptions as API objects, so
//! `kubectl get kafkachannels,subscriptions` shows them, owned by their
//! flow (Kubernetes deletes them with it; so does Ferry, which does not
//! need a garbage collector). They are made from the flow on every pass
//! and never read back: labelled, they are left out of the lists.

use std::collections::HashSet;

use kube::{
    api::{Api, DeleteParams, DynamicObject, ListParams, PostParams},
    Client,
};
use serde_json::{json, Value};

use super::api::{absent_or, resource};
use crate::{
    plan::GENERATED_BY,
    resources::{Metadata, Resources},
};

pub const GENERATED_LABEL: &str = "flows.ferry.dev/generated";

/// Creates the generated objects `expanded` has beyond `resources`, and
/// deletes those of flows that are gone.
pub async fn mirror(client: &Client, resources: &Resources, expanded: &Resources) {
    let flows: Vec<(&str, &Metadata)> = resources
        .sequences
        .iter()
        .map(|s| ("Sequence", &s.metadata))
        .chain(
            resources
                .parallels
                .iter()
                .map(|p| ("Parallel", &p.metadata)),
        )
        .collect();
    let owner = |m: &Metadata| -> Option<Value> {
        let by = m.annotations.get(GENERATED_BY)?;
        let (kind, m) = flows
            .iter()
            .find(|(kind, f)| *by == format!("{kind} {}/{}", f.namespace(), f.name))?;
        Some(
            json!([{"apiVersion": "flows.knative.dev/v1", "kind": kind, "name": m.name,
                     "uid": m.uid(kind), "controller": true, "blockOwnerDeletion": true}]),
        )
    };
    let mut wanted: HashSet<(&str, String, String)> = HashSet::new();
    for c in &expanded.channels {
        let Some(owners) = owner(&c.metadata) else {
            continue;
        };
        let spec = serde_json::to_value(&c.spec).expect("specs serialise");
        let object = object(
            "messaging.knative.dev/v1beta1",
            "KafkaChannel",
            &c.metadata,
            owners,
            spec,
        );
        create(client, "KafkaChannel", &c.metadata, object).await;
        wanted.insert((
            "KafkaChannel",
            c.metadata.namespace().to_owned(),
            c.metadata.name.clone(),
        ));
    }
    for s in &expanded.subscriptions {
        let Some(owners) = owner(&s.metadata) else {
            continue;
        };
        let spec = serde_json::to_value(&s.spec).expect("specs serialise");
        let object = object(
            "messaging.knative.dev/v1",
            "Subscription",
            &s.metadata,
            owners,
            spec,
        );
        create(client, "Subscription", &s.metadata, object).await;
        wanted.insert((
            "Subscription",
            s.metadata.namespace().to_owned(),
            s.metadata.name.clone(),
        ));
    }
    for kind in ["KafkaChannel", "Subscription"] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        let Ok(Some(list)) = absent_or(api.list(&ListParams::default()).await) else {
            continue;
        };
        for o in list {
            let generated = o
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(GENERATED_LABEL));
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            let name = o.metadata.name.clone().unwrap_or_default();
            if generated && !wanted.contains(&(kind, ns.clone(), name.clone())) {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &resource(kind));
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => tracing::info!(%kind, namespace = %ns, %name, "deleted with its flow"),
                    Err(error) => {
                        tracing::warn!(%kind, namespace = %ns, %name, %error, "cannot delete")
                    }
                }
            }
        }
    }
}

fn object(api_version: &str, kind: &str, m: &Metadata, owners: Value, spec: Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": m.name, "namespace": m.namespace(), "labels": {GENERATED_LABEL: "true"},
                     "annotations": m.annotations, "ownerReferences": owners},
        "spec": spec,
    })
}

async fn create(client: &Client, kind: &str, m: &Metadata, object: Value) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), m.namespace(), &resource(kind));
    match absent_or(api.get(&m.name).await) {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%kind, name = %m.name, %error, "cannot read a flow's generated object");
            return;
        }
    }
    let object: DynamicObject = serde_json::from_value(object).expect("a valid object");
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            tracing::info!(%kind, namespace = %m.namespace(), name = %m.name, "flow's object created")
        }
        Err(error) => {
            tracing::warn!(%kind, name = %m.name, %error, "cannot create a flow's object")
        }
    }
}
