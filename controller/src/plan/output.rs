//! What a plan decides: the topics and consumer groups Kafka should have,
//! the contract's resources, and a status per object.

use std::collections::{BTreeMap, BTreeSet};

use ferry_common::kafka::ClusterRef;

use super::status::Status;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicSpec {
    pub cluster: ClusterRef,
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub config: BTreeMap<String, String>,
    /// Named by an annotation or a KafkaSource, or a KafkaSink's without
    /// partitions: must exist, never created or deleted by Ferry.
    pub external: bool,
    /// A KafkaSink's: created when missing, never deleted (it is the
    /// user's data).
    pub kept: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every topic of Ferry's brokers, ready or not.
    pub topics: Vec<TopicSpec>,
    /// The contract's resources: ready brokers with their ready triggers.
    pub resources: Vec<ferry_proto::Resource>,
    /// (cluster, group) of every existing trigger of Ferry's brokers, and
    /// of every KafkaSource.
    pub groups: BTreeSet<(ClusterRef, String)>,
    pub statuses: Vec<Status>,
    /// What the valid sources run, their sinks resolved.
    pub sources: ferry_sources::Work,
    /// The (type, source) pairs sources declare for addressables that make
    /// EventTypes.
    pub declared_event_types: Vec<Declared>,
}

/// A pair a source declares it sends to a Broker or Channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub addressable: ferry_proto::Reference,
    pub owner: ferry_proto::Reference,
    pub ty: String,
    pub source: String,
}
