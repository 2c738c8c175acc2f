//! The reference Kafka broker's own kinds: KafkaSink
//! (`eventing.knative.dev/v1alpha1`) and KafkaSource
//! (`sources.knative.dev/v1`, `v1beta1` read the same way).

use serde::{Deserialize, Serialize};

use super::{CeOverrides, DeliverySpec, Destination, Metadata};

/// The label that says how a KafkaSource's record keys are read.
pub const KEY_TYPE_LABEL: &str = "kafkasources.sources.knative.dev/key-type";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSinkSpec {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub num_partitions: Option<i32>,
    #[serde(default)]
    pub replication_factor: Option<i32>,
    #[serde(default)]
    pub bootstrap_servers: Vec<String>,
    /// `binary` (the default) or `structured`.
    #[serde(default)]
    pub content_mode: Option<String>,
    /// `{secret: {ref: {name}}}`: SASL and TLS settings.
    #[serde(default)]
    pub auth: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct KafkaSink {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: KafkaSinkSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSourceSpec {
    #[serde(default)]
    pub bootstrap_servers: Vec<String>,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub consumer_group: Option<String>,
    /// `earliest` or `latest` (the default).
    #[serde(default)]
    pub initial_offset: Option<String>,
    /// SASL and TLS (from Secrets in a cluster).
    #[serde(default)]
    pub net: Option<serde_json::Value>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
    /// `ordered` (the default) or `unordered`.
    #[serde(default)]
    pub ordering: Option<String>,
    #[serde(default)]
    pub consumers: Option<i32>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct KafkaSource {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: KafkaSourceSpec,
}
