//! `eventing.knative.dev/v1alpha1` EventPolicy: which senders may send to
//! which addressables, and which of their events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Metadata, SubscriptionsApiFilter};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct EventPolicy {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: EventPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EventPolicySpec {
    /// The addressables it applies to; none: every one of its namespace.
    #[serde(default)]
    pub to: Vec<PolicyTarget>,
    /// Who may send; none: no one (the policy admits nothing).
    #[serde(default)]
    pub from: Vec<PolicySender>,
    /// Subscriptions API filters the events must pass.
    #[serde(default)]
    pub filters: Vec<SubscriptionsApiFilter>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PolicyTarget {
    #[serde(default, rename = "ref")]
    pub reference: Option<PolicyRef>,
    #[serde(default)]
    pub selector: Option<PolicySelector>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PolicySender {
    #[serde(default, rename = "ref")]
    pub reference: Option<PolicyRef>,
    /// A subject; a trailing `*` makes it a prefix.
    #[serde(default)]
    pub sub: Option<String>,
}
