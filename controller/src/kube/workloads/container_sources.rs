//! ContainerSources in a cluster, as Knative makes them: the Deployment
//! `<name>-deployment` from the source's pod template and the SinkBinding
//! `<name>-sinkbinding` that binds it to the sink, both owned by the
//! source, kept as the source says and deleted with it. The source's
//! status sums up the two: `SinkBindingReady` and `ReceiveAdapterReady`.

use std::collections::{HashMap, HashSet};

use kube::{
    api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    Client,
};
use serde_json::{json, Value};

use super::{
    bindings::{name_of, namespace_of, Workloads, WORKLOAD_KINDS},
    injection::{derivative, keep_bound, unbound},
};
use crate::{
    kube::api::{absent_or, resource, resource_of},
    plan::{Condition, Ready, Status},
    resources::ContainerSource,
};

/// Knative's labels on a ContainerSource's Deployment and pods.
const SOURCE_LABEL: &str = "sources.knative.dev/source";
const SOURCE_CONTROLLER: &str = "container-source-controller";
const NAME_LABEL: &str = "sources.knative.dev/containerSource";

pub fn deployment_name(source: &ContainerSource) -> String {
    format!("{}-deployment", source.metadata.name)
}

pub fn binding_name(source: &ContainerSource) -> String {
    format!("{}-sinkbinding", source.metadata.name)
}

fn owner_reference(source: &ContainerSource) -> Value {
    json!([{
        "apiVersion": "sources.knative.dev/v1", "kind": "ContainerSource",
        "name": source.metadata.name, "uid": source.metadata.uid("ContainerSource"),
        "controller": true, "blockOwnerDeletion": true,
    }])
}

/// The Deployment that runs the source's pod template, labelled as
/// Knative labels it.
pub fn deployment(source: &ContainerSource) -> Value {
    let mut template = source.raw_spec["template"].clone();
    if !template.is_object() {
        template = json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[SOURCE_LABEL] = json!(SOURCE_CONTROLLER);
    labels[NAME_LABEL] = json!(source.metadata.name);
    let labels = labels.clone();
    let annotations = template["metadata"]["annotations"].clone();
    let mut metadata = json!({
        "name": deployment_name(source),
        "namespace": source.metadata.namespace(),
        "labels": labels,
        "ownerReferences": owner_reference(source),
    });
    if annotations.is_object() {
        metadata["annotations"] = annotations;
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata,
        "spec": {"selector": {"matchLabels": labels}, "template": template},
    })
}

/// The SinkBinding whose subject is the source's Deployment.
pub fn sink_binding(source: &ContainerSource) -> Value {
    let ns = source.metadata.namespace();
    let mut spec = json!({
        "subject": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": deployment_name(source)},
        "sink": source.raw_spec["sink"],
    });
    if source.raw_spec["ceOverrides"].is_object() {
        spec["ceOverrides"] = source.raw_spec["ceOverrides"].clone();
    }
    json!({
        "apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding",
        "metadata": {"name": binding_name(source), "namespace": ns,
                     "labels": {NAME_LABEL: source.metadata.name},
                     "ownerReferences": owner_reference(source)},
        "spec": spec,
    })
}

/// Makes the source's Deployment and SinkBinding as they should be; its
/// status from theirs. `bindings` are this pass's SinkBinding statuses.
pub async fn apply(
    client: &Client,
    source: &ContainerSource,
    bindings: &HashMap<(String, String), Status>,
) -> Status {
    let (ns, name) = (source.metadata.namespace(), source.metadata.name.as_str());
    let mut status = Status::new("ContainerSource", ns, name);
    let binding = match ensure(client, source, "SinkBinding", sink_binding(source), "/spec").await {
        Err(message) => condition(
            "SinkBindingReady",
            Ready::False,
            "SinkBindingFailed",
            message,
        ),
        Ok(()) => match bindings.get(&(ns.to_owned(), binding_name(source))) {
            Some(bound) => {
                status.sink_uri = bound.sink_uri.clone();
                status.sink_ca_certs = bound.sink_ca_certs.clone();
                condition(
                    "SinkBindingReady",
                    bound.ready,
                    &bound.reason,
                    bound.message.clone(),
                )
            }
            None => condition(
                "SinkBindingReady",
                Ready::Unknown,
                "",
                format!(
                    "SinkBinding '{}' is not reconciled yet",
                    binding_name(source)
                ),
            ),
        },
    };
    let adapter = match ensure(
        client,
        source,
        "Deployment",
        deployment(source),
        "/spec/template",
    )
    .await
    {
        Err(message) => condition(
            "ReceiveAdapterReady",
            Ready::False,
            "DeploymentFailed",
            message,
        ),
        Ok(()) => adapter_ready(client, ns, &deployment_name(source)).await,
    };
    status.conditions = vec![binding, adapter];
    // Ready: True when both are; else the first that is not says why.
    if let Some(c) = status.conditions.iter().find(|c| c.status != Ready::True) {
        status.ready = c.status;
        status.reason = c.reason.clone();
        status.message = c.message.clone();
    }
    status
}

/// Knative's ReceiveAdapterReady: the Deployment's `Available` condition.
async fn adapter_ready(client: &Client, ns: &str, name: &str) -> Condition {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource_of(WORKLOAD_KINDS[0]));
    let object = api.get(name).await.ok();
    let available = object.as_ref().and_then(|o| {
        o.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Available")
            .cloned()
    });
    let Some(available) = available else {
        let message = format!("The Deployment '{name}' is unavailable.");
        return condition(
            "ReceiveAdapterReady",
            Ready::Unknown,
            "DeploymentUnavailable",
            message,
        );
    };
    let text = |key: &str| available[key].as_str().unwrap_or_default().to_owned();
    let ready = match text("status").as_str() {
        "True" => Ready::True,
        "False" => Ready::False,
        _ => Ready::Unknown,
    };
    condition(
        "ReceiveAdapterReady",
        ready,
        &text("reason"),
        text("message"),
    )
}

/// Creates the child `want` of `kind`, or patches what `compared` points
/// at when it differs; refuses a child of that name the source does not own.
async fn ensure(
    client: &Client,
    source: &ContainerSource,
    kind: &str,
    want: Value,
    compared: &str,
) -> Result<(), String> {
    let ns = source.metadata.namespace();
    let name = want["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = child_api(client, ns, kind);
    let have =
        absent_or(api.get(&name).await).map_err(|e| format!("reading {kind} '{name}': {e}"))?;
    let Some(have) = have else {
        let object: DynamicObject = serde_json::from_value(want).expect("a valid object");
        api.create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("creating {kind} '{name}': {e}"))?;
        tracing::info!(namespace = %ns, %kind, %name, "ContainerSource's child created");
        return Ok(());
    };
    let have = serde_json::to_value(&have).expect("objects serialise");
    if owner_uid(&have) != Some(source.metadata.uid("ContainerSource")) {
        return Err(format!(
            "{kind} '{name}' is not owned by ContainerSource '{}'",
            source.metadata.name
        ));
    }
    let wanted = want.pointer(compared).cloned().unwrap_or_default();
    let current = have.pointer(compared).cloned().unwrap_or_default();
    // A Deployment's template carries its SinkBinding's variables, which
    // the source's template does not have: not a difference, and kept.
    let (wanted, current) = match kind {
        "Deployment" => (keep_bound(&wanted, &current), unbound(&current)),
        _ => (wanted, current),
    };
    if derivative(&unbound(&wanted), &current) {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": compared, "value": wanted}
    ]))
    .expect("a JSON patch");
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| format!("updating {kind} '{name}': {e}"))?;
    tracing::info!(namespace = %ns, %kind, %name, "ContainerSource's child updated");
    Ok(())
}

fn child_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = match kind {
        "Deployment" => resource_of(WORKLOAD_KINDS[0]),
        _ => resource(kind),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// The uid of the ContainerSource that controls `object`, if one does.
fn owner_uid(object: &Value) -> Option<String> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == "ContainerSource" && o["controller"] == true)
        .and_then(|o| o["uid"].as_str())
        .map(str::to_owned)
}

/// Deletes the Deployments and SinkBindings of ContainerSources that are
/// gone. Kubernetes' garbage collector does it too; doing it here does
/// not depend on one running.
pub async fn delete_orphans(client: &Client, sources: &[ContainerSource], workloads: &Workloads) {
    let alive: HashSet<String> = sources
        .iter()
        .map(|s| s.metadata.uid("ContainerSource"))
        .collect();
    let bindings = Api::<DynamicObject>::all_with(client.clone(), &resource("SinkBinding"));
    let listed = match absent_or(bindings.list(&ListParams::default()).await) {
        Ok(listed) => listed.map(|l| l.items).unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "cannot list SinkBindings");
            return;
        }
    };
    let listed: Vec<(&str, Value)> = listed
        .iter()
        .map(|b| {
            (
                "SinkBinding",
                serde_json::to_value(b).expect("objects serialise"),
            )
        })
        .chain(workloads.deployments().map(|d| ("Deployment", d.clone())))
        .collect();
    for (kind, object) in listed {
        let labelled = object["metadata"]["labels"][NAME_LABEL].is_string();
        let Some(owner) = owner_uid(&object).filter(|_| labelled) else {
            continue;
        };
        if alive.contains(&owner) {
            continue;
        }
        let (ns, name) = (namespace_of(&object), name_of(&object));
        match child_api(client, ns, kind)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = %ns, %kind, %name, "deleted with its ContainerSource")
            }
            Err(error) => tracing::warn!(namespace = %ns, %kind, %name, %error, "cannot delete"),
        }
    }
}

fn condition(ty: &'static str, status: Ready, reason: &str, message: String) -> Condition {
    Condition {
        ty,
        status,
        reason: reason.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    fn source() -> ContainerSource {
        let mut resources = Resources::default();
        resources.add_yaml(
            "cs.yaml",
            r#"
apiVersion: sources.knative.dev/v1
kind: ContainerSource
metadata: {name: heartbeat, namespace: ns, uid: cs-uid}
spec:
  template:
    metadata:
      labels: {app: beat}
    spec:
      containers:
        - image: example.test/heartbeat
          args: [--period=1]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
  ceOverrides:
    extensions: {team: ferry}
"#,
        );
        assert!(resources.errors.is_empty(), "{:?}", resources.errors);
        resources.container_sources.remove(0)
    }

    #[test]
    fn the_deployment_is_the_template_labelled_and_owned_as_knative_does() {
        let d = deployment(&source());
        assert_eq!(d["metadata"]["name"], "heartbeat-deployment");
        assert_eq!(d["metadata"]["namespace"], "ns");
        let labels =
            json!({"app": "beat", SOURCE_LABEL: SOURCE_CONTROLLER, NAME_LABEL: "heartbeat"});
        assert_eq!(d["metadata"]["labels"], labels);
        assert_eq!(d["spec"]["selector"]["matchLabels"], labels);
        assert_eq!(d["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "example.test/heartbeat"
        );
        assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "cs-uid");
        assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
    }

    #[test]
    fn the_sink_binding_binds_that_deployment_to_the_sink() {
        let b = sink_binding(&source());
        assert_eq!(b["metadata"]["name"], "heartbeat-sinkbinding");
        assert_eq!(
            b["spec"]["subject"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "ns", "name": "heartbeat-deployment"})
        );
        assert_eq!(b["spec"]["sink"]["ref"]["kind"], "Broker");
        assert_eq!(b["spec"]["ceOverrides"]["extensions"]["team"], "ferry");
        assert_eq!(
            b["metadata"]["ownerReferences"][0]["kind"],
            "ContainerSource"
        );
    }
}
