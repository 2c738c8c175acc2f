//! The reconciler's decisions: resources (desired) and what Kafka said
//! (observed) in; topics, consumer groups, the contract's resources and a
//! status per object out. Pure: the folder source and the Kubernetes
//! source share every decision, and tests need no Kafka.
//!
//! [`plan`] goes brokers → their triggers → channels and their
//! subscriptions → KafkaSinks and KafkaSources → sources → EventTypes; the shared pieces are `delivery` (an egress's delivery
//! settings) and `addresses` (addresses and Destinations).

mod addresses;
mod brokers;
mod channels;
mod delivery;
mod event_types;
mod flows;
pub mod group_starts;
mod kafka;
mod output;
pub mod policies;
mod settings;
mod sources;
mod status;
mod triggers;

pub use addresses::resolve;
pub use brokers::topic_name;
pub use event_types::AUTOCREATE_ANNOTATION;
pub use flows::{expand as expand_flows, GENERATED_BY};
pub use output::{Declared, Plan, TopicSpec};
pub use settings::{
    AddressTls, AuthorizationMode, ChannelAddresses, ChannelSubscribers, KafkaDefaults, Settings,
    TopicHealth, MISSING, NO_CREDENTIALS, PENDING,
};
pub use status::{
    Address, CeAttribute, Condition, EventTypeSummary, Ready, Status, SubscriberStatus,
};
pub use triggers::consumer_group;

use crate::resources::Resources;

pub fn plan(resources: &Resources, settings: &Settings, health: &TopicHealth) -> Plan {
    let settings = &*settings.with_features(&resources.features);
    let mut plan = Plan::default();
    // Beside Knative's core its flows controller makes their channels and
    // subscriptions, which Ferry then serves like any other.
    let resources = &*match settings.channel_subscribers {
        ChannelSubscribers::Subscriptions => flows::expand(resources),
        ChannelSubscribers::ChannelSpec => std::borrow::Cow::Borrowed(resources),
    };
    for (source, error) in &resources.errors {
        plan.statuses
            .push(Status::new("File", "", source).not_ready("Invalid", error.clone()));
    }

    let mut brokers = brokers::plan_brokers(resources, settings, health, &mut plan);
    triggers::plan_triggers(resources, settings, &mut brokers, &mut plan);
    plan.resources = brokers
        .into_values()
        .filter(|b| b.ready)
        .map(|b| b.resource)
        .collect();
    channels::plan_channels(resources, settings, health, &mut plan);
    kafka::plan_kafka_sinks(resources, settings, health, &mut plan);
    kafka::plan_kafka_sources(resources, settings, health, &mut plan);
    sources::plan_sources(resources, settings, &mut plan);
    event_types::plan_event_types(resources, &mut plan);
    event_types::declared_by_sources(resources, settings, &mut plan);
    // Before the flows, whose readiness is their subscriptions'.
    if let Some(pins) = health.pins {
        group_starts::hold(&mut plan.statuses, &plan.resources, pins);
    }
    if settings.channel_subscribers == ChannelSubscribers::Subscriptions {
        flows::statuses(resources, &mut plan);
    }
    policies::apply(resources, settings, &mut plan);
    plan.topics.sort();
    plan
}
