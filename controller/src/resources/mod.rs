//! The Knative resources Ferry reconciles, in the form a user writes them
//! (`kubectl apply`), parsed from YAML or JSON.

mod event_policy;
mod event_type;
mod flow;
mod kafka;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use event_policy::{
    EventPolicy, EventPolicySpec, PolicyRef, PolicySelector, PolicySender, PolicyTarget,
};
pub use event_type::{parse as parse_event_type, EventAttribute, EventType};
pub use flow::{Branch, Parallel, Sequence, Step};
pub use kafka::{KafkaSink, KafkaSinkSpec, KafkaSource, KafkaSourceSpec, KEY_TYPE_LABEL};

pub const BROKER_CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
pub const KAFKA_BROKER_CLASS: &str = "Kafka";
pub const EXTERNAL_TOPIC_ANNOTATION: &str = "kafka.eventing.knative.dev/external.topic";
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";
/// Ferry's: the longest wait between two attempts (ISO-8601 duration).
pub const BACKOFF_MAX_ANNOTATION: &str = "delivery.ferry.dev/backoff-max";
/// Ferry's: a trigger's most deliveries at once (a positive integer).
pub const MAX_IN_FLIGHT_ANNOTATION: &str = "delivery.ferry.dev/max-in-flight";
/// Ferry's: where a new consumer group starts (`earliest`, `latest` or an
/// RFC 3339 time).
pub const START_ANNOTATION: &str = "delivery.ferry.dev/start";
/// Ferry's: `"true"` stops an egress's deliveries, keeping its position.
pub const PAUSED_ANNOTATION: &str = "delivery.ferry.dev/paused";
/// Ferry's: move an egress's positions once, to `earliest`, `latest` or an
/// RFC 3339 time, with an optional `#tag` to ask again.
pub const REPLAY_ANNOTATION: &str = "delivery.ferry.dev/replay";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the object was made (RFC 3339), where it says.
    #[serde(default, rename = "creationTimestamp")]
    pub created: Option<String>,
}

impl Metadata {
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }

    /// The object's uid; resources from files have none, so one is derived
    /// from the name.
    pub fn uid(&self, kind: &str) -> String {
        self.uid
            .clone()
            .unwrap_or_else(|| format!("{kind}/{}/{}", self.namespace(), self.name))
    }
}

/// A reference to another object (`spec.subscriber.ref`, `spec.config`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KReference {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Where events go: a reference, a URI, or a reference plus a path.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Destination {
    #[serde(rename = "ref", default)]
    pub reference: Option<KReference>,
    #[serde(default)]
    pub uri: Option<String>,
    /// CA certificates (PEM) the sender trusts for this destination.
    #[serde(rename = "CACerts", default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    /// The audience of the token the destination requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    #[serde(default)]
    pub dead_letter_sink: Option<Destination>,
    #[serde(default)]
    pub retry: Option<i64>,
    #[serde(default)]
    pub backoff_policy: Option<String>,
    #[serde(default)]
    pub backoff_delay: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    #[serde(default)]
    pub config: Option<KReference>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Broker {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: BrokerSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TriggerFilter {
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One entry of `spec.filters` (Knative's SubscriptionsAPIFilter).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SubscriptionsApiFilter {
    #[serde(default)]
    pub all: Vec<SubscriptionsApiFilter>,
    #[serde(default)]
    pub any: Vec<SubscriptionsApiFilter>,
    #[serde(default)]
    pub not: Option<Box<SubscriptionsApiFilter>>,
    #[serde(default)]
    pub exact: BTreeMap<String, String>,
    #[serde(default)]
    pub prefix: BTreeMap<String, String>,
    #[serde(default)]
    pub suffix: BTreeMap<String, String>,
    #[serde(default)]
    pub cesql: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    pub broker: String,
    #[serde(default)]
    pub filter: Option<TriggerFilter>,
    #[serde(default)]
    pub filters: Vec<SubscriptionsApiFilter>,
    pub subscriber: Destination,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Trigger {
    pub metadata: Metadata,
    pub spec: TriggerSpec,
}

/// `messaging.knative.dev/v1beta1` KafkaChannel, or the `spec` of a
/// `messaging.knative.dev/v1` Channel's KafkaChannel template.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaChannelSpec {
    #[serde(default)]
    pub num_partitions: Option<i32>,
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// ISO-8601, becomes the topic's retention.ms.
    #[serde(default)]
    pub retention_duration: Option<String>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
    /// Written by Knative's subscription controller (the Subscribable duck
    /// type), where Knative's core runs.
    #[serde(default)]
    pub subscribers: Vec<ChannelSubscriber>,
}

/// One entry of a channel's `spec.subscribers`, with its destinations
/// already resolved to URIs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSubscriber {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub subscriber_uri: Option<String>,
    #[serde(default)]
    pub reply_uri: Option<String>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

/// A channel: a KafkaChannel, or a Channel whose template is one. `kind`
/// says which the user wrote, so references by either kind resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: KafkaChannelSpec,
}

#[derive(Clone, Debug, Deserialize)]
struct KafkaChannelObject {
    metadata: Metadata,
    #[serde(default)]
    spec: KafkaChannelSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTemplate {
    pub kind: String,
    #[serde(default)]
    pub spec: KafkaChannelSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelObjectSpec {
    #[serde(default)]
    channel_template: Option<ChannelTemplate>,
    #[serde(default)]
    delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Deserialize)]
struct ChannelObject {
    metadata: Metadata,
    spec: ChannelObjectSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    pub channel: KReference,
    pub subscriber: Destination,
    #[serde(default)]
    pub reply: Option<Destination>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Subscription {
    pub metadata: Metadata,
    pub spec: SubscriptionSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ConfigMap {
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// `spec.ceOverrides` of a source.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct CeOverrides {
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PingSourceSpec {
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub data_base64: Option<String>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

/// `sources.knative.dev/v1` PingSource.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct PingSource {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: PingSourceSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// The part of a pod's container Ferry runs without Kubernetes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ContainerSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PodTemplate {
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSourceSpec {
    #[serde(default)]
    pub template: PodTemplate,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

/// `sources.knative.dev/v1` ContainerSource.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ContainerSource {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: ContainerSourceSpec,
    /// The spec as written: in a cluster its whole pod template goes into
    /// the Deployment, not only what standalone reads.
    #[serde(skip)]
    pub raw_spec: serde_json::Value,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SinkBindingSpec {
    /// What the binding injects into (Kubernetes only).
    #[serde(default)]
    pub subject: Option<serde_json::Value>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

/// `sources.knative.dev/v1` SinkBinding.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct SinkBinding {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: SinkBindingSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerResource {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerSourceSpec {
    #[serde(default)]
    pub resources: Vec<ApiServerResource>,
    #[serde(default)]
    pub owner: Option<KReference>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

/// `sources.knative.dev/v1` ApiServerSource.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ApiServerSource {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: ApiServerSourceSpec,
}

/// Everything the reconciler reads, plus what could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub brokers: Vec<Broker>,
    pub triggers: Vec<Trigger>,
    pub config_maps: Vec<ConfigMap>,
    pub channels: Vec<Channel>,
    pub subscriptions: Vec<Subscription>,
    pub ping_sources: Vec<PingSource>,
    pub container_sources: Vec<ContainerSource>,
    pub sink_bindings: Vec<SinkBinding>,
    pub apiserver_sources: Vec<ApiServerSource>,
    pub event_types: Vec<EventType>,
    pub sequences: Vec<Sequence>,
    pub parallels: Vec<Parallel>,
    pub kafka_sinks: Vec<KafkaSink>,
    pub kafka_sources: Vec<KafkaSource>,
    pub event_policies: Vec<EventPolicy>,
    /// Knative's `config-features` (in a cluster), which override the
    /// controller's flags for the features they name.
    pub features: BTreeMap<String, String>,
    /// Documents that could not be used: where, and why.
    pub errors: Vec<(String, String)>,
}

impl Resources {
    /// Adds everything `other` read.
    pub fn extend(&mut self, other: Resources) {
        let Resources {
            brokers,
            triggers,
            config_maps,
            channels,
            subscriptions,
            ping_sources,
            container_sources,
            sink_bindings,
            apiserver_sources,
            event_types,
            sequences,
            parallels,
            kafka_sinks,
            kafka_sources,
            event_policies,
            features,
            errors,
        } = other;
        self.brokers.extend(brokers);
        self.triggers.extend(triggers);
        self.config_maps.extend(config_maps);
        self.channels.extend(channels);
        self.subscriptions.extend(subscriptions);
        self.ping_sources.extend(ping_sources);
        self.container_sources.extend(container_sources);
        self.sink_bindings.extend(sink_bindings);
        self.apiserver_sources.extend(apiserver_sources);
        self.event_types.extend(event_types);
        self.sequences.extend(sequences);
        self.parallels.extend(parallels);
        self.kafka_sinks.extend(kafka_sinks);
        self.kafka_sources.extend(kafka_sources);
        self.event_policies.extend(event_policies);
        self.features.extend(features);
        self.errors.extend(errors);
    }

    /// Adds one parsed document, by apiVersion and kind. `source` names it
    /// in error reports.
    pub fn add(&mut self, source: &str, document: serde_json::Value) {
        let api_version = document
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let kind = document
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let result = match (api_version.as_str(), kind.as_str()) {
            ("eventing.knative.dev/v1", "Broker") => {
                serde_json::from_value(document).map(|b| self.brokers.push(b))
            }
            ("eventing.knative.dev/v1", "Trigger") => {
                serde_json::from_value(document).map(|t| self.triggers.push(t))
            }
            ("v1", "ConfigMap") => {
                serde_json::from_value(document).map(|c| self.config_maps.push(c))
            }
            // Read when a resource names one (`ferry_common::secrets`), and
            // never kept with the resources.
            ("v1", "Secret") => Ok(()),
            ("eventing.knative.dev/v1alpha1", "EventPolicy") => {
                serde_json::from_value(document).map(|p| self.event_policies.push(p))
            }
            ("messaging.knative.dev/v1beta1", "KafkaChannel") => serde_json::from_value(document)
                .map(|c: KafkaChannelObject| {
                    self.channels.push(Channel {
                        kind: "KafkaChannel",
                        metadata: c.metadata,
                        spec: c.spec,
                    })
                }),
            ("messaging.knative.dev/v1", "Channel") => {
                serde_json::from_value(document).map(|c: ChannelObject| self.add_channel(source, c))
            }
            ("messaging.knative.dev/v1", "Subscription") => {
                serde_json::from_value(document).map(|s| self.subscriptions.push(s))
            }
            ("sources.knative.dev/v1", "PingSource") => {
                serde_json::from_value(document).map(|p| self.ping_sources.push(p))
            }
            ("sources.knative.dev/v1", "ContainerSource") => {
                let raw_spec = document.get("spec").cloned().unwrap_or_default();
                serde_json::from_value(document).map(|c: ContainerSource| {
                    self.container_sources
                        .push(ContainerSource { raw_spec, ..c })
                })
            }
            ("sources.knative.dev/v1", "SinkBinding") => {
                serde_json::from_value(document).map(|b| self.sink_bindings.push(b))
            }
            ("flows.knative.dev/v1", "Sequence") => {
                serde_json::from_value(document).map(|f| self.sequences.push(f))
            }
            ("flows.knative.dev/v1", "Parallel") => {
                serde_json::from_value(document).map(|f| self.parallels.push(f))
            }
            ("eventing.knative.dev/v1beta3", "EventType") => {
                event_type::parse("v1beta3", document).map(|e| self.event_types.push(e))
            }
            ("eventing.knative.dev/v1beta2", "EventType") => {
                event_type::parse("v1beta2", document).map(|e| self.event_types.push(e))
            }
            ("sources.knative.dev/v1", "ApiServerSource") => {
                serde_json::from_value(document).map(|a| self.apiserver_sources.push(a))
            }
            ("eventing.knative.dev/v1alpha1", "KafkaSink") => {
                serde_json::from_value(document).map(|s| self.kafka_sinks.push(s))
            }
            ("sources.knative.dev/v1" | "sources.knative.dev/v1beta1", "KafkaSource") => {
                serde_json::from_value(document).map(|s| self.kafka_sources.push(s))
            }
            _ => {
                self.errors.push((
                    source.to_owned(),
                    format!("unsupported kind '{kind}' of apiVersion '{api_version}'"),
                ));
                return;
            }
        };
        if let Err(error) = result {
            self.errors
                .push((source.to_owned(), format!("invalid {kind}: {error}")));
        }
    }

    fn add_channel(&mut self, source: &str, channel: ChannelObject) {
        match channel.spec.channel_template {
            Some(template) if template.kind == "KafkaChannel" => {
                let mut spec = template.spec;
                // The Channel's own delivery applies when the template has none.
                spec.delivery = spec.delivery.or(channel.spec.delivery);
                self.channels.push(Channel { kind: "Channel", metadata: channel.metadata, spec });
            }
            // Another implementation's channel: not Ferry's.
            Some(_) => {}
            None => self.errors.push((
                source.to_owned(),
                "invalid Channel: no spec.channelTemplate (Ferry serves channelTemplate kind KafkaChannel)".into(),
            )),
        }
    }

    /// Parses a multi-document YAML text.
    pub fn add_yaml(&mut self, source: &str, text: &str) {
        for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let where_ = format!("{source} (document {})", i + 1);
            match serde_json::Value::deserialize(document) {
                Ok(serde_json::Value::Null) => {} // an empty document between separators
                Ok(value) => self.add(&where_, value),
                Err(error) => {
                    self.errors
                        .push((where_, format!("not valid YAML: {error}")));
                    // The rest of the stream cannot be trusted after a syntax error.
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_user_applies() {
        let mut r = Resources::default();
        r.add_yaml(
            "x.yaml",
            r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: team
  annotations:
    eventing.knative.dev/broker.class: Kafka
spec:
  delivery:
    retry: 3
    backoffDelay: PT0.2S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t1
spec:
  broker: default
  filters:
    - any:
        - exact: { type: a }
        - cesql: "source LIKE '%x'"
  subscriber:
    ref:
      apiVersion: v1
      kind: Service
      name: display
    uri: /path
---
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: d }
"#,
        );
        assert_eq!(r.brokers[0].metadata.namespace(), "team");
        assert_eq!(r.brokers[0].spec.delivery.as_ref().unwrap().retry, Some(3));
        assert_eq!(r.triggers[0].metadata.namespace(), "default");
        assert_eq!(
            r.triggers[0].spec.filters[0].any[1].cesql.as_deref(),
            Some("source LIKE '%x'")
        );
        assert_eq!(
            r.triggers[0]
                .spec
                .subscriber
                .reference
                .as_ref()
                .unwrap()
                .name,
            "display"
        );
        assert_eq!(
            r.errors,
            [(
                "x.yaml (document 4)".to_string(),
                "unsupported kind 'Deployment' of apiVersion 'apps/v1'".to_string()
            )]
        );
    }

    #[test]
    fn broken_documents_are_reported() {
        let mut r = Resources::default();
        r.add_yaml("bad.yaml", "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b}\n");
        r.add_yaml("worse.yaml", "kind: [unclosed\n");
        assert_eq!(r.errors.len(), 2);
        assert!(
            r.errors[0]
                .1
                .starts_with("invalid Trigger: missing field `subscriber`"),
            "{:?}",
            r.errors
        );
        assert!(
            r.errors[1].1.starts_with("not valid YAML"),
            "{:?}",
            r.errors
        );
    }
}
