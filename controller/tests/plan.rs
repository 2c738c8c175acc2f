//! The reconciler's decisions, without Kafka: resources in, contract,
//! topics, groups and statuses out.

use std::collections::BTreeMap;

use ferry_common::kafka::ClusterRef;
use ferry_controller::{
    plan::{plan, ChannelAddresses, KafkaDefaults, Plan, Ready, Settings, Status, TopicHealth},
    resources::Resources,
};
use ferry_proto::{egress::ReplyStrategy, BackoffPolicy, DeliveryOrder};

fn settings() -> Settings {
    Settings {
        ingress_url: "http://ingress.local".into(),
        defaults: KafkaDefaults {
            bootstrap: "k:9092".into(),
            partitions: 10,
            replication: 3,
            topic_config: BTreeMap::new(),
            auth: None,
        },
        claim_unannotated: true,
        channel_addresses: ChannelAddresses::Host,
        channel_subscribers: Default::default(),
        api_server: None,
        eventtype_autocreate: false,
        tls: None,
        oidc: None,
    }
}

fn run(yaml: &str) -> Plan {
    run_observed(yaml, &TopicHealth::default())
}

fn run_observed(yaml: &str, observed: &TopicHealth) -> Plan {
    let mut resources = Resources::default();
    resources.add_yaml("test.yaml", yaml);
    plan(&resources, &settings(), observed)
}

fn status<'a>(plan: &'a Plan, kind: &str, name: &str) -> &'a Status {
    plan.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:?}", plan.statuses))
}

const BROKER: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: { name: b, namespace: ns }
"#;

fn trigger(name: &str, spec: &str) -> String {
    format!("---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{ name: {name}, namespace: ns }}\nspec:\n{spec}\n")
}

#[test]
fn a_broker_and_a_trigger_become_the_contract() {
    let p = run(&(BROKER.to_owned()
        + &trigger(
            "t1",
            "  broker: b\n  filter: { attributes: { type: order.created } }\n  filters: [ { prefix: { source: /orders } } ]\n  subscriber: { uri: http://sub.local/x }",
        )));
    let b = status(&p, "Broker", "b");
    assert_eq!(
        (b.ready, b.address.as_deref()),
        (Ready::True, Some("http://ingress.local/ns/b"))
    );
    let t = status(&p, "Trigger", "t1");
    assert_eq!(
        (t.ready, t.subscriber_uri.as_deref()),
        (Ready::True, Some("http://sub.local/x"))
    );

    assert_eq!(p.topics.len(), 1);
    let topic = &p.topics[0];
    assert_eq!(
        (
            topic.name.as_str(),
            topic.partitions,
            topic.replication,
            topic.external
        ),
        ("knative-broker-ns-b", 10, 3, false)
    );
    assert_eq!(
        p.groups.iter().map(|(_, g)| g.as_str()).collect::<Vec<_>>(),
        ["knative-trigger-ns-t1"]
    );

    let r = &p.resources[0];
    assert_eq!(r.topics, ["knative-broker-ns-b"]);
    assert_eq!(r.bootstrap_servers, "k:9092");
    assert_eq!(r.ingress.as_ref().unwrap().path, "/ns/b");
    let e = &r.egresses[0];
    assert_eq!(e.consumer_group, "knative-trigger-ns-t1");
    assert_eq!(e.destination, "http://sub.local/x");
    assert_eq!(
        e.reply_strategy,
        Some(ReplyStrategy::ReplyToOriginalTopic(ferry_proto::Empty {}))
    );
    assert_eq!(
        e.filter.as_ref().unwrap().attributes["type"],
        "order.created"
    );
    assert_eq!(e.dialected_filter.len(), 1);
    assert_eq!(e.delivery_order(), DeliveryOrder::Unordered);
    assert_eq!(
        e.egress_config, None,
        "no trigger delivery: the broker's applies"
    );
}

#[test]
fn delivery_specs_become_egress_configs_and_the_triggers_replaces_the_brokers() {
    let broker = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: { name: b, namespace: ns }
spec:
  delivery:
    retry: 5
    backoffPolicy: linear
    backoffDelay: PT0.5S
    timeout: PT2S
    deadLetterSink: { ref: { apiVersion: serving.knative.dev/v1, kind: Service, name: dls } }
"#;
    let p = run(&(broker.to_owned()
        + &trigger("own", "  broker: b\n  subscriber: { uri: http://s }\n  delivery: { retry: 1 }")
        + &trigger("inherits", "  broker: b\n  subscriber: { ref: { apiVersion: v1, kind: Service, name: svc }, uri: /hook }")));
    let r = &p.resources[0];
    let c = r.egress_config.as_ref().unwrap();
    assert_eq!(
        (c.retry, c.backoff_policy(), c.backoff_delay, c.timeout),
        (5, BackoffPolicy::Linear, 500, 2000)
    );
    assert_eq!(c.dead_letter, "http://dls.ns.svc.cluster.local");
    assert_eq!(
        status(&p, "Broker", "b").dead_letter_sink_uri.as_deref(),
        Some("http://dls.ns.svc.cluster.local")
    );
    let own = r
        .egresses
        .iter()
        .find(|e| e.consumer_group.ends_with("-own"))
        .unwrap();
    let oc = own.egress_config.as_ref().unwrap();
    assert_eq!(
        (
            oc.retry,
            oc.dead_letter.as_str(),
            oc.timeout,
            oc.backoff_delay
        ),
        (1, "", 0, 200),
        "replaced, not merged"
    );
    let inherits = r
        .egresses
        .iter()
        .find(|e| e.consumer_group.ends_with("-inherits"))
        .unwrap();
    assert_eq!(inherits.destination, "http://svc.ns.svc.cluster.local/hook");
}

#[test]
fn every_not_ready_reason() {
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (trigger("t", "  broker: missing\n  subscriber: { uri: http://s }"), "t", "BrokerDoesNotExist", "broker 'missing' does not exist"),
        (trigger("t", "  broker: b\n  subscriber: { ref: { apiVersion: apps/v1, kind: Deployment, name: d } }"), "t", "SubscriberResolveFailed", "cannot resolve a Deployment of apps/v1"),
        (trigger("t", "  broker: b\n  subscriber: { uri: ftp://x }"), "t", "SubscriberResolveFailed", "scheme 'ftp' is not supported"),
        (trigger("t", "  broker: b\n  subscriber: { uri: relative/path }"), "t", "SubscriberResolveFailed", "is not absolute"),
        (trigger("t", "  broker: b\n  subscriber: {}"), "t", "SubscriberResolveFailed", "neither ref nor uri"),
        (trigger("t", "  broker: b\n  filters: [ { exact: { type: a, source: b } } ]\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "'exact' must have exactly one attribute, has 2"),
        (trigger("t", "  broker: b\n  filters: [ { exact: { Type: a } } ]\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "'Type' is not a CloudEvents attribute name"),
        (trigger("t", "  broker: b\n  filters: [ { exact: { type: a }, prefix: { type: b } } ]\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "exactly one of"),
        (trigger("t", "  broker: b\n  filters: [ { any: [ { not: {} } ] } ]\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "sets 0"),
        (trigger("t", "  broker: b\n  filter: { attributes: { my_ext: x } }\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "'my_ext' is not"),
        (trigger("t", "  broker: b\n  filters: [ { cesql: \"type = \" } ]\n  subscriber: { uri: http://s }"), "t", "FilterInvalid", "cesql 'type = ': CESQL parse error at position 7"),
        (trigger("t", "  broker: b\n  subscriber: { uri: http://s }\n  delivery: { retry: -1 }"), "t", "DeliveryInvalid", "retry must not be negative"),
        (trigger("t", "  broker: b\n  subscriber: { uri: http://s }\n  delivery: { timeout: 5s }"), "t", "DeliveryInvalid", "timeout: '5s' is not an ISO-8601 duration"),
        (trigger("t", "  broker: b\n  subscriber: { uri: http://s }\n  delivery: { backoffPolicy: random }"), "t", "DeliveryInvalid", "backoffPolicy 'random'"),
        (trigger("t", "  broker: b\n  subscriber: { uri: http://s }\n  delivery: { deadLetterSink: { uri: mailto:x } }"), "t", "DeliveryInvalid", "deadLetterSink: uri 'mailto:x'"),
    ];
    for (yaml, name, reason, message) in cases {
        let p = run(&(BROKER.to_owned() + &yaml));
        let s = status(&p, "Trigger", name);
        assert_eq!(
            (s.ready, s.reason.as_str()),
            (Ready::False, reason),
            "{yaml}"
        );
        assert!(
            s.message.contains(message),
            "{yaml}: '{}' lacks '{message}'",
            s.message
        );
        assert!(
            p.resources.iter().all(|r| r.egresses.is_empty()),
            "a trigger that is not ready is not in the contract"
        );
    }
    let annotated = |order: &str| {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: ns\n  \
             annotations: {{ kafka.eventing.knative.dev/delivery.order: {order} }}\nspec: {{ broker: b, subscriber: {{ uri: http://s }} }}\n"
        )
    };
    let p = run(&(BROKER.to_owned() + &annotated("sometimes")));
    assert_eq!(status(&p, "Trigger", "t").reason, "DeliveryOrderInvalid");
    let p = run(&(BROKER.to_owned() + &annotated("ordered")));
    assert_eq!(
        p.resources[0].egresses[0].delivery_order(),
        DeliveryOrder::Ordered
    );
}

#[test]
fn a_valid_cesql_filter_goes_into_the_contract() {
    let p = run(&(BROKER.to_owned() + &trigger("t", "  broker: b\n  filters: [ { cesql: \"type LIKE 'order.%' AND priority > 3\" } ]\n  subscriber: { uri: http://s }")));
    assert_eq!(status(&p, "Trigger", "t").ready, Ready::True);
    let filter = &p.resources[0].egresses[0].dialected_filter[0];
    assert_eq!(
        filter.filter,
        Some(ferry_proto::dialected_filter::Filter::Cesql(
            ferry_proto::Cesql {
                expression: "type LIKE 'order.%' AND priority > 3".into()
            }
        ))
    );
}

#[test]
fn broker_not_ready_reasons_and_their_triggers() {
    let t = trigger("t", "  broker: b\n  subscriber: { uri: http://s }");
    let p = run_observed(
        &(BROKER.to_owned() + &t),
        &TopicHealth {
            failed_topics: [(
                (ClusterRef::plain("k:9092"), "knative-broker-ns-b".into()),
                "Kafka is down".into(),
            )]
            .into(),
            pins: None,
        },
    );
    let b = status(&p, "Broker", "b");
    assert_eq!(
        (
            b.ready,
            b.reason.as_str(),
            b.message.as_str(),
            b.address.as_deref()
        ),
        (Ready::False, "TopicNotReady", "Kafka is down", None)
    );
    assert_eq!(status(&p, "Trigger", "t").reason, "BrokerNotReady");
    assert!(p.resources.is_empty());
    assert_eq!(
        p.groups.len(),
        1,
        "the trigger's group is kept while the trigger exists"
    );

    let with_config = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: { name: b, namespace: ns }
spec:
  config: { apiVersion: v1, kind: ConfigMap, name: kafka, namespace: ns }
"#;
    let p = run(with_config);
    assert_eq!((status(&p, "Broker", "b").reason.as_str()), "InvalidConfig");
    assert!(status(&p, "Broker", "b")
        .message
        .contains("ConfigMap ns/kafka does not exist"));

    let config_map = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: { name: kafka, namespace: ns }
data:
  default.topic.partitions: "3"
  default.topic.replication.factor: "1"
  bootstrap.servers: "other:9092"
  default.topic.config.retention.ms: "3600000"
"#;
    let p = run(&(with_config.to_owned() + config_map));
    let topic = &p.topics[0];
    assert_eq!(
        (
            topic.partitions,
            topic.replication,
            topic.cluster.bootstrap.as_str()
        ),
        (3, 1, "other:9092")
    );
    assert_eq!(topic.config["retention.ms"], "3600000");
    assert_eq!(p.resources[0].bootstrap_servers, "other:9092");

    let p = run(&(with_config.to_owned() + &config_map.replace("\"3\"", "\"many\"")));
    assert!(status(&p, "Broker", "b")
        .message
        .contains("default.topic.partitions 'many' is not a positive number"));
}

#[test]
fn classes_external_topics_and_broken_files() {
    let yaml = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: mt
  namespace: ns
  annotations: { eventing.knative.dev/broker.class: MTChannelBasedBroker }
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: ext
  namespace: ns
  annotations:
    eventing.knative.dev/broker.class: Kafka
    kafka.eventing.knative.dev/external.topic: shared-topic
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: { name: on-mt, namespace: ns }
spec: { broker: mt, subscriber: { uri: http://s } }
"#;
    let mut resources = Resources::default();
    resources.add_yaml("good.yaml", yaml);
    resources.add_yaml("broken.yaml", "this: [is not yaml");
    let p = plan(&resources, &settings(), &TopicHealth::default());
    assert!(
        p.statuses
            .iter()
            .all(|s| s.name != "mt" && s.name != "on-mt"),
        "another class's broker and triggers are not ours"
    );
    assert_eq!(
        (p.topics[0].name.as_str(), p.topics[0].external),
        ("shared-topic", true)
    );
    assert_eq!(p.resources[0].topics, ["shared-topic"]);
    let file = status(&p, "File", "broken.yaml (document 1)");
    assert_eq!(
        (file.ready, file.reason.as_str()),
        (Ready::False, "Invalid")
    );

    let strict = Settings {
        claim_unannotated: false,
        ..settings()
    };
    let mut r = Resources::default();
    r.add_yaml("x", BROKER);
    assert!(
        plan(&r, &strict, &TopicHealth::default())
            .statuses
            .is_empty(),
        "unannotated brokers are left to others"
    );
}

#[test]
fn the_plan_is_deterministic() {
    let yaml = BROKER.to_owned()
        + &trigger("b-second", "  broker: b\n  subscriber: { uri: http://s }")
        + &trigger("a-first", "  broker: b\n  subscriber: { uri: http://s }");
    let one = run(&yaml);
    let two = run(&yaml);
    assert_eq!(one.resources, two.resources);
    let groups: Vec<_> = one.resources[0]
        .egresses
        .iter()
        .map(|e| e.consumer_group.as_str())
        .collect();
    assert_eq!(
        groups,
        ["knative-trigger-ns-a-first", "knative-trigger-ns-b-second"]
    );
}

const CHANNEL: &str = r#"
apiVersion: messaging.knative.dev/v1beta1
kind: KafkaChannel
metadata: { name: ch, namespace: ns }
spec:
  numPartitions: 3
  replicationFactor: 1
  retentionDuration: PT1H
  delivery: { retry: 2, backoffDelay: PT0.1S }
"#;

fn subscription(name: &str, spec: &str) -> String {
    format!("---\napiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{ name: {name}, namespace: ns, uid: uid-{name} }}\nspec:\n{spec}\n")
}

#[test]
fn a_channel_and_its_subscriptions_become_the_contract() {
    let p = run(&(CHANNEL.to_owned()
        + &subscription("s1", "  channel: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }\n  subscriber: { uri: http://one }\n  reply: { ref: { apiVersion: eventing.knative.dev/v1, kind: Broker, name: b } }")
        + &subscription("s2", "  channel: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }\n  subscriber: { uri: http://two }\n  delivery: { retry: 0 }")));
    let c = status(&p, "KafkaChannel", "ch");
    assert_eq!(
        (c.ready, c.address.as_deref()),
        (
            Ready::True,
            Some("http://ch-kn-channel.ns.svc.cluster.local")
        )
    );
    assert_eq!(
        c.subscribers
            .iter()
            .map(|s| (s.uid.as_str(), s.ready))
            .collect::<Vec<_>>(),
        [("uid-s1", Ready::True), ("uid-s2", Ready::True)]
    );
    let topic = p
        .topics
        .iter()
        .find(|t| t.name == "knative-messaging-kafka.ns.ch")
        .unwrap();
    assert_eq!((topic.partitions, topic.replication), (3, 1));
    assert_eq!(topic.config["retention.ms"], "3600000");
    let r = p
        .resources
        .iter()
        .find(|r| r.topics[0] == "knative-messaging-kafka.ns.ch")
        .unwrap();
    let ingress = r.ingress.as_ref().unwrap();
    assert_eq!(
        (ingress.host.as_str(), ingress.path.as_str()),
        ("ch-kn-channel.ns.svc.cluster.local", "/channels/ns/ch")
    );
    assert_eq!(r.egress_config.as_ref().unwrap().retry, 2);
    let s1 = &r.egresses[0];
    assert_eq!(s1.consumer_group, "kafka.ns.ch.uid-s1");
    assert_eq!(
        s1.delivery_order(),
        DeliveryOrder::Ordered,
        "channels deliver in order by default"
    );
    assert_eq!(
        s1.reply_strategy,
        Some(ReplyStrategy::ReplyUrl("http://ingress.local/ns/b".into()))
    );
    let s2 = &r.egresses[1];
    assert_eq!(
        s2.reply_strategy,
        Some(ReplyStrategy::DiscardReply(ferry_proto::Empty {}))
    );
    assert_eq!(
        s2.egress_config.as_ref().unwrap().retry,
        0,
        "the subscription's delivery replaces the channel's"
    );
}

#[test]
fn channel_and_subscription_not_ready_reasons() {
    let p = run(&CHANNEL.replace("PT1H", "one hour"));
    let c = status(&p, "KafkaChannel", "ch");
    assert_eq!((c.ready, c.reason.as_str()), (Ready::False, "InvalidSpec"));
    assert!(c.message.contains("retentionDuration"), "{}", c.message);
    let p = run(&CHANNEL.replace("numPartitions: 3", "numPartitions: -1"));
    assert!(status(&p, "KafkaChannel", "ch")
        .message
        .contains("numPartitions must be positive"));

    let p = run(&subscription("lost", "  channel: { apiVersion: messaging.knative.dev/v1, kind: Channel, name: nope }\n  subscriber: { uri: http://x }"));
    assert_eq!(
        status(&p, "Subscription", "lost").reason,
        "ChannelDoesNotExist"
    );
    let p = run(&(CHANNEL.replace("PT1H", "bad") + &subscription("s", "  channel: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }\n  subscriber: { uri: http://x }")));
    assert_eq!(status(&p, "Subscription", "s").reason, "ChannelNotReady");
    let p = run(&(CHANNEL.to_owned() + &subscription("s", "  channel: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }\n  subscriber: { uri: ftp://x }")));
    assert_eq!(
        status(&p, "Subscription", "s").reason,
        "SubscriberResolveFailed"
    );
    let ch = status(&p, "KafkaChannel", "ch");
    assert_eq!(
        ch.subscribers[0].ready,
        Ready::False,
        "the channel lists its subscribers with their readiness"
    );

    let templated = r#"
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: { name: generic, namespace: ns }
spec:
  channelTemplate: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, spec: { numPartitions: 2 } }
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: { name: in-memory, namespace: ns }
spec:
  channelTemplate: { apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel }
"#;
    let p = run(templated);
    assert_eq!(status(&p, "Channel", "generic").ready, Ready::True);
    assert!(
        p.statuses.iter().all(|s| s.name != "in-memory"),
        "another implementation's channel is not ours"
    );

    // A trigger can deliver to a channel.
    let p = run(&(BROKER.to_owned() + "---" + CHANNEL + &trigger("to-channel", "  broker: b\n  subscriber: { ref: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch } }")));
    assert_eq!(
        status(&p, "Trigger", "to-channel")
            .subscriber_uri
            .as_deref(),
        Some("http://ch-kn-channel.ns.svc.cluster.local")
    );
}

#[test]
fn beside_knatives_core_a_channels_subscribers_come_from_its_spec() {
    let yaml = r#"
apiVersion: messaging.knative.dev/v1beta1
kind: KafkaChannel
metadata: { name: ch, namespace: ns }
spec:
  subscribers:
    - uid: sub-1
      generation: 4
      subscriberUri: http://one.ns.svc.cluster.local
      replyUri: http://ingress.local/ns/b
      delivery: { retry: 1, backoffDelay: PT0.5S, deadLetterSink: { uri: http://dls } }
    - uid: sub-2
      generation: 1
      subscriberUri: ftp://nope
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: { name: made-by-knative, namespace: ns }
spec:
  channelTemplate: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel }
"#
    .to_owned()
        + &subscription(
            "ignored",
            "  channel: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }\n  subscriber: { uri: http://three }",
        );
    let mut resources = Resources::default();
    resources.add_yaml("test.yaml", &yaml);
    let mut settings = settings();
    settings.channel_subscribers = ferry_controller::plan::ChannelSubscribers::ChannelSpec;
    let p = plan(&resources, &settings, &TopicHealth::default());

    let c = status(&p, "KafkaChannel", "ch");
    assert_eq!(c.ready, Ready::True);
    let subscribers: Vec<_> = c
        .subscribers
        .iter()
        .map(|s| (s.uid.as_str(), s.observed_generation, s.ready))
        .collect();
    assert_eq!(
        subscribers,
        [
            ("sub-1", Some(4), Ready::True),
            ("sub-2", Some(1), Ready::False)
        ]
    );
    assert!(c.subscribers[1]
        .message
        .starts_with("SubscriberResolveFailed"));
    assert!(
        !p.statuses.iter().any(|s| s.kind == "Subscription"),
        "Subscriptions' statuses are Knative's to write"
    );
    assert!(
        !p.statuses.iter().any(|s| s.name == "made-by-knative"),
        "Knative's channel controller makes a KafkaChannel of a Channel"
    );
    let r = &p.resources[0];
    assert_eq!(r.egresses.len(), 1);
    let e = &r.egresses[0];
    assert_eq!(e.consumer_group, "kafka.ns.ch.sub-1");
    assert_eq!(e.destination, "http://one.ns.svc.cluster.local");
    assert_eq!(
        e.reply_strategy,
        Some(ReplyStrategy::ReplyUrl("http://ingress.local/ns/b".into()))
    );
    let config = e.egress_config.as_ref().unwrap();
    assert_eq!((config.retry, config.backoff_delay), (1, 500));
    assert_eq!(config.dead_letter, "http://dls");
    assert_eq!(e.delivery_order(), DeliveryOrder::Ordered);
}
