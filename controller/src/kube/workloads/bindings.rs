//! SinkBindings in a cluster: each one's subjects (a workload by name, or
//! every workload its label selector picks) patched with its variables,
//! and the variables taken out of workloads no binding claims any more.
//! Ferry patches the subjects' pod templates, as Knative's binding
//! reconciler also does, instead of running an admission webhook.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    api::{Api, DynamicObject, ListParams, Patch, PatchParams},
    core::{Selector, SelectorExt},
    Client,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    injection::{self, Variables, BOUND_BY},
    Binding,
};
use crate::{
    kube::api::{absent_or, resource_of, Kind},
    plan::{Condition, Ready, Status},
};

/// What a SinkBinding can bind: the pod-speccable kinds of Kubernetes.
pub const WORKLOAD_KINDS: [Kind; 5] = [
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
];

fn workload_api(client: &Client, kind: Kind) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource_of(kind))
}

/// Every workload in the cluster, by kind, as this pass sees them.
pub struct Workloads(Vec<(Kind, Vec<Value>)>);

/// (kind, namespace, name) of a workload.
type Key = (&'static str, String, String);

impl Workloads {
    pub async fn list(client: &Client) -> Result<Self, kube::Error> {
        let mut all = Vec::new();
        for kind in WORKLOAD_KINDS {
            let listed = absent_or(
                workload_api(client, kind)
                    .list(&ListParams::default())
                    .await,
            )?;
            let objects = listed
                .into_iter()
                .flat_map(|l| l.items)
                .map(|o| serde_json::to_value(o).expect("objects serialise"))
                .collect();
            all.push((kind, objects));
        }
        Ok(Workloads(all))
    }

    fn of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> {
        self.0
            .iter()
            .filter(move |(k, _)| k.2 == kind)
            .flat_map(|(_, objects)| objects)
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Value> {
        self.of("Deployment")
    }
}

pub fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// `spec.subject` of a SinkBinding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    selector: Option<LabelSelector>,
}

/// Why a binding's subjects could not be bound: Knative's reason, and a
/// message.
type Unavailable = (&'static str, String);

/// The workloads a binding's subject names.
fn subjects<'a>(
    binding: &Binding,
    workloads: &'a Workloads,
) -> Result<(&'static str, Vec<&'a Value>), Unavailable> {
    let spec = binding.spec.spec.subject.clone().unwrap_or(Value::Null);
    let subject: Subject = serde_json::from_value(spec)
        .map_err(|e| ("SubjectUnavailable", format!("spec.subject: {e}")))?;
    let Some(kind) = WORKLOAD_KINDS
        .iter()
        .find(|k| k.2 == subject.kind && format!("{}/{}", k.0, k.1) == subject.api_version)
    else {
        return Err((
            "SubjectUnavailable",
            format!(
                "spec.subject: Ferry binds Deployments, StatefulSets and DaemonSets (apps/v1) and Jobs and CronJobs (batch/v1), not {} of {}",
                subject.kind, subject.api_version
            ),
        ));
    };
    let namespace = subject
        .namespace
        .unwrap_or_else(|| binding.spec.metadata.namespace().to_owned());
    let in_namespace = workloads
        .of(kind.2)
        .filter(|o| namespace_of(o) == namespace);
    match (subject.name, subject.selector) {
        (Some(name), _) => match in_namespace.into_iter().find(|o| name_of(o) == name) {
            Some(object) => Ok((kind.2, vec![object])),
            None => Err((
                "SubjectMissing",
                format!("{} {namespace}/{name} does not exist", kind.2),
            )),
        },
        (None, Some(selector)) => {
            let selector = Selector::try_from(selector)
                .map_err(|e| ("SubjectUnavailable", format!("spec.subject.selector: {e}")))?;
            let chosen = in_namespace
                .filter(|o| {
                    let labels =
                        serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default();
                    selector.matches(&labels)
                })
                .collect();
            Ok((kind.2, chosen))
        }
        (None, None) => Err((
            "SubjectUnavailable",
            "spec.subject: neither name nor selector is set".into(),
        )),
    }
}

/// Binds every binding's subjects, then unbinds the workloads Ferry bound
/// that no binding claims now; a status per binding.
pub async fn bind_all(client: &Client, bindings: &[Binding], workloads: &Workloads) -> Vec<Status> {
    // A workload is bound by one binding: the first (by namespace, name).
    let mut claimed: HashMap<Key, String> = HashMap::new();
    let mut statuses = Vec::new();
    for binding in bindings {
        let mut status = binding.planned.clone();
        let outcome = match (status.ready, &status.sink_uri) {
            (Ready::True, Some(sink)) => bind(client, binding, sink, workloads, &mut claimed).await,
            // Without a sink its subjects are unbound, as Knative's Undo does.
            _ => Ok(()),
        };
        let available = match &outcome {
            Ok(()) => available(Ready::True, "", String::new()),
            Err((reason, message)) => available(Ready::False, reason, message.clone()),
        };
        status.conditions.push(available);
        if let (Ready::True, Err((reason, message))) = (status.ready, outcome) {
            status = status.not_ready(reason, message);
        }
        statuses.push(status);
    }
    for (kind, objects) in &workloads.0 {
        for object in objects {
            let key = (
                kind.2,
                namespace_of(object).to_owned(),
                name_of(object).to_owned(),
            );
            let bound = object["metadata"]["annotations"][BOUND_BY].is_string();
            if bound && !claimed.contains_key(&key) {
                if let Err(error) = apply(client, *kind, object, None).await {
                    tracing::warn!(kind = kind.2, namespace = %key.1, name = %key.2, %error, "cannot take a SinkBinding's variables out");
                } else {
                    tracing::info!(kind = kind.2, namespace = %key.1, name = %key.2, "SinkBinding's variables taken out");
                }
            }
        }
    }
    statuses
}

async fn bind(
    client: &Client,
    binding: &Binding,
    sink: &str,
    workloads: &Workloads,
    claimed: &mut HashMap<Key, String>,
) -> Result<(), Unavailable> {
    let name = binding.spec.metadata.name.as_str();
    let (kind, objects) = subjects(binding, workloads)?;
    let variables = Variables {
        sink: sink.to_owned(),
        ca_certs: binding.planned.sink_ca_certs.clone(),
        ce_overrides: binding
            .planned
            .ce_overrides
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
    };
    let full = WORKLOAD_KINDS
        .into_iter()
        .find(|k| k.2 == kind)
        .expect("a workload kind");
    for object in objects {
        let key = (
            kind,
            namespace_of(object).to_owned(),
            name_of(object).to_owned(),
        );
        if let Some(other) = claimed.get(&key) {
            return Err((
                "BindingFailed",
                format!("{kind} {}/{} is bound by SinkBinding {other}", key.1, key.2),
            ));
        }
        claimed.insert(key, name.to_owned());
        apply(client, full, object, Some((name, &variables)))
            .await
            .map_err(|e| {
                (
                    "BindingFailed",
                    format!("failed binding subject {}: {e}", name_of(object)),
                )
            })?;
    }
    Ok(())
}

/// Patches one workload when it is not bound as asked.
async fn apply(
    client: &Client,
    kind: Kind,
    object: &Value,
    binding: Option<(&str, &Variables)>,
) -> Result<(), kube::Error> {
    let Some(ops) = injection::patch(object, kind.2, binding) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("a JSON patch");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace_of(object), &resource_of(kind));
    api.patch(
        name_of(object),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

fn available(status: Ready, reason: &str, message: String) -> Condition {
    Condition {
        ty: "SinkBindingAvailable",
        status,
        reason: reason.to_owned(),
        message,
    }
}
