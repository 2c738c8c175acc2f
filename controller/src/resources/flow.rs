//! `flows.knative.dev/v1` Sequence and Parallel, as users write them.

use serde::Deserialize;

use super::{ChannelTemplate, DeliverySpec, Destination, Metadata};

/// A step: a Destination, with its own delivery.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Step {
    #[serde(flatten)]
    pub destination: Destination,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SequenceSpec {
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub channel_template: Option<ChannelTemplate>,
    #[serde(default)]
    pub reply: Option<Destination>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Sequence {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: SequenceSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Branch {
    #[serde(default)]
    pub filter: Option<Destination>,
    pub subscriber: Destination,
    #[serde(default)]
    pub reply: Option<Destination>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParallelSpec {
    #[serde(default)]
    pub branches: Vec<Branch>,
    #[serde(default)]
    pub channel_template: Option<ChannelTemplate>,
    #[serde(default)]
    pub reply: Option<Destination>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Parallel {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: ParallelSpec,
}
