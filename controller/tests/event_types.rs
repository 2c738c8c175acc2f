//! The EventType registry's part of a plan: the contract's feature flag,
//! EventTypes' statuses, and the pairs sources declare.

use ferry_controller::{
    plan::{plan, ChannelAddresses, KafkaDefaults, Plan, Ready, Settings, TopicHealth},
    resources::Resources,
};

fn run(yaml: &str, autocreate: bool) -> Plan {
    let settings = Settings {
        ingress_url: "http://ingress.local".into(),
        defaults: KafkaDefaults {
            bootstrap: "k:9092".into(),
            partitions: 1,
            replication: 1,
            topic_config: Default::default(),
            auth: None,
        },
        claim_unannotated: true,
        channel_addresses: ChannelAddresses::Path,
        channel_subscribers: Default::default(),
        api_server: None,
        eventtype_autocreate: autocreate,
        tls: None,
        oidc: None,
    };
    let mut resources = Resources::default();
    resources.add_yaml("test.yaml", yaml);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    let health = TopicHealth::default();
    plan(&resources, &settings, &health)
}

const BROKERS: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: plain, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: on, namespace: ns, annotations: {ferry.dev/eventtype-auto-create: enabled}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: off, namespace: ns, annotations: {ferry.dev/eventtype-auto-create: disabled}}
"#;

fn autocreates(plan: &Plan, name: &str) -> bool {
    plan.resources
        .iter()
        .find(|r| r.reference.as_ref().is_some_and(|re| re.name == name))
        .unwrap_or_else(|| panic!("{name} in the contract"))
        .feature_flags
        .as_ref()
        .is_some_and(|f| f.enable_event_type_autocreate)
}

#[test]
fn the_flag_comes_from_the_setting_and_each_brokers_annotation() {
    let off = run(BROKERS, false);
    assert!(!autocreates(&off, "plain"));
    assert!(autocreates(&off, "on"));
    assert!(!autocreates(&off, "off"));
    let on = run(BROKERS, true);
    assert!(autocreates(&on, "plain"));
    assert!(autocreates(&on, "on"));
    assert!(!autocreates(&on, "off"), "the annotation wins");
}

#[test]
fn event_types_are_ready_when_their_reference_exists() {
    let yaml = BROKERS.to_owned()
        + r#"
---
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata: {name: orders, namespace: ns}
spec:
  reference: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: plain}
  description: Orders
  attributes:
    - {name: type, value: dev.example.order, required: true}
    - {name: source, value: /shop, required: true}
    - {name: specversion, value: "1.0", required: true}
    - {name: id, required: true}
---
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata: {name: dangling, namespace: ns}
spec:
  reference: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: missing}
  attributes: [{name: type}, {name: source}, {name: specversion}, {name: id}]
---
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata: {name: partial, namespace: ns}
spec:
  attributes: [{name: type, value: t}]
---
apiVersion: eventing.knative.dev/v1beta2
kind: EventType
metadata: {name: old-shape, namespace: ns}
spec:
  type: dev.example.refund
  source: /shop
  reference: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: plain}
"#;
    let p = run(&yaml, false);
    let status = |name: &str| {
        p.statuses
            .iter()
            .find(|s| s.kind == "EventType" && s.name == name)
            .unwrap_or_else(|| panic!("a status for {name}"))
    };
    let orders = status("orders");
    assert_eq!(orders.ready, Ready::True, "{orders:?}");
    assert_eq!(orders.conditions[0].ty, "ReferenceExists");
    let summary = orders.event_type.as_ref().unwrap();
    assert_eq!(summary.ty.as_deref(), Some("dev.example.order"));
    assert_eq!(summary.reference.as_deref(), Some("Broker ns/plain"));
    let dangling = status("dangling");
    assert_eq!(dangling.ready, Ready::False);
    assert_eq!(dangling.reason, "ResourceDoesNotExist");
    let partial = status("partial");
    assert_eq!(partial.reason, "InvalidSpec");
    assert_eq!(
        partial.message,
        "spec.attributes: missing field(s): source, specversion, id"
    );
    assert_eq!(partial.conditions[0].reason, "ReferenceNotSet");
    let old = status("old-shape");
    assert_eq!(old.ready, Ready::True, "{old:?}");
    assert_eq!(
        old.event_type.as_ref().unwrap().ty.as_deref(),
        Some("dev.example.refund")
    );
}

#[test]
fn sources_declare_their_attributes_for_brokers_that_make_event_types() {
    let source = |name: &str, broker: &str| {
        format!(
            "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}, namespace: ns}}\n\
             spec:\n  schedule: '* * * * *'\n  sink:\n    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: {broker}}}\n"
        )
    };
    let yaml = BROKERS.to_owned() + &source("to-on", "on") + &source("to-plain", "plain");
    let p = run(&yaml, false);
    assert_eq!(
        p.declared_event_types.len(),
        1,
        "{:?}",
        p.declared_event_types
    );
    let d = &p.declared_event_types[0];
    assert_eq!(d.addressable.name, "on");
    assert_eq!(d.owner.kind, "PingSource");
    assert_eq!(d.owner.name, "to-on");
    assert_eq!(d.ty, "dev.knative.sources.ping");
    assert_eq!(d.source, "/apis/v1/namespaces/ns/pingsources/to-on");
}
