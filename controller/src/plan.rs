//! The reconciler's decisions: resources (desired) and what Kafka said
//! (observed) in; topics, consumer groups, the contract's resources and a
//! status per object out. Pure: the folder source and the Kubernetes
//! source share every decision, and tests need no Kafka.

use std::collections::{BTreeMap, BTreeSet};

use ferry_proto::{
    dialected_filter::Filter as Dialect, egress::ReplyStrategy, BackoffPolicy, DeliveryOrder,
    DialectedFilter, Egress, EgressConfig, Empty, Ingress, Reference,
};
use serde::Serialize;

use crate::{
    duration,
    resources::{
        Broker, DeliverySpec, Destination, Resources, SubscriptionsApiFilter, Trigger,
        BROKER_CLASS_ANNOTATION, DELIVERY_ORDER_ANNOTATION, EXTERNAL_TOPIC_ANNOTATION,
        KAFKA_BROKER_CLASS,
    },
};

/// Kafka settings for brokers whose config names none, with the reference
/// implementation's keys when read from a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaDefaults {
    pub bootstrap: String,
    pub partitions: i32,
    pub replication: i32,
    /// `default.topic.config.<key>`: topic configs such as retention.ms.
    pub topic_config: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The ingress's base URL; a broker's address is `<base>/<ns>/<name>`.
    pub ingress_url: String,
    pub defaults: KafkaDefaults,
    /// Whether brokers without a class annotation are Ferry's (true for a
    /// folder of resources; false next to other broker classes).
    pub claim_unannotated: bool,
    /// How channels are addressed: by the reference's Host header (in a
    /// cluster) or by a path under the ingress URL (standalone).
    pub channel_addresses: ChannelAddresses,
    /// Where a channel's subscribers come from.
    pub channel_subscribers: ChannelSubscribers,
}

/// Who turns Subscriptions into a channel's subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelSubscribers {
    /// Ferry reads Subscriptions itself and writes their statuses
    /// (standalone, or a cluster without Knative's core).
    #[default]
    Subscriptions,
    /// Knative's subscription controller writes them into each channel's
    /// `spec.subscribers` (the Subscribable duck type) and owns their
    /// statuses; Ferry reports `status.subscribers` on the channel, and
    /// leaves `messaging.knative.dev/v1` Channels to Knative's channel
    /// controller, which makes KafkaChannels of them.
    ChannelSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelAddresses {
    /// `http://<name>-kn-channel.<namespace>.svc.cluster.local`
    Host,
    /// `<ingress URL>/channels/<namespace>/<name>`
    Path,
}

/// What the last attempt to make topics real reported.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Topic name → why it is not usable.
    pub failed_topics: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicSpec {
    pub bootstrap: String,
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub config: BTreeMap<String, String>,
    /// Named by an annotation: never created or deleted by Ferry.
    pub external: bool,
}

/// Knative's Ready condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ready {
    True,
    False,
    Unknown,
}

/// A resource's status in Knative's shape, flattened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub ready: Ready,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// A channel's subscribers and their readiness.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriberStatus {
    pub name: String,
    pub uid: String,
    /// The generation of the subscriber entry (Subscribable duck type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub ready: Ready,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Status {
    pub(crate) fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Status {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ready: Ready::True,
            reason: String::new(),
            message: String::new(),
            address: None,
            subscriber_uri: None,
            dead_letter_sink_uri: None,
            subscribers: Vec::new(),
        }
    }

    pub(crate) fn not_ready(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.ready = Ready::False;
        self.reason = reason.to_owned();
        self.message = message.into();
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every topic of Ferry's brokers, ready or not.
    pub topics: Vec<TopicSpec>,
    /// The contract's resources: ready brokers with their ready triggers.
    pub resources: Vec<ferry_proto::Resource>,
    /// (bootstrap, group) of every existing trigger of Ferry's brokers.
    pub groups: BTreeSet<(String, String)>,
    pub statuses: Vec<Status>,
}

pub fn topic_name(namespace: &str, name: &str) -> String {
    format!("knative-broker-{namespace}-{name}")
}

pub fn consumer_group(namespace: &str, name: &str) -> String {
    format!("knative-trigger-{namespace}-{name}")
}

/// A broker as the plan sees it.
struct PlannedBroker {
    resource: ferry_proto::Resource,
    ready: bool,
    bootstrap: String,
}

pub fn plan(resources: &Resources, settings: &Settings, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    for (source, error) in &resources.errors {
        plan.statuses
            .push(Status::new("File", "", source).not_ready("Invalid", error.clone()));
    }

    let mut brokers: BTreeMap<(String, String), PlannedBroker> = BTreeMap::new();
    for broker in resources.brokers.iter().filter(|b| is_ours(b, settings)) {
        let (status, planned, topic) = plan_broker(broker, resources, settings, observed);
        plan.statuses.push(status);
        if let Some(topic) = topic {
            plan.topics.push(topic);
        }
        if let Some(planned) = planned {
            brokers.insert(
                (
                    broker.metadata.namespace().to_owned(),
                    broker.metadata.name.clone(),
                ),
                planned,
            );
        }
    }

    let mut triggers: Vec<&Trigger> = resources.triggers.iter().collect();
    triggers.sort_by_key(|t| (t.metadata.namespace().to_owned(), t.metadata.name.clone()));
    for trigger in triggers {
        let ns = trigger.metadata.namespace();
        let status = Status::new("Trigger", ns, &trigger.metadata.name);
        let broker_key = (ns.to_owned(), trigger.spec.broker.clone());
        let other_class = resources.brokers.iter().any(|b| {
            b.metadata.namespace() == ns
                && b.metadata.name == trigger.spec.broker
                && !is_ours(b, settings)
        });
        if other_class {
            continue; // another implementation's trigger
        }
        let Some(broker) = brokers.get_mut(&broker_key) else {
            plan.statuses.push(status.not_ready(
                "BrokerDoesNotExist",
                format!("broker '{}' does not exist", trigger.spec.broker),
            ));
            continue;
        };
        plan.groups.insert((
            broker.bootstrap.clone(),
            consumer_group(ns, &trigger.metadata.name),
        ));
        if !broker.ready {
            plan.statuses.push(status.not_ready(
                "BrokerNotReady",
                format!("broker '{}' is not ready", trigger.spec.broker),
            ));
            continue;
        }
        let mut status = status;
        match plan_trigger(trigger, settings, &mut status) {
            Ok(egress) => {
                broker.resource.egresses.push(egress);
                plan.statuses.push(status);
            }
            Err((reason, message)) => plan.statuses.push(status.not_ready(reason, message)),
        }
    }
    plan.resources = brokers
        .into_values()
        .filter(|b| b.ready)
        .map(|b| b.resource)
        .collect();
    crate::channels::plan_channels(resources, settings, observed, &mut plan);
    plan.topics.sort();
    plan
}

fn is_ours(broker: &Broker, settings: &Settings) -> bool {
    match broker.metadata.annotations.get(BROKER_CLASS_ANNOTATION) {
        Some(class) => class == KAFKA_BROKER_CLASS,
        None => settings.claim_unannotated,
    }
}

fn plan_broker(
    broker: &Broker,
    resources: &Resources,
    settings: &Settings,
    observed: &Observed,
) -> (Status, Option<PlannedBroker>, Option<TopicSpec>) {
    let (ns, name) = (broker.metadata.namespace(), broker.metadata.name.as_str());
    let status = Status::new("Broker", ns, name);
    let kafka = match kafka_config(broker, resources, &settings.defaults) {
        Ok(k) => k,
        Err(message) => return (status.not_ready("InvalidConfig", message), None, None),
    };
    let external = broker
        .metadata
        .annotations
        .get(EXTERNAL_TOPIC_ANNOTATION)
        .filter(|t| !t.is_empty());
    let topic = TopicSpec {
        bootstrap: kafka.bootstrap.clone(),
        name: external.cloned().unwrap_or_else(|| topic_name(ns, name)),
        partitions: kafka.partitions,
        replication: kafka.replication,
        config: kafka.topic_config.clone(),
        external: external.is_some(),
    };
    let mut resource = ferry_proto::Resource {
        uid: broker.metadata.uid("Broker"),
        topics: vec![topic.name.clone()],
        bootstrap_servers: kafka.bootstrap.clone(),
        ingress: Some(Ingress {
            path: format!("/{ns}/{name}"),
            ..Default::default()
        }),
        reference: Some(reference(&broker.metadata, "Broker")),
        auth: Some(ferry_proto::resource::Auth::AbsentAuth(Empty {})),
        ..Default::default()
    };
    let planned = |resource, ready| {
        Some(PlannedBroker {
            resource,
            ready,
            bootstrap: kafka.bootstrap.clone(),
        })
    };
    let mut status = status;
    match broker
        .spec
        .delivery
        .as_ref()
        .map(|d| egress_config(d, ns, settings))
        .transpose()
    {
        Ok(config) => {
            status.dead_letter_sink_uri = config
                .as_ref()
                .map(|c| c.dead_letter.clone())
                .filter(|d| !d.is_empty());
            resource.egress_config = config;
        }
        Err(message) => {
            return (
                status.not_ready("DeliveryInvalid", message),
                planned(resource, false),
                Some(topic),
            )
        }
    }
    if let Some(why) = observed.failed_topics.get(&topic.name) {
        let reason = if topic.external {
            "ExternalTopicNotFound"
        } else {
            "TopicNotReady"
        };
        return (
            status.not_ready(reason, why.clone()),
            planned(resource, false),
            Some(topic),
        );
    }
    status.address = Some(format!(
        "{}/{ns}/{name}",
        settings.ingress_url.trim_end_matches('/')
    ));
    (status, planned(resource, true), Some(topic))
}

/// The broker's Kafka settings: its `spec.config` ConfigMap over the defaults.
fn kafka_config(
    broker: &Broker,
    resources: &Resources,
    defaults: &KafkaDefaults,
) -> Result<KafkaDefaults, String> {
    let mut kafka = defaults.clone();
    let Some(config) = &broker.spec.config else {
        return Ok(kafka);
    };
    if config.kind != "ConfigMap" {
        return Err(format!(
            "spec.config must name a ConfigMap, not a {}",
            config.kind
        ));
    }
    let ns = config
        .namespace
        .as_deref()
        .unwrap_or(broker.metadata.namespace());
    let map = resources
        .config_maps
        .iter()
        .find(|c| c.metadata.namespace() == ns && c.metadata.name == config.name)
        .ok_or_else(|| format!("ConfigMap {ns}/{} does not exist", config.name))?;
    for (key, value) in &map.data {
        let number = |what: &str| {
            value
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{what} '{value}' is not a positive number"))
        };
        match key.as_str() {
            "default.topic.partitions" => kafka.partitions = number(key)?,
            "default.topic.replication.factor" => kafka.replication = number(key)?,
            "bootstrap.servers" => kafka.bootstrap = value.trim().to_owned(),
            k => {
                if let Some(topic_key) = k.strip_prefix("default.topic.config.") {
                    kafka
                        .topic_config
                        .insert(topic_key.to_owned(), value.clone());
                }
            }
        }
    }
    if kafka.bootstrap.is_empty() {
        return Err("no bootstrap.servers in the broker's config or the defaults".into());
    }
    Ok(kafka)
}

/// Why a trigger is not ready: Knative's reason, and a message.
pub(crate) type NotReady = (&'static str, String);

fn plan_trigger(
    trigger: &Trigger,
    settings: &Settings,
    status: &mut Status,
) -> Result<Egress, NotReady> {
    let ns = trigger.metadata.namespace();
    let destination = resolve(&trigger.spec.subscriber, ns, settings)
        .map_err(|m| ("SubscriberResolveFailed", m))?;
    status.subscriber_uri = Some(destination.clone());
    let dialected = trigger
        .spec
        .filters
        .iter()
        .map(dialected_filter)
        .collect::<Result<Vec<_>, _>>()?;
    let legacy = trigger.spec.filter.as_ref().map(|f| ferry_proto::Filter {
        attributes: f
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    if let Some(bad) = trigger
        .spec
        .filter
        .iter()
        .flat_map(|f| f.attributes.keys())
        .find(|k| !ferry_event::is_valid_name(k))
    {
        return Err((
            "FilterInvalid",
            format!("'{bad}' is not a CloudEvents attribute name"),
        ));
    }
    let (egress_config, order) = egress_delivery(
        trigger.spec.delivery.as_ref(),
        &trigger.metadata,
        DeliveryOrder::Unordered,
        settings,
        status,
    )?;
    let egress = Egress {
        consumer_group: consumer_group(ns, &trigger.metadata.name),
        destination,
        reply_strategy: Some(ReplyStrategy::ReplyToOriginalTopic(Empty {})),
        filter: legacy,
        uid: trigger.metadata.uid("Trigger"),
        egress_config,
        delivery_order: order as i32,
        reference: Some(reference(&trigger.metadata, "Trigger")),
        dialected_filter: dialected,
        ..Default::default()
    };
    Ok(egress)
}

/// An egress's own delivery settings (which replace its resource's) and
/// its delivery order (annotation `kafka.eventing.knative.dev/delivery.order`,
/// else `default`); the status shows the dead-letter sink.
pub(crate) fn egress_delivery(
    delivery: Option<&DeliverySpec>,
    metadata: &crate::resources::Metadata,
    default: DeliveryOrder,
    settings: &Settings,
    status: &mut Status,
) -> Result<(Option<EgressConfig>, DeliveryOrder), NotReady> {
    let config = delivery
        .map(|d| egress_config(d, metadata.namespace(), settings))
        .transpose()
        .map_err(|m| ("DeliveryInvalid", m))?;
    if let Some(c) = &config {
        status.dead_letter_sink_uri = Some(c.dead_letter.clone()).filter(|d| !d.is_empty());
    }
    let order = match metadata
        .annotations
        .get(DELIVERY_ORDER_ANNOTATION)
        .map(String::as_str)
    {
        None => default,
        Some("unordered") => DeliveryOrder::Unordered,
        Some("ordered") => DeliveryOrder::Ordered,
        Some(other) => {
            return Err((
                "DeliveryOrderInvalid",
                format!("delivery order '{other}' is neither ordered nor unordered"),
            ))
        }
    };
    Ok((config, order))
}

pub(crate) fn reference(metadata: &crate::resources::Metadata, kind: &str) -> Reference {
    Reference {
        uuid: metadata.uid(kind),
        namespace: metadata.namespace().to_owned(),
        name: metadata.name.clone(),
        kind: kind.to_owned(),
        group_version: "eventing.knative.dev/v1".to_owned(),
        ..Default::default()
    }
}

/// A Destination's URL: a Service (Kubernetes or Knative) by its cluster
/// DNS name, a Broker by its address, or an absolute http URI.
pub fn resolve(
    destination: &Destination,
    namespace: &str,
    settings: &Settings,
) -> Result<String, String> {
    let uri = destination.uri.as_deref().filter(|u| !u.is_empty());
    let Some(reference) = &destination.reference else {
        let uri = uri.ok_or("neither ref nor uri is set")?;
        return match uri.split_once("://") {
            Some(("http", rest)) if !rest.is_empty() => Ok(uri.to_owned()),
            Some((scheme, _)) => Err(format!(
                "uri '{uri}': scheme '{scheme}' is not supported (use http)"
            )),
            None => Err(format!("uri '{uri}' is not absolute")),
        };
    };
    let ns = reference.namespace.as_deref().unwrap_or(namespace);
    let base = match (reference.api_version.as_str(), reference.kind.as_str()) {
        ("v1", "Service") | ("serving.knative.dev/v1", "Service") => {
            format!("http://{}.{ns}.svc.cluster.local", reference.name)
        }
        ("eventing.knative.dev/v1", "Broker") => {
            format!(
                "{}/{ns}/{}",
                settings.ingress_url.trim_end_matches('/'),
                reference.name
            )
        }
        ("messaging.knative.dev/v1beta1", "KafkaChannel")
        | ("messaging.knative.dev/v1", "Channel") => {
            crate::channels::address(settings, ns, &reference.name)
        }
        (api, kind) => {
            return Err(format!(
                "cannot resolve a {kind} of {api}: Ferry resolves Services, Brokers and Channels"
            ))
        }
    };
    Ok(match uri {
        Some(path) if path.starts_with('/') => format!("{base}{path}"),
        Some(path) => format!("{base}/{path}"),
        None => base,
    })
}

pub(crate) fn egress_config(
    delivery: &DeliverySpec,
    namespace: &str,
    settings: &Settings,
) -> Result<EgressConfig, String> {
    let millis = |field: &str, value: &Option<String>| -> Result<u64, String> {
        value
            .as_deref()
            .map(|v| {
                duration::parse(v)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| format!("{field}: {e}"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let retry = match delivery.retry {
        None => 0,
        Some(r) if r < 0 => return Err(format!("retry must not be negative (got {r})")),
        Some(r) => u32::try_from(r).map_err(|_| format!("retry {r} is too large"))?,
    };
    let backoff_policy = match delivery
        .backoff_policy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("exponential") => BackoffPolicy::Exponential,
        Some("linear") => BackoffPolicy::Linear,
        Some(other) => {
            return Err(format!(
                "backoffPolicy '{other}' is neither linear nor exponential"
            ))
        }
    };
    let backoff_delay = match &delivery.backoff_delay {
        // Knative's default backoffDelay when retries are asked for without
        // one; a user's explicit `PT0S` retries at once, as in the reference.
        None if retry > 0 => 200,
        delay => millis("backoffDelay", delay)?,
    };
    let dead_letter = match &delivery.dead_letter_sink {
        Some(sink) => {
            resolve(sink, namespace, settings).map_err(|e| format!("deadLetterSink: {e}"))?
        }
        None => String::new(),
    };
    Ok(EgressConfig {
        dead_letter,
        retry,
        backoff_policy: backoff_policy as i32,
        backoff_delay,
        timeout: millis("timeout", &delivery.timeout)?,
        ..Default::default()
    })
}

/// One `spec.filters` entry: exactly one dialect, with valid attribute names.
fn dialected_filter(
    filter: &SubscriptionsApiFilter,
) -> Result<DialectedFilter, (&'static str, String)> {
    let invalid = |m: String| ("FilterInvalid", m);
    let attributes = |dialect: &str, map: &BTreeMap<String, String>| {
        if map.len() != 1 {
            return Err(invalid(format!(
                "'{dialect}' must have exactly one attribute, has {}",
                map.len()
            )));
        }
        match map.keys().find(|k| !ferry_event::is_valid_name(k)) {
            Some(bad) => Err(invalid(format!(
                "'{bad}' is not a CloudEvents attribute name"
            ))),
            None => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        }
    };
    let set = [
        !filter.exact.is_empty(),
        !filter.prefix.is_empty(),
        !filter.suffix.is_empty(),
        !filter.all.is_empty(),
        !filter.any.is_empty(),
        filter.not.is_some(),
        filter.cesql.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(invalid(format!("a filter must set exactly one of exact, prefix, suffix, all, any, not, cesql (sets {set})")));
    }
    let dialect = if !filter.exact.is_empty() {
        Dialect::Exact(ferry_proto::Exact {
            attributes: attributes("exact", &filter.exact)?,
        })
    } else if !filter.prefix.is_empty() {
        Dialect::Prefix(ferry_proto::Prefix {
            attributes: attributes("prefix", &filter.prefix)?,
        })
    } else if !filter.suffix.is_empty() {
        Dialect::Suffix(ferry_proto::Suffix {
            attributes: attributes("suffix", &filter.suffix)?,
        })
    } else if !filter.all.is_empty() {
        Dialect::All(ferry_proto::All {
            filters: filter
                .all
                .iter()
                .map(dialected_filter)
                .collect::<Result<_, _>>()?,
        })
    } else if !filter.any.is_empty() {
        Dialect::Any(ferry_proto::Any {
            filters: filter
                .any
                .iter()
                .map(dialected_filter)
                .collect::<Result<_, _>>()?,
        })
    } else if let Some(not) = &filter.not {
        Dialect::Not(Box::new(ferry_proto::Not {
            filter: Some(Box::new(dialected_filter(not)?)),
        }))
    } else {
        let expression = filter.cesql.clone().unwrap_or_default();
        // Checked here, so a bad expression is the trigger's status, not a
        // surprise in the data plane.
        if let Err(error) = ferry_cesql::Expression::parse(&expression) {
            return Err(("FilterInvalid", format!("cesql '{expression}': {error}")));
        }
        Dialect::Cesql(ferry_proto::Cesql { expression })
    };
    Ok(DialectedFilter {
        filter: Some(dialect),
    })
}
