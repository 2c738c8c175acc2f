//! KafkaSinks and KafkaSources in the plan: the contract resources the
//! reference's control plane writes for them, their topics, groups and
//! statuses, without Kafka.

use ferry_common::{credentials::SecretAuth, kafka::ClusterRef};

mod support;

use support::settings;

use ferry_controller::{
    plan::{plan, Plan, Ready, Status, TopicHealth},
    resources::Resources,
};
use ferry_proto::{
    egress::ReplyStrategy, resource::Auth, ContentMode, DeliveryOrder, InitialOffset, KeyType,
    Protocol, SecretField,
};

/// A topic of the default cluster, as the plan names it.
fn plain(topic: &str) -> (ClusterRef, String) {
    (ClusterRef::plain("k:9092"), topic.into())
}

fn run(yaml: &str, health: &TopicHealth) -> Plan {
    let mut resources = Resources::default();
    resources.add_yaml("kafka.yaml", yaml);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    plan(&resources, &settings(), health)
}

fn status<'a>(plan: &'a Plan, kind: &str, name: &str) -> &'a Status {
    plan.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:?}", plan.statuses))
}

const SINK: &str = "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: archive, namespace: ns}\n\
     spec: {topic: orders, numPartitions: 3, replicationFactor: 1, contentMode: structured, bootstrapServers: [a:9092, b:9092]}\n";

#[test]
fn a_kafka_sink_is_an_ingress_on_its_own_topic_and_a_destination() {
    let yaml = format!(
        "{SINK}---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p, namespace: ns}}\n\
         spec: {{schedule: '* * * * *', sink: {{ref: {{apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: archive}}}}}}\n"
    );
    let plan = run(&yaml, &TopicHealth::default());
    let sink = status(&plan, "KafkaSink", "archive");
    assert_eq!(sink.ready, Ready::True, "{sink:?}");
    assert_eq!(sink.address.as_deref(), Some("http://ingress/ns/archive"));
    assert_eq!(
        status(&plan, "PingSource", "p").sink_uri.as_deref(),
        Some("http://ingress/ns/archive")
    );
    let topic = &plan.topics[0];
    assert_eq!(
        (
            topic.name.as_str(),
            topic.partitions,
            topic.cluster.bootstrap.as_str()
        ),
        ("orders", 3, "a:9092,b:9092")
    );
    assert!(topic.kept && !topic.external, "created, never deleted");
    let resource = &plan.resources[0];
    assert_eq!(resource.topics, ["orders"]);
    let ingress = resource.ingress.as_ref().unwrap();
    assert_eq!(ingress.path, "/ns/archive");
    assert_eq!(ingress.content_mode(), ContentMode::Structured);
    let reference = resource.reference.as_ref().unwrap();
    assert_eq!(
        (reference.kind.as_str(), reference.group_version.as_str()),
        ("KafkaSink", "eventing.knative.dev/v1alpha1")
    );
    assert!(resource.egresses.is_empty());
}

#[test]
fn a_kafka_source_is_one_egress_on_its_topics_with_the_references_defaults() {
    let yaml = "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata:\n  name: src\n  namespace: ns\n  \
         labels: {kafkasources.sources.knative.dev/key-type: byte-array}\nspec:\n  \
         bootstrapServers: [a:9092]\n  topics: [t1, t2]\n  sink: {uri: 'http://sink'}\n  \
         ceOverrides: {extensions: {team: ferry}}\n  \
         net: {sasl: {enable: true, user: {secretKeyRef: {name: sasl, key: u}}, password: {secretKeyRef: {name: sasl, key: p}}}, \
         tls: {caCert: {secretKeyRef: {name: ca, key: ca.crt}}}}\n";
    let plan = run(yaml, &TopicHealth::default());
    let source = status(&plan, "KafkaSource", "src");
    assert_eq!(source.ready, Ready::True, "{source:?}");
    assert_eq!(source.sink_uri.as_deref(), Some("http://sink"));
    assert_eq!(source.consumers, Some(1));
    assert_eq!(source.ce_attributes.len(), 2);
    let topics: Vec<_> = plan.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(topics, ["t1", "t2"]);
    assert!(plan.topics.iter().all(|t| t.external), "they must exist");
    // The net spec: SASL enabled and TLS not, so SASL_PLAINTEXT; every
    // named value is carried, grouped by Secret, as the reference writes it.
    let resource = &plan.resources[0];
    let Some(Auth::MultiAuthSecret(multi)) = &resource.auth else {
        panic!("{:?}", resource.auth)
    };
    assert_eq!(multi.protocol(), Protocol::SaslPlaintext);
    let named: Vec<_> = multi
        .references
        .iter()
        .flat_map(|r| {
            let secret = r.reference.as_ref().unwrap();
            r.key_field_references.iter().map(move |k| {
                (
                    secret.namespace.as_str(),
                    secret.name.as_str(),
                    k.secret_key.as_str(),
                    k.field(),
                )
            })
        })
        .collect();
    assert_eq!(
        named,
        [
            ("ns", "ca", "ca.crt", SecretField::CaCrt),
            ("ns", "sasl", "p", SecretField::Password),
            ("ns", "sasl", "u", SecretField::User),
        ]
    );
    let cluster = &plan.topics[0].cluster;
    assert_eq!(
        cluster.auth,
        SecretAuth::from_contract(resource.auth.as_ref()),
        "topics are checked with the source's credentials"
    );
    assert!(plan
        .groups
        .contains(&(cluster.clone(), "knative-kafka-source-ns-src".into())));
    assert!(resource.ingress.is_none());
    assert_eq!(resource.topics, ["t1", "t2"]);
    assert_eq!(
        resource.cloud_event_overrides.as_ref().unwrap().extensions["team"],
        "ferry"
    );
    let egress = &resource.egresses[0];
    assert_eq!(egress.consumer_group, "knative-kafka-source-ns-src");
    assert_eq!(egress.destination, "http://sink");
    assert_eq!(egress.delivery_order(), DeliveryOrder::Ordered);
    assert_eq!(egress.key_type(), KeyType::ByteArray);
    assert_eq!(egress.initial_offset(), InitialOffset::Latest);
    assert!(matches!(
        egress.reply_strategy,
        Some(ReplyStrategy::DiscardReply(_))
    ));
    let config = egress.egress_config.as_ref().unwrap();
    assert_eq!(
        (config.retry, config.backoff_delay, config.timeout),
        (10, 300, 600_000)
    );
}

#[test]
fn every_not_ready_reason() {
    let source = |name: &str, spec: &str| {
        format!("apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n---\n")
    };
    let sink_to = "sink: {uri: 'http://s'}";
    let yaml = [
        source("no-topics", &format!("{{topics: [], {sink_to}}}")),
        source("offset", &format!("{{topics: [t], initialOffset: middle, {sink_to}}}")),
        source("ordering", &format!("{{topics: [t], ordering: random, {sink_to}}}")),
        source("no-sink", "{topics: [t], sink: {ref: {apiVersion: v1, kind: Pod, name: p}}}"),
        source("delivery", &format!("{{topics: [t], delivery: {{retry: -1}}, {sink_to}}}")),
        source("missing", &format!("{{topics: [gone], {sink_to}}}")),
        "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata:\n  name: key\n  namespace: ns\n  \
         labels: {kafkasources.sources.knative.dev/key-type: uuid}\nspec: {topics: [t], sink: {uri: 'http://s'}}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: no-topic, namespace: ns}\nspec: {}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: mode, namespace: ns}\nspec: {topic: t, contentMode: avro}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: clash, namespace: ns}\n---\n\
         apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: clash, namespace: ns}\nspec: {topic: t}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: pending, namespace: ns}\nspec: {topic: waiting}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: no-secret-name, namespace: ns}\nspec: {topic: t, auth: {secret: {}}}\n---\n"
            .to_owned(),
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: bad-secret, namespace: ns}\nspec: {topic: locked, auth: {secret: {ref: {name: kafka}}}}\n---\n"
            .to_owned(),
        source("half-ref", &format!("{{topics: [t], net: {{tls: {{enable: true, caCert: {{secretKeyRef: {{name: ca}}}}}}}}, {sink_to}}}")),
    ]
    .concat();
    let mut health = TopicHealth::default();
    health
        .failed_topics
        .insert(plain("gone"), "external topic gone does not exist".into());
    let with_secret = ClusterRef {
        auth: Some(SecretAuth::Secret {
            namespace: "ns".into(),
            name: "kafka".into(),
        }),
        ..ClusterRef::plain("k:9092")
    };
    health.failed_topics.insert(
        (with_secret, "locked".into()),
        format!(
            "{} Secret ns/kafka: protocol required (key: protocol)",
            ferry_controller::plan::NO_CREDENTIALS
        ),
    );
    health.failed_topics.insert(
        plain("waiting"),
        format!(
            "{} k:9092 to say whether it exists",
            ferry_controller::plan::PENDING
        ),
    );
    let plan = run(&yaml, &health);
    for (kind, name, ready, reason, message) in [
        (
            "KafkaSource",
            "no-topics",
            Ready::False,
            "InvalidSpec",
            "spec.topics",
        ),
        (
            "KafkaSource",
            "offset",
            Ready::False,
            "InvalidSpec",
            "spec.initialOffset",
        ),
        (
            "KafkaSource",
            "ordering",
            Ready::False,
            "InvalidSpec",
            "spec.ordering",
        ),
        ("KafkaSource", "no-sink", Ready::False, "NotFound", "Pod"),
        (
            "KafkaSource",
            "delivery",
            Ready::False,
            "DeliveryInvalid",
            "retry",
        ),
        (
            "KafkaSource",
            "missing",
            Ready::False,
            "TopicsNotPresentOrInvalid",
            "topic gone",
        ),
        ("KafkaSource", "key", Ready::False, "InvalidKeyType", "uuid"),
        (
            "KafkaSink",
            "no-topic",
            Ready::False,
            "InvalidSpec",
            "spec.topic",
        ),
        (
            "KafkaSink",
            "mode",
            Ready::False,
            "InvalidSpec",
            "spec.contentMode",
        ),
        (
            "KafkaSink",
            "clash",
            Ready::False,
            "AddressConflict",
            "Broker ns/clash",
        ),
        (
            "KafkaSink",
            "pending",
            Ready::Unknown,
            "TopicNotReady",
            "waiting for Kafka",
        ),
        (
            "KafkaSink",
            "no-secret-name",
            Ready::False,
            "InvalidSpec",
            "spec.auth.secret.ref.name",
        ),
        (
            "KafkaSink",
            "bad-secret",
            Ready::False,
            "CredentialsUnavailable",
            "Secret ns/kafka: protocol required",
        ),
        (
            "KafkaSource",
            "half-ref",
            Ready::False,
            "InvalidSpec",
            "spec.net.tls.caCert.secretKeyRef: name and key required",
        ),
    ] {
        let s = status(&plan, kind, name);
        assert_eq!((s.ready, s.reason.as_str()), (ready, reason), "{s:?}");
        assert!(s.message.contains(message), "{s:?}");
    }
    // Only the broker is in the contract.
    assert_eq!(plan.resources.len(), 1, "{:?}", plan.resources);
}

#[test]
fn every_example_is_ready() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let resources = ferry_controller::folder::load(&dir);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    assert_eq!(
        (resources.kafka_sinks.len(), resources.kafka_sources.len()),
        (1, 1)
    );
    let plan = plan(&resources, &settings(), &TopicHealth::default());
    let not_ready: Vec<_> = plan
        .statuses
        .iter()
        .filter(|s| s.ready != Ready::True)
        .collect();
    assert!(not_ready.is_empty(), "{not_ready:?}");
    // The archive trigger delivers to the KafkaSink's address.
    let sink = status(&plan, "KafkaSink", "greetings-archive");
    assert_eq!(
        status(&plan, "Trigger", "archive").subscriber_uri,
        sink.address
    );
}

#[test]
fn a_broken_kafka_source_keeps_its_group() {
    // A typo in an edit must not get the source's positions deleted.
    let yaml = "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {name: src, namespace: ns}\n\
         spec: {topics: [t], consumerGroup: mine, initialOffset: middle, sink: {uri: 'http://s'}}\n";
    let plan = run(yaml, &TopicHealth::default());
    assert_eq!(status(&plan, "KafkaSource", "src").reason, "InvalidSpec");
    assert!(plan.resources.is_empty());
    assert!(
        plan.groups
            .contains(&(ClusterRef::plain("k:9092"), "mine".into())),
        "{:?}",
        plan.groups
    );
}

#[test]
fn a_kafka_sink_s_secret_goes_into_the_contract_and_its_topic_s_cluster() {
    let yaml = "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: s, namespace: ns}\n\
         spec: {topic: t, numPartitions: 2, replicationFactor: 1, auth: {secret: {ref: {name: kafka-tls}}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {auth.secret.ref.name: broker-sasl}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n\
         spec: {config: {apiVersion: v1, kind: ConfigMap, name: cfg}}\n";
    let plan = run(yaml, &TopicHealth::default());
    let secret = |name: &str| SecretAuth::Secret {
        namespace: "ns".into(),
        name: name.into(),
    };
    for (topic, name) in [("t", "kafka-tls"), ("knative-broker-ns-b", "broker-sasl")] {
        let resource = plan
            .resources
            .iter()
            .find(|r| r.topics == [topic])
            .unwrap_or_else(|| panic!("{topic}: {:?}", plan.resources));
        let Some(Auth::AuthSecret(r)) = &resource.auth else {
            panic!("{:?}", resource.auth)
        };
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("ns", name));
        let spec = plan.topics.iter().find(|t| t.name == topic).unwrap();
        assert_eq!(spec.cluster.auth, Some(secret(name)));
    }
    assert_eq!(status(&plan, "KafkaSink", "s").message, "");
}
