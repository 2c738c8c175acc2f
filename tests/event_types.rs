//! The EventType registry in `ferry standalone`, on the real broker: new
//! (type, source) pairs of a broker that asks for it become EventTypes
//! once, whatever the number of events; replies and a source's declared
//! pairs count; a broker that does not ask gets none; the registry
//! survives a restart; `ferry eventtypes` counts the triggers each type
//! would reach; a hand-written EventType whose broker is missing is not
//! Ready.

use std::time::Duration;

use ferry_harness::{
    bootstrap, eventually, http, post_event as post,
    process::{write_resource, Standalone},
    subscriber::{Answer, Subscriber},
    unique,
};
use ferry_registry::name::event_type_name;
use serde_json::Value;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

fn event_types(resources: &[Value]) -> Vec<Value> {
    resources
        .iter()
        .filter(|r| r["kind"] == "EventType")
        .cloned()
        .collect()
}

fn resources_yaml(ns: &str, all: &str, replier: &str) -> String {
    format!(
        r#"apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: on, namespace: {ns}, annotations: {{ferry.dev/eventtype-auto-create: enabled}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: off, namespace: {ns}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: {ns}}}
spec: {{broker: on, subscriber: {{uri: "{all}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: orders, namespace: {ns}}}
spec:
  broker: on
  filter: {{attributes: {{type: dev.example.order}}}}
  subscriber: {{uri: "{replier}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: nothing, namespace: {ns}}}
spec:
  broker: on
  filter: {{attributes: {{type: dev.example.never}}}}
  subscriber: {{uri: "{all}"}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: beat, namespace: {ns}}}
spec:
  schedule: "0 0 1 1 *"
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: on}}}}
---
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata: {{name: dangling, namespace: {ns}}}
spec:
  reference: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: missing}}
  attributes: [{{name: type}}, {{name: source}}, {{name: specversion}}, {{name: id}}]
"#
    )
}

#[tokio::test]
async fn new_pairs_become_event_types_once_and_the_registry_survives_a_restart() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let all = Subscriber::accepting().await;
    // Answers each order with a reply event, which goes back to the broker.
    let replier = Subscriber::scripted(|received, _| {
        let id = format!("reply-{}", received.header("ce-id").unwrap_or_default());
        Answer::status(200)
            .with_header("ce-specversion", "1.0")
            .with_header("ce-id", &id)
            .with_header("ce-source", "/billing")
            .with_header("ce-type", "dev.example.invoice")
            .with_header("content-type", "application/json")
            .with_body("{}")
    })
    .await;
    write_resource(
        dir.path(),
        "mesh.yaml",
        &resources_yaml(&ns, &all.url(), &replier.url()),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Trigger", "orders", "True").await;
    let dangling = ferry
        .wait_for_status("EventType", "dangling", "False")
        .await;
    assert_eq!(dangling["reason"], "ResourceDoesNotExist", "{dangling}");

    let client = http::client();
    let on = format!("{}/{ns}/on", ferry.ingress);
    for i in 0..20 {
        post(
            &client,
            &on,
            &format!("order-{i}"),
            "dev.example.order",
            "/shop",
        )
        .await;
    }
    post(&client, &on, "refund-1", "dev.example.refund", "/shop").await;
    // The same type from a second source is a second EventType.
    post(&client, &on, "order-w", "dev.example.order", "/warehouse").await;
    for i in 0..5 {
        let off = format!("{}/{ns}/off", ferry.ingress);
        post(
            &client,
            &off,
            &format!("off-{i}"),
            "dev.example.order",
            "/shop",
        )
        .await;
    }

    let expected = [
        ("dev.example.order", "/shop"),
        ("dev.example.order", "/warehouse"),
        ("dev.example.refund", "/shop"),
        ("dev.example.invoice", "/billing"),
        (
            "dev.knative.sources.ping",
            &*format!("/apis/v1/namespaces/{ns}/pingsources/beat"),
        ),
    ]
    .map(|(t, s)| (t.to_owned(), s.to_owned()));
    let wait_for_registry = |ferry: &Standalone| {
        let expected = expected.clone();
        let admin = ferry.admin.clone();
        let ns = ns.clone();
        async move {
            eventually("the broker's five EventTypes, Ready", WAIT, || {
                let (admin, ns, expected) = (admin.clone(), ns.clone(), expected.clone());
                async move {
                    let resources = ferry_harness::process::resources_at(&admin).await;
                    let found: Vec<Value> = event_types(&resources)
                        .into_iter()
                        .filter(|e| e["namespace"] == ns.as_str() && e["name"] != "dangling")
                        .collect();
                    let ready = found.iter().all(|e| e["ready"] == "True");
                    (found.len() == expected.len() && ready).then_some(found)
                }
            })
            .await
        }
    };
    let found = wait_for_registry(&ferry).await;
    for (ty, source) in &expected {
        let name = event_type_name(ty, source, &ns, "on");
        let et = found
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{ty} from {source} named {name}: {found:?}"));
        assert_eq!(et["eventType"]["type"], ty.as_str());
        assert_eq!(et["eventType"]["source"], source.as_str());
        assert_eq!(et["eventType"]["reference"], format!("Broker {ns}/on"));
    }
    let resources = ferry.resources().await;
    assert!(
        !event_types(&resources)
            .iter()
            .any(|e| e["eventType"]["reference"] == format!("Broker {ns}/off")),
        "a broker that does not ask makes none"
    );
    let files = std::fs::read_dir(state.path().join("eventtypes"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|f| f.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(files, expected.len(), "each pair written once");

    // The table: how many triggers each type would reach now.
    let broker = format!("{ns}/on");
    let args = ["eventtypes", "--admin", &ferry.admin, "--broker", &broker];
    let table = ferry_harness::process::ferry_output(FERRY, &args, &[]);
    let row = |ty: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{ty} ")) && !l.contains("/warehouse"))
            .unwrap_or_else(|| panic!("a row for {ty}:\n{table}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert!(table.starts_with("TYPE "), "{table}");
    assert_eq!(row("dev.example.order"), "2", "all and orders:\n{table}");
    assert_eq!(row("dev.example.refund"), "1", "all only:\n{table}");
    assert_eq!(row("dev.example.invoice"), "1", "all only:\n{table}");

    // An EventType's spec is immutable: an edit is reported, the first
    // spec kept.
    let edited = resources_yaml(&ns, &all.url(), &replier.url())
        .replace("name: missing}", "name: missing}\n  description: changed");
    write_resource(dir.path(), "mesh.yaml", &edited);
    let held = eventually("the edit refused", WAIT, || async {
        let resources = ferry.resources().await;
        resources
            .into_iter()
            .find(|r| r["name"] == "dangling" && r["reason"] == "InvalidSpec")
    })
    .await;
    assert!(
        held["message"].as_str().unwrap().contains("immutable"),
        "{held}"
    );
    assert!(
        held["eventType"]["description"].is_null(),
        "the first spec kept: {held}"
    );

    // A restart keeps the registry, before any event is sent again.
    drop(ferry);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let again = wait_for_registry(&ferry).await;
    assert_eq!(again.len(), expected.len());
}
