//! Flows in the plan: Knative's wiring of a Sequence's and a Parallel's
//! channels and subscriptions, and the examples in `examples/flows/`.

use ferry_controller::{
    folder,
    plan::{expand_flows, Ready, GENERATED_BY},
    resources::Resources,
};

#[test]
fn the_examples_wire_as_knative_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flows");
    let resources = folder::load(&dir);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    assert_eq!(
        (resources.sequences.len(), resources.parallels.len()),
        (1, 1)
    );
    let expanded = expand_flows(&resources);
    let channels: Vec<&str> = expanded
        .channels
        .iter()
        .map(|c| c.metadata.name.as_str())
        .collect();
    assert_eq!(
        channels,
        [
            "greeting-kn-sequence-0",
            "greeting-kn-sequence-1",
            "orders-kn-parallel",
            "orders-kn-parallel-0",
            "orders-kn-parallel-1"
        ]
    );
    let sub = |name: &str| {
        expanded
            .subscriptions
            .iter()
            .find(|s| s.metadata.name == name)
            .unwrap_or_else(|| panic!("subscription {name}"))
    };
    // Step 0 replies into channel 1; the last step to the Sequence's reply.
    let first = sub("greeting-kn-sequence-0");
    assert_eq!(first.spec.channel.name, "greeting-kn-sequence-0");
    assert_eq!(
        first
            .spec
            .reply
            .as_ref()
            .unwrap()
            .reference
            .as_ref()
            .unwrap()
            .name,
        "greeting-kn-sequence-1"
    );
    assert!(first.spec.delivery.is_some(), "the step's own delivery");
    let last = sub("greeting-kn-sequence-1");
    assert_eq!(
        last.spec.reply.as_ref().unwrap().uri.as_deref(),
        Some("http://127.0.0.1:8081/")
    );
    assert_eq!(
        last.metadata
            .annotations
            .get(GENERATED_BY)
            .map(String::as_str),
        Some("Sequence default/greeting")
    );
    // A filtered branch: the filter replies into the branch channel.
    let filter = sub("orders-kn-parallel-filter-0");
    assert_eq!(filter.spec.channel.name, "orders-kn-parallel");
    assert_eq!(
        filter.spec.subscriber.uri.as_deref(),
        Some("http://127.0.0.1:8091/")
    );
    assert_eq!(
        filter
            .spec
            .reply
            .as_ref()
            .unwrap()
            .reference
            .as_ref()
            .unwrap()
            .name,
        "orders-kn-parallel-0"
    );
    // Without a filter, the ingress channel delivers to the branch channel.
    let unfiltered = sub("orders-kn-parallel-filter-1");
    assert_eq!(
        unfiltered.spec.subscriber.reference.as_ref().unwrap().name,
        "orders-kn-parallel-1"
    );
    assert!(unfiltered.spec.reply.is_none());
    let branch = sub("orders-kn-parallel-1");
    assert_eq!(branch.spec.channel.name, "orders-kn-parallel-1");
    assert_eq!(
        branch.spec.reply.as_ref().unwrap().uri.as_deref(),
        Some("http://127.0.0.1:8081/"),
        "the Parallel's reply"
    );
}

/// Settings as standalone has them: channels addressed by path.
fn standalone() -> ferry_controller::plan::Settings {
    ferry_controller::plan::Settings {
        ingress_url: "http://ingress".into(),
        defaults: ferry_controller::plan::KafkaDefaults {
            bootstrap: "k:9092".into(),
            partitions: 1,
            replication: 1,
            topic_config: Default::default(),
            auth: None,
        },
        claim_unannotated: true,
        channel_addresses: ferry_controller::plan::ChannelAddresses::Path,
        channel_subscribers: Default::default(),
        api_server: None,
        eventtype_autocreate: false,
        tls: None,
        oidc: None,
    }
}

#[test]
fn invalid_flows_generate_nothing_and_say_why() {
    let mut resources = Resources::default();
    resources.add_yaml(
        "bad.yaml",
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: empty, namespace: ns}\nspec: {steps: []}\n---\n\
         apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {name: other, namespace: ns}\nspec:\n  \
         channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}\n  branches: [{subscriber: {uri: http://s}}]\n",
    );
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    let expanded = expand_flows(&resources);
    assert!(expanded.channels.is_empty() && expanded.subscriptions.is_empty());
    let plan = ferry_controller::plan::plan(&resources, &standalone(), &Default::default());
    let status = |kind: &str| plan.statuses.iter().find(|s| s.kind == kind).unwrap();
    assert_eq!(status("Sequence").reason, "InvalidSpec");
    assert!(
        status("Sequence").message.starts_with("spec.steps:"),
        "{:?}",
        status("Sequence")
    );
    assert!(
        status("Parallel").message.contains("InMemoryChannel"),
        "{:?}",
        status("Parallel")
    );
}

#[test]
fn a_flow_is_a_destination_for_triggers_sources_and_other_flows() {
    let mut resources = Resources::default();
    resources.add_yaml(
        "refs.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: ns}\nspec:\n  broker: b\n  \
         subscriber: {ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: seq}}\n---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p, namespace: ns}\nspec:\n  \
         schedule: '* * * * *'\n  sink: {ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: par}}\n---\n\
         apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: seq, namespace: ns}\nspec:\n  \
         steps:\n    - {uri: 'http://step'}\n    - {ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: par}}\n---\n\
         apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {name: par, namespace: ns}\nspec:\n  \
         branches: [{subscriber: {uri: 'http://branch'}}]\n",
    );
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    let plan = ferry_controller::plan::plan(&resources, &standalone(), &Default::default());
    let status = |kind: &str, name: &str| {
        plan.statuses
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    let destinations: Vec<&str> = plan
        .resources
        .iter()
        .flat_map(|r| &r.egresses)
        .map(|e| e.destination.as_str())
        .collect();
    // The trigger delivers to the Sequence's first channel, and the
    // Sequence's second step to the Parallel's ingress channel.
    assert!(
        destinations.contains(&"http://ingress/channels/ns/seq-kn-sequence-0"),
        "{destinations:?}"
    );
    assert!(
        destinations.contains(&"http://ingress/channels/ns/par-kn-parallel"),
        "{destinations:?}"
    );
    assert_eq!(
        status("Trigger", "t").ready,
        Ready::True,
        "{:?}",
        status("Trigger", "t")
    );
    let ping = status("PingSource", "p");
    assert_eq!(ping.ready, Ready::True, "{ping:?}");
    assert_eq!(
        ping.sink_uri.as_deref(),
        Some("http://ingress/channels/ns/par-kn-parallel")
    );
}

/// A flow is Ready once its subscriptions are, and a subscription once its
/// consumer group has its start committed.
#[test]
fn a_flow_waits_for_its_subscriptions_groups() {
    use ferry_controller::plan::{group_starts, TopicHealth};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flows");
    let resources = folder::load(&dir);
    let none = group_starts::Pins::new();
    let waiting = TopicHealth {
        pins: Some(&none),
        ..Default::default()
    };
    let plan = ferry_controller::plan::plan(&resources, &standalone(), &waiting);
    let status = |plan: &ferry_controller::plan::Plan, kind: &str, name: &str| {
        let s = plan
            .statuses
            .iter()
            .find(|s| s.kind == kind && s.name == name);
        s.unwrap_or_else(|| panic!("{kind} {name}")).clone()
    };
    let step = status(&plan, "Subscription", "greeting-kn-sequence-0");
    assert_eq!(
        (step.ready, step.reason.as_str()),
        (Ready::False, group_starts::NOT_COMMITTED),
        "{step:?}"
    );
    let sequence = status(&plan, "Sequence", "greeting");
    assert_eq!(sequence.ready, Ready::False, "{sequence:?}");
    assert!(
        sequence.message.contains("greeting-kn-sequence-0"),
        "{sequence:?}"
    );

    let pins: group_starts::Pins = group_starts::wanted(&plan.resources)
        .into_iter()
        .flat_map(|(cluster, groups)| groups.into_iter().map(move |g| (cluster.clone(), g)))
        .map(|key| (key, Ok(())))
        .collect();
    let pinned = TopicHealth {
        pins: Some(&pins),
        ..Default::default()
    };
    let plan = ferry_controller::plan::plan(&resources, &standalone(), &pinned);
    for (kind, name) in [
        ("Subscription", "greeting-kn-sequence-0"),
        ("Sequence", "greeting"),
        ("Parallel", "orders"),
    ] {
        let s = status(&plan, kind, name);
        assert_eq!(s.ready, Ready::True, "{s:?}");
    }
}
