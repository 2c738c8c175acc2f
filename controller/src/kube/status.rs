//! Statuses in Knative's shape, written to each object's status
//! subresource when they change.

use std::collections::HashMap;

use futures::{stream::FuturesUnordered, StreamExt};

use kube::{
    api::{Api, DynamicObject, Patch, PatchParams},
    Client,
};
use serde_json::json;

use super::api::resource;
use crate::plan::{Ready, Status};

/// (kind, namespace, name) → metadata.generation, for observedGeneration.
pub type Generations = HashMap<(String, String, String), i64>;

/// The statuses last written, to write only what changed.
pub type Patched = HashMap<(String, String, String), Status>;

/// Status writes in flight at once: a pass that changes many statuses
/// (the first one, or a broker's with all its triggers) does not wait for
/// each answer in turn, nor floods the API server.
const WRITES_AT_ONCE: usize = 8;

fn key_of(status: &Status) -> (String, String, String) {
    (
        status.kind.clone(),
        status.namespace.clone(),
        status.name.clone(),
    )
}

/// Writes each object's status when it changed.
pub async fn patch_statuses(
    client: &Client,
    generations: &Generations,
    statuses: impl IntoIterator<Item = &Status>,
    patched: &mut Patched,
) {
    let changed: Vec<&Status> = statuses
        .into_iter()
        .filter(|status| patched.get(&key_of(status)) != Some(*status))
        .collect();
    let mut changed = changed.into_iter();
    let mut writing = FuturesUnordered::new();
    loop {
        while writing.len() < WRITES_AT_ONCE {
            let Some(status) = changed.next() else { break };
            writing.push(write_status(client, generations, status));
        }
        let Some(written) = writing.next().await else {
            break;
        };
        if let Some(status) = written {
            patched.insert(key_of(status), status.clone());
        }
    }
}

/// One object's status; the status when it was written.
async fn write_status<'a>(
    client: &Client,
    generations: &Generations,
    status: &'a Status,
) -> Option<&'a Status> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &status.namespace, &resource(&status.kind));
    let body = knative_status(status, generations.get(&key_of(status)).copied());
    match api
        .patch_status(&status.name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Some(status),
        Err(error) => {
            tracing::warn!(kind = %status.kind, namespace = %status.namespace, name = %status.name, %error, "cannot write status");
            None
        }
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
    if let Some(serde_json::Value::Object(flow)) = &status.flow {
        for (key, value) in flow {
            body[key] = value.clone();
        }
    }
    if let Some(certs) = &status.sink_ca_certs {
        body["sinkCACerts"] = json!(certs);
    }
    if let Some(consumers) = status.consumers {
        body["consumers"] = json!(consumers);
    }
    if !status.ce_attributes.is_empty() {
        body["ceAttributes"] = json!(status.ce_attributes);
    }
    if let Some(generation) = generation {
        body["observedGeneration"] = json!(generation);
    }
    match (&status.address, status.addresses.first()) {
        (_, Some(first)) => {
            body["address"] = json!(first);
            body["addresses"] = json!(status.addresses);
        }
        (Some(url), None) => body["address"] = json!({ "url": url }),
        (None, None) => {}
    }
    if !status.policies.is_empty() {
        body["policies"] = json!(status.policies);
    }
    if !status.from.is_empty() {
        body["from"] = json!(status.from);
    }
    if let Some(uri) = &status.subscriber_uri {
        body["subscriberUri"] = json!(uri);
    }
    if let Some(uri) = &status.dead_letter_sink_uri {
        body["deadLetterSinkUri"] = json!(uri);
    }
    if !status.annotations.is_empty() {
        body["annotations"] = json!(status.annotations);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_knatives_shape() {
        let mut status = Status::new("Trigger", "ns", "t")
            .not_ready("BrokerDoesNotExist", "broker 'b' does not exist");
        status.subscriber_uri = Some("http://s".into());
        status
            .annotations
            .insert("delivery.ferry.dev/replay".into(), "earliest".into());
        let v = knative_status(&status, Some(3));
        assert_eq!(v["status"]["observedGeneration"], 3);
        assert_eq!(
            v["status"]["annotations"]["delivery.ferry.dev/replay"],
            "earliest"
        );
        assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(v["status"]["conditions"][0]["status"], "False");
        assert_eq!(v["status"]["conditions"][0]["reason"], "BrokerDoesNotExist");
        assert_eq!(v["status"]["subscriberUri"], "http://s");
        assert!(v["status"].get("address").is_none());
    }
}
