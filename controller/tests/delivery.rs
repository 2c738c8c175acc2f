//! Ferry's delivery annotations in the plan (`delivery.ferry.dev/`): what
//! reaches the contract, and what a bad value says.

mod support;

use ferry_proto::InitialOffset;

use ferry_controller::{
    plan::{plan, Ready, TopicHealth},
    resources::Resources,
};

#[test]
fn backoff_max_reaches_the_contract_and_a_bad_one_says_why() {
    let mut resources = Resources::default();
    resources.add_yaml(
        "delivery.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: capped, namespace: ns, annotations: {delivery.ferry.dev/backoff-max: PT0.3S}}\n\
         spec: {broker: b, subscriber: {uri: 'http://s'}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: plain, namespace: ns}\nspec: {broker: b, subscriber: {uri: 'http://s'}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: bad, namespace: ns, annotations: {delivery.ferry.dev/backoff-max: soon}}\n\
         spec: {broker: b, subscriber: {uri: 'http://s'}}\n",
    );
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    let plan = plan(&resources, &support::settings(), &TopicHealth::default());
    let egress = |name: &str| {
        plan.resources[0]
            .egresses
            .iter()
            .find(|e| e.reference.as_ref().is_some_and(|r| r.name == name))
            .cloned()
    };
    assert_eq!(egress("capped").unwrap().backoff_max, 300);
    assert_eq!(
        egress("plain").unwrap().backoff_max,
        0,
        "no annotation: no cap"
    );
    assert!(egress("bad").is_none());
    let bad = plan.statuses.iter().find(|s| s.name == "bad").unwrap();
    assert_eq!(
        (bad.ready, bad.reason.as_str()),
        (Ready::False, "DeliveryInvalid")
    );
    assert!(
        bad.message.contains("delivery.ferry.dev/backoff-max"),
        "{bad:?}"
    );
}

#[test]
fn start_sets_where_a_new_group_begins() {
    let mut resources = Resources::default();
    resources.add_yaml(
        "start.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: replay, namespace: ns, annotations: {delivery.ferry.dev/start: earliest}}\n\
         spec: {broker: b, subscriber: {uri: 'http://s'}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: plain, namespace: ns}\nspec: {broker: b, subscriber: {uri: 'http://s'}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {name: bad, namespace: ns, annotations: {delivery.ferry.dev/start: yesterday}}\n\
         spec: {broker: b, subscriber: {uri: 'http://s'}}\n",
    );
    let plan = plan(&resources, &support::settings(), &TopicHealth::default());
    let offset = |name: &str| {
        plan.resources[0]
            .egresses
            .iter()
            .find(|e| e.reference.as_ref().is_some_and(|r| r.name == name))
            .map(|e| e.initial_offset())
    };
    assert_eq!(offset("replay"), Some(InitialOffset::Earliest));
    assert_eq!(
        offset("plain"),
        Some(InitialOffset::Unset),
        "the reference's: the end"
    );
    assert_eq!(offset("bad"), None);
    let bad = plan.statuses.iter().find(|s| s.name == "bad").unwrap();
    assert_eq!(bad.reason, "DeliveryInvalid");
}
