//! A resource's status in Knative's shape, as the plan decides it.

use std::collections::BTreeMap;

use serde::Serialize;

/// One of an addressable's addresses, in Knative's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    pub name: String,
    pub url: String,
    #[serde(rename = "CACerts", skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// An EventPolicy that applies to an addressable (`status.policies`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedPolicy {
    pub name: String,
    pub api_version: String,
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
    /// Every address, the one above first (`status.addresses`), when there
    /// is more to say than its URL: HTTPS and its CA certificates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// The EventPolicies that apply to an addressable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AppliedPolicy>,
    /// An EventPolicy's senders, resolved to subjects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// A channel's subscribers and their readiness.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberStatus>,
    /// A source's resolved sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    /// The CA certificates the sink's destination names (`sinkCACerts`).
    #[serde(rename = "sinkCACerts", skip_serializing_if = "Option::is_none")]
    pub sink_ca_certs: Option<String>,
    /// A KafkaSource's consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i32>,
    /// The (type, source) pairs a source emits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ce_attributes: Vec<CeAttribute>,
    /// What a source sets on its events (`{"extensions": {...}}`, the
    /// value of `K_CE_OVERRIDES`), for `ferry run --binding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<serde_json::Value>,
    /// `<Kind> <namespace>/<name>` of the flow that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<String>,
    /// A flow's `channelStatuses` and `subscriptionStatuses` (Sequence) or
    /// `ingressChannelStatus` and `branchStatuses` (Parallel).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub flow: Option<serde_json::Value>,
    /// An EventType's type, source and addressable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventTypeSummary>,
    /// Knative's `status.annotations`: what the controller did about an
    /// object's annotations (a replay it passed on).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The kind's own conditions (a source's `SinkProvided`), which `Ready`
    /// sums up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What an EventType says, as `/resources` and `ferry eventtypes` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventTypeSummary {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// `<Kind> <namespace>/<name>` of the addressable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it was made (first seen, for one made from events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CeAttribute {
    #[serde(rename = "type")]
    pub ty: String,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub status: Ready,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Condition {
    pub fn new(ty: &'static str, status: Ready, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            ty,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
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
            addresses: Vec::new(),
            policies: Vec::new(),
            from: Vec::new(),
            subscriber_uri: None,
            dead_letter_sink_uri: None,
            subscribers: Vec::new(),
            sink_uri: None,
            sink_ca_certs: None,
            consumers: None,
            ce_attributes: Vec::new(),
            ce_overrides: None,
            event_type: None,
            generated_by: None,
            flow: None,
            annotations: BTreeMap::new(),
            conditions: Vec::new(),
        }
    }

    pub(crate) fn not_ready(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.ready = Ready::False;
        self.reason = reason.to_owned();
        self.message = message.into();
        self
    }
}
