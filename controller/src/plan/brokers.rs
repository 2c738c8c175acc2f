//! Brokers of Ferry's class: each one's topic (its own, or an external one
//! named by annotation), its Kafka settings and its contract resource.

use std::collections::BTreeMap;

use ferry_common::{credentials::SecretAuth, kafka::ClusterRef};
use ferry_proto::Ingress;

use super::{
    addresses::{self, reference},
    delivery::delivery_config,
    output::{Plan, TopicSpec},
    settings::{KafkaDefaults, Settings, TopicHealth},
    status::Status,
};
use crate::resources::{
    Broker, Resources, BROKER_CLASS_ANNOTATION, EXTERNAL_TOPIC_ANNOTATION, KAFKA_BROKER_CLASS,
};

pub fn topic_name(namespace: &str, name: &str) -> String {
    format!("knative-broker-{namespace}-{name}")
}

/// A broker as the plan sees it.
pub(super) struct PlannedBroker {
    pub resource: ferry_proto::Resource,
    pub ready: bool,
    pub cluster: ClusterRef,
}

/// Every broker of Ferry's class: its status and topic into `plan`; the
/// brokers by (namespace, name), for their triggers.
pub(super) fn plan_brokers(
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
    plan: &mut Plan,
) -> BTreeMap<(String, String), PlannedBroker> {
    let mut brokers = BTreeMap::new();
    for broker in resources.brokers.iter().filter(|b| is_ours(b, settings)) {
        let (status, planned, topic) = plan_broker(broker, resources, settings, health);
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
    brokers
}

pub(super) fn is_ours(broker: &Broker, settings: &Settings) -> bool {
    match broker.metadata.annotations.get(BROKER_CLASS_ANNOTATION) {
        Some(class) => class == KAFKA_BROKER_CLASS,
        None => settings.claim_unannotated,
    }
}

fn plan_broker(
    broker: &Broker,
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
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
        cluster: kafka.cluster(),
        name: external.cloned().unwrap_or_else(|| topic_name(ns, name)),
        partitions: kafka.partitions,
        replication: kafka.replication,
        config: kafka.topic_config.clone(),
        external: external.is_some(),
        kept: false,
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
        auth: Some(kafka.contract_auth()),
        feature_flags: super::event_types::feature_flags(&broker.metadata, settings),
        ..Default::default()
    };
    let planned = |resource, ready| {
        Some(PlannedBroker {
            resource,
            ready,
            cluster: kafka.cluster(),
        })
    };
    let mut status = status;
    match delivery_config(broker.spec.delivery.as_ref(), ns, settings, &mut status) {
        Ok(config) => resource.egress_config = config,
        Err(message) => {
            return (
                status.not_ready("DeliveryInvalid", message),
                planned(resource, false),
                Some(topic),
            )
        }
    }
    if let Some(why) = health.failed(&topic) {
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
    addresses::set_address(&mut status, settings, addresses::broker(settings, ns, name));
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
            // The reference reads the Secret from the ConfigMap's namespace.
            "auth.secret.ref.name" if !value.trim().is_empty() => {
                kafka.auth = Some(SecretAuth::Secret {
                    namespace: ns.to_owned(),
                    name: value.trim().to_owned(),
                })
            }
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
