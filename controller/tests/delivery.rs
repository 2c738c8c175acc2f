//! Ferry's delivery annotations in the plan (`delivery.ferry.dev/`): what
//! reaches the contract, and what a bad value says.

mod support;

use ferry_proto::{replay::To, DeliveryOrder, Egress, InitialOffset, Replay};

use ferry_controller::{
    plan::{plan, Plan, Ready, TopicHealth},
    resources::Resources,
};

/// The egress of the trigger `name`, on the plan's first resource.
fn egress_of(plan: &Plan, name: &str) -> Option<Egress> {
    plan.resources[0]
        .egresses
        .iter()
        .find(|e| e.reference.as_ref().is_some_and(|r| r.name == name))
        .cloned()
}

#[test]
fn backoff_max_reaches_the_contract_and_a_bad_one_says_why() {
    let resources = triggers(&[
        ("capped", "delivery.ferry.dev/backoff-max: PT0.3S"),
        ("plain", ""),
        ("bad", "delivery.ferry.dev/backoff-max: soon"),
    ]);
    let plan = plan(&resources, &support::settings(), &TopicHealth::default());
    let egress = |name: &str| egress_of(&plan, name);
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
    let resources = triggers(&[
        ("replay", "delivery.ferry.dev/start: earliest"),
        ("plain", ""),
        ("bad", "delivery.ferry.dev/start: yesterday"),
    ]);
    let plan = plan(&resources, &support::settings(), &TopicHealth::default());
    let offset = |name: &str| egress_of(&plan, name).map(|e| e.initial_offset());
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

/// A broker `b` and one trigger per (name, annotations) on it.
fn triggers(annotated: &[(&str, &str)]) -> Resources {
    let mut yaml = String::from(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n",
    );
    for (name, annotations) in annotated {
        yaml.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
             metadata: {{name: {name}, namespace: ns, annotations: {{{annotations}}}}}\n\
             spec: {{broker: b, subscriber: {{uri: 'http://s'}}}}\n"
        ));
    }
    let mut resources = Resources::default();
    resources.add_yaml("triggers.yaml", &yaml);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    resources
}

#[test]
fn order_pause_start_time_and_replay_reach_the_contract() {
    let resources = triggers(&[
        (
            "by-key",
            "kafka.eventing.knative.dev/delivery.order: ordered-by-key",
        ),
        ("paused", "delivery.ferry.dev/paused: 'true'"),
        ("running", "delivery.ferry.dev/paused: 'false'"),
        (
            "from-time",
            "delivery.ferry.dev/start: '2026-12-07T10:00:00.250+01:00'",
        ),
        (
            "replayed",
            "delivery.ferry.dev/replay: '2026-12-07T09:00:00Z#again'",
        ),
        ("to-start", "delivery.ferry.dev/replay: earliest"),
        (
            "bad-order",
            "kafka.eventing.knative.dev/delivery.order: by-key",
        ),
        ("bad-pause", "delivery.ferry.dev/paused: 'yes'"),
        ("bad-replay", "delivery.ferry.dev/replay: 'last tuesday'"),
    ]);
    let plan = plan(&resources, &support::settings(), &TopicHealth::default());
    let egress = |name: &str| egress_of(&plan, name);
    let by_key = egress("by-key").unwrap();
    assert!(by_key.ordered_by_key);
    assert_eq!(
        by_key.delivery_order(),
        DeliveryOrder::Ordered,
        "a data plane without the field keeps each key's order too"
    );
    assert!(egress("paused").unwrap().paused);
    assert!(!egress("running").unwrap().paused);
    let from_time = egress("from-time").unwrap();
    assert_eq!(from_time.start_time, 1_796_634_000_250);
    assert_eq!(from_time.initial_offset(), InitialOffset::Unset);
    assert_eq!(
        egress("replayed").unwrap().replay,
        Some(Replay {
            id: "2026-12-07T09:00:00Z#again".into(),
            to: Some(To::Time(1_796_634_000_000)),
        })
    );
    assert_eq!(
        egress("to-start").unwrap().replay.unwrap().to,
        Some(To::Offset(InitialOffset::Earliest as i32))
    );
    let status = |name: &str| plan.statuses.iter().find(|s| s.name == name).unwrap();
    assert_eq!(
        status("replayed").annotations["delivery.ferry.dev/replay"],
        "2026-12-07T09:00:00Z#again",
        "the status records the replay passed on"
    );
    for (name, reason, names) in [
        ("bad-order", "DeliveryOrderInvalid", "ordered-by-key"),
        ("bad-pause", "DeliveryInvalid", "delivery.ferry.dev/paused"),
        ("bad-replay", "DeliveryInvalid", "RFC 3339"),
    ] {
        assert!(egress(name).is_none(), "{name}");
        let s = status(name);
        assert_eq!(
            (s.ready, s.reason.as_str()),
            (Ready::False, reason),
            "{name}"
        );
        assert!(s.message.contains(names), "{name}: {}", s.message);
    }
}
