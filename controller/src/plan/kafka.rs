//! The Kafka world in and out of the mesh: a KafkaSink (an addressable
//! that writes what it gets into a topic of the user's) and a KafkaSource
//! (the records of existing topics, delivered to a sink), each a contract
//! resource as the reference's control plane writes it.

use ferry_common::{
    credentials::{keys, FieldRef, SecretAuth},
    kafka::ClusterRef,
};
use ferry_dispatcher::plain;
use ferry_proto::{
    egress::ReplyStrategy, BackoffPolicy, ContentMode, DeliveryOrder, Egress, EgressConfig, Empty,
    Ingress, InitialOffset, KeyType,
};

use super::{
    addresses::{self, reference_in as reference},
    delivery::delivery_config,
    output::{Plan, TopicSpec},
    settings::{Settings, TopicHealth, MISSING, NO_CREDENTIALS, PENDING},
    sources::sorted,
    status::{CeAttribute, Condition, Ready, Status},
};
use crate::resources::{KafkaSink, KafkaSource, Resources, KEY_TYPE_LABEL, START_ANNOTATION};

pub(super) fn plan_kafka_sinks(
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
    plan: &mut Plan,
) {
    for sink in sorted(&resources.kafka_sinks, |s| &s.metadata) {
        let (status, planned) = plan_sink(sink, resources, settings, health);
        plan.statuses.push(status);
        if let Some((resource, topic, ready)) = planned {
            plan.topics.push(topic);
            if ready {
                plan.resources.push(resource);
            }
        }
    }
}

pub(super) fn plan_kafka_sources(
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
    plan: &mut Plan,
) {
    for source in sorted(&resources.kafka_sources, |s| &s.metadata) {
        // Its group is kept while the source exists, valid or not: an edit
        // that breaks the spec for a while must not lose its positions.
        let cluster = ClusterRef {
            bootstrap: bootstrap(&source.spec.bootstrap_servers, settings),
            auth: net_auth(source).ok().flatten(),
        };
        plan.groups.insert((cluster, consumer_group(source)));
        let (status, planned) = plan_source(source, settings, health);
        plan.statuses.push(status);
        if let Some((resource, topics, ready)) = planned {
            plan.topics.extend(topics);
            if ready {
                plan.resources.push(resource);
            }
        }
    }
}

/// `bootstrapServers` as the contract writes them, or the defaults' when
/// the spec names none (standalone's convenience; Knative requires them).
fn bootstrap(servers: &[String], settings: &Settings) -> String {
    match servers.iter().filter(|s| !s.is_empty()).count() {
        0 => settings.defaults.bootstrap.clone(),
        _ => servers.join(","),
    }
}

/// The status of an object whose topic is not usable (yet), with the
/// reference's reasons: Unknown while Kafka has not answered.
fn topic_not_ready(mut status: Status, condition_type: &'static str, why: String) -> Status {
    let (ready, reason) = if why.contains(PENDING) {
        (Ready::Unknown, "TopicNotReady")
    } else if why.starts_with(NO_CREDENTIALS) {
        (Ready::False, "CredentialsUnavailable")
    } else if why.contains(MISSING) {
        (Ready::False, "TopicsNotPresentOrInvalid")
    } else {
        (Ready::False, "KafkaClusterUnreachable")
    };
    status
        .conditions
        .push(Condition::new(condition_type, ready, reason, why.clone()));
    let mut status = status.not_ready(reason, why);
    status.ready = ready;
    status
}

/// A KafkaSink's `auth.secret.ref.name`: one Secret with the reference's
/// keys, in the sink's namespace.
fn sink_auth(sink: &KafkaSink) -> Result<Option<SecretAuth>, String> {
    let Some(auth) = &sink.spec.auth else {
        return Ok(None);
    };
    match auth.pointer("/secret/ref/name").and_then(|n| n.as_str()) {
        Some(name) if !name.is_empty() => Ok(Some(SecretAuth::Secret {
            namespace: sink.metadata.namespace().to_owned(),
            name: name.to_owned(),
        })),
        _ => Err("spec.auth.secret.ref.name: required when spec.auth is set".into()),
    }
}

/// A KafkaSource's `net`: the protocol its `sasl.enable` and `tls.enable`
/// say, and each value named by a `secretKeyRef` in its namespace, as the
/// reference's control plane writes them into the contract. TLS without a
/// client certificate verifies the server only.
fn net_auth(source: &KafkaSource) -> Result<Option<SecretAuth>, String> {
    let Some(net) = &source.spec.net else {
        return Ok(None);
    };
    let enabled = |part: &str| {
        net.pointer(&format!("/{part}/enable"))
            .and_then(|e| e.as_bool())
            == Some(true)
    };
    let protocol = match (enabled("sasl"), enabled("tls")) {
        (false, false) => return Ok(None),
        (true, false) => "SASL_PLAINTEXT",
        (false, true) => "SSL",
        (true, true) => "SASL_SSL",
    };
    let mut fields = Vec::new();
    for (path, field) in [
        ("tls/cert", keys::USER_CRT),
        ("tls/key", keys::USER_KEY),
        ("tls/caCert", keys::CA_CRT),
        ("sasl/type", keys::SASL_MECHANISM),
        ("sasl/user", keys::USER),
        ("sasl/password", keys::PASSWORD),
    ] {
        let Some(selector) = net.pointer(&format!("/{path}/secretKeyRef")) else {
            continue;
        };
        let text = |k: &str| selector.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (name, key) = (text("name"), text("key"));
        if name.is_empty() || key.is_empty() {
            let at = path.replace('/', ".");
            return Err(format!("spec.net.{at}.secretKeyRef: name and key required"));
        }
        fields.push(FieldRef {
            field,
            namespace: source.metadata.namespace().to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        });
    }
    fields.sort();
    Ok(Some(SecretAuth::Fields {
        protocol: protocol.to_owned(),
        fields,
    }))
}

/// The source's `consumerGroup`; Knative's webhook writes a random one
/// into the spec when absent, so without a webhook one that stays the same
/// for the object.
fn consumer_group(source: &KafkaSource) -> String {
    let metadata = &source.metadata;
    match source
        .spec
        .consumer_group
        .as_deref()
        .filter(|g| !g.is_empty())
    {
        Some(group) => group.to_owned(),
        None => match &metadata.uid {
            Some(uid) => format!("knative-kafka-source-{uid}"),
            None => format!(
                "knative-kafka-source-{}-{}",
                metadata.namespace(),
                metadata.name
            ),
        },
    }
}

/// A KafkaSink: its topic (created when it declares partitions and a
/// replication factor, as the reference does; otherwise it must exist;
/// never deleted), and its ingress at `/<namespace>/<name>`.
fn plan_sink(
    sink: &KafkaSink,
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
) -> (Status, Option<(ferry_proto::Resource, TopicSpec, bool)>) {
    let (ns, name) = (sink.metadata.namespace(), sink.metadata.name.as_str());
    let spec = &sink.spec;
    let status = Status::new("KafkaSink", ns, name);
    if spec.topic.is_empty() {
        return (
            status.not_ready("InvalidSpec", "spec.topic: required"),
            None,
        );
    }
    let content_mode = match spec.content_mode.as_deref() {
        None | Some("") | Some("binary") => ContentMode::Binary,
        Some("structured") => ContentMode::Structured,
        Some(other) => {
            let message = format!("spec.contentMode: '{other}' is neither binary nor structured");
            return (status.not_ready("InvalidSpec", message), None);
        }
    };
    let path = format!("/{ns}/{name}");
    let broker_here = resources
        .brokers
        .iter()
        .filter(|b| super::brokers::is_ours(b, settings))
        .any(|b| b.metadata.namespace() == ns && b.metadata.name == name);
    if broker_here {
        let message = format!("the Broker {ns}/{name} is served at {path} already");
        return (status.not_ready("AddressConflict", message), None);
    }
    let auth = match sink_auth(sink) {
        Ok(auth) => auth,
        Err(message) => return (status.not_ready("InvalidSpec", message), None),
    };
    let bootstrap = bootstrap(&spec.bootstrap_servers, settings);
    let declared = spec.num_partitions.zip(spec.replication_factor);
    let topic = TopicSpec {
        cluster: ClusterRef {
            bootstrap: bootstrap.clone(),
            auth: auth.clone(),
        },
        name: spec.topic.clone(),
        partitions: declared.map_or(0, |(p, _)| p),
        replication: declared.map_or(0, |(_, r)| r),
        config: Default::default(),
        external: declared.is_none(),
        kept: true,
    };
    let resource = ferry_proto::Resource {
        uid: sink.metadata.uid("KafkaSink"),
        topics: vec![spec.topic.clone()],
        bootstrap_servers: bootstrap,
        ingress: Some(Ingress {
            path,
            content_mode: content_mode as i32,
            ..Default::default()
        }),
        reference: Some(reference(
            &sink.metadata,
            "KafkaSink",
            "eventing.knative.dev/v1alpha1",
        )),
        auth: auth.map(|a| a.to_contract()),
        feature_flags: super::event_types::feature_flags(&sink.metadata, settings),
        ..Default::default()
    };
    let mut status = status;
    if let Some(why) = health.failed(&topic) {
        let status = topic_not_ready(status, "TopicReady", why.clone());
        return (status, Some((resource, topic, false)));
    }
    status.conditions = vec![
        Condition::new("TopicReady", Ready::True, "", ""),
        Condition::new("Addressable", Ready::True, "", ""),
    ];
    addresses::set_address(
        &mut status,
        settings,
        addresses::kafka_sink(settings, ns, name),
    );
    (status, Some((resource, topic, true)))
}

/// A KafkaSource: its topics (which must exist), its consumer group, and
/// one egress to its sink, as the reference's consumer reconciler writes
/// it (no reply; ordered, and 10 retries from 300 ms, unless it says).
fn plan_source(
    source: &KafkaSource,
    settings: &Settings,
    health: &TopicHealth,
) -> (
    Status,
    Option<(ferry_proto::Resource, Vec<TopicSpec>, bool)>,
) {
    let (ns, name) = (source.metadata.namespace(), source.metadata.name.as_str());
    let spec = &source.spec;
    let mut status = Status::new("KafkaSource", ns, name);
    status.ce_attributes = spec
        .topics
        .iter()
        .map(|topic| CeAttribute {
            ty: plain::TYPE.to_owned(),
            source: plain::source(ns, name, topic),
        })
        .collect();
    status.consumers = Some(spec.consumers.unwrap_or(1));
    let destination = match addresses::resolve(&spec.sink, ns, settings) {
        Ok(sink) => {
            status.sink_uri = Some(sink.clone());
            status.conditions = vec![Condition::new("SinkProvided", Ready::True, "", "")];
            sink
        }
        Err(message) => {
            status.conditions = vec![Condition::new(
                "SinkProvided",
                Ready::False,
                "NotFound",
                &message,
            )];
            return (
                status.not_ready("NotFound", format!("sink: {message}")),
                None,
            );
        }
    };
    let invalid =
        |status: Status, message: String| (status.not_ready("InvalidSpec", message), None);
    if spec.topics.is_empty() || spec.topics.iter().any(String::is_empty) {
        return invalid(status, "spec.topics: at least one topic, none empty".into());
    }
    let initial_offset = match spec.initial_offset.as_deref() {
        None | Some("") | Some("latest") => InitialOffset::Latest,
        Some("earliest") => InitialOffset::Earliest,
        Some(other) => {
            return invalid(
                status,
                format!("spec.initialOffset: '{other}' is neither earliest nor latest"),
            )
        }
    };
    let order = match spec.ordering.as_deref() {
        None | Some("") | Some("ordered") => DeliveryOrder::Ordered,
        Some("unordered") => DeliveryOrder::Unordered,
        Some(other) => {
            return invalid(
                status,
                format!("spec.ordering: '{other}' is neither ordered nor unordered"),
            )
        }
    };
    let key_type = match source
        .metadata
        .labels
        .get(KEY_TYPE_LABEL)
        .map(String::as_str)
    {
        None | Some("string") => KeyType::String,
        Some("int") => KeyType::Integer,
        Some("float") => KeyType::Double,
        Some("byte-array") => KeyType::ByteArray,
        Some(other) => {
            let message = format!(
                "label {KEY_TYPE_LABEL}: '{other}' is not one of string, int, float, byte-array"
            );
            status.conditions.push(Condition::new(
                "KeyTypeCorrect",
                Ready::False,
                "InvalidKeyType",
                &message,
            ));
            return (status.not_ready("InvalidKeyType", message), None);
        }
    };
    let egress_config = match &spec.delivery {
        Some(_) => match delivery_config(spec.delivery.as_ref(), ns, settings, &mut status) {
            Ok(config) => config,
            Err(message) => return (status.not_ready("DeliveryInvalid", message), None),
        },
        None => Some(EgressConfig {
            retry: 10,
            backoff_policy: BackoffPolicy::Exponential as i32,
            backoff_delay: 300,
            timeout: 600_000,
            ..Default::default()
        }),
    };
    let auth = match net_auth(source) {
        Ok(auth) => auth,
        Err(message) => return invalid(status, message),
    };
    let bootstrap = bootstrap(&spec.bootstrap_servers, settings);
    let cluster = ClusterRef {
        bootstrap: bootstrap.clone(),
        auth: auth.clone(),
    };
    let topics: Vec<TopicSpec> = spec
        .topics
        .iter()
        .map(|topic| TopicSpec {
            cluster: cluster.clone(),
            name: topic.clone(),
            partitions: 0,
            replication: 0,
            config: Default::default(),
            external: true,
            kept: true,
        })
        .collect();
    // Ferry's annotations; `delivery.ferry.dev/start` wins over the spec's
    // `initialOffset`, and `ordered-by-key` over its `ordering`.
    let annotations = match super::delivery::ferry_annotations(&source.metadata, &mut status) {
        Ok(egress) => egress,
        Err((reason, message)) => return (status.not_ready(reason, message), None),
    };
    let initial_offset = match source.metadata.annotations.get(START_ANNOTATION) {
        Some(_) => annotations.initial_offset(),
        None => initial_offset,
    };
    let order = if annotations.ordered_by_key {
        DeliveryOrder::Ordered
    } else {
        order
    };
    let own = reference(&source.metadata, "KafkaSource", "sources.knative.dev/v1");
    let resource = ferry_proto::Resource {
        uid: source.metadata.uid("KafkaSource"),
        topics: spec.topics.clone(),
        bootstrap_servers: bootstrap,
        egresses: vec![Egress {
            consumer_group: consumer_group(source),
            destination,
            reply_strategy: Some(ReplyStrategy::DiscardReply(Empty {})),
            uid: source.metadata.uid("KafkaSource"),
            egress_config,
            delivery_order: order as i32,
            key_type: key_type as i32,
            reference: Some(own.clone()),
            initial_offset: initial_offset as i32,
            ..annotations
        }],
        cloud_event_overrides: spec.ce_overrides.as_ref().map(|o| {
            ferry_proto::CloudEventOverrides {
                extensions: o.extensions.clone().into_iter().collect(),
            }
        }),
        reference: Some(own),
        auth: auth.map(|a| a.to_contract()),
        ..Default::default()
    };
    let failed = topics
        .iter()
        .find_map(|t| health.failed(t).map(|why| (&t.name, why)));
    if let Some((topic, why)) = failed {
        let status = topic_not_ready(
            status,
            "ConnectionEstablished",
            format!("topic {topic}: {why}"),
        );
        return (status, Some((resource, topics, false)));
    }
    status
        .conditions
        .push(Condition::new("ConnectionEstablished", Ready::True, "", ""));
    (status, Some((resource, topics, true)))
}
