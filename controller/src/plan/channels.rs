//! The pipe model: KafkaChannels (and Channels templated on them), their
//! topics, and their subscribers, from Subscriptions or (beside Knative's
//! core) from each channel's `spec.subscribers`.

use std::collections::BTreeMap;

use ferry_common::kafka::ClusterRef;
use ferry_proto::{egress::ReplyStrategy, DeliveryOrder, Egress, Empty, Ingress, Reference};

use super::{
    addresses::{self, channel_host, channel_path, resolve},
    delivery::{delivery_config, egress_delivery, ferry_annotations, NotReady},
    output::{Plan, TopicSpec},
    policies,
    settings::{ChannelSubscribers, Settings, TopicHealth},
    status::{Ready, Status, SubscriberStatus},
};
use crate::{
    duration,
    resources::{Channel, ChannelSubscriber, Destination, Resources, Subscription},
};

pub fn topic_name(namespace: &str, name: &str) -> String {
    format!("knative-messaging-kafka.{namespace}.{name}")
}

pub fn consumer_group(namespace: &str, channel: &str, subscription_uid: &str) -> String {
    format!("kafka.{namespace}.{channel}.{subscription_uid}")
}

struct PlannedChannel {
    resource: ferry_proto::Resource,
    ready: bool,
    status: Status,
    cluster: ClusterRef,
}

pub(super) fn plan_channels(
    resources: &Resources,
    settings: &Settings,
    health: &TopicHealth,
    plan: &mut Plan,
) {
    let from_spec = settings.channel_subscribers == ChannelSubscribers::ChannelSpec;
    let mut channels: BTreeMap<(String, String), PlannedChannel> = BTreeMap::new();
    // Beside Knative's core, its channel controller makes a KafkaChannel of
    // every `messaging.knative.dev/v1` Channel: that one is served.
    for channel in resources
        .channels
        .iter()
        .filter(|c| !(from_spec && c.kind == "Channel"))
    {
        let (mut planned, topic) = plan_channel(channel, settings, health);
        plan.topics.extend(topic);
        if from_spec {
            let cluster = planned.cluster.clone();
            for subscriber in &channel.spec.subscribers {
                let group = consumer_group(
                    channel.metadata.namespace(),
                    &channel.metadata.name,
                    &subscriber.uid,
                );
                plan.groups.insert((cluster.clone(), group.clone()));
                let result = if planned.ready {
                    spec_subscriber(channel, subscriber, &group, settings)
                } else {
                    Err(("ChannelNotReady", "the channel is not ready".to_owned()))
                };
                planned.add_subscriber(
                    result,
                    String::new(),
                    subscriber.uid.clone(),
                    subscriber.generation,
                );
            }
        }
        channels.insert(
            (
                channel.metadata.namespace().to_owned(),
                channel.metadata.name.clone(),
            ),
            planned,
        );
    }
    if !from_spec {
        plan_subscriptions(resources, settings, &mut channels, plan);
    }
    for planned in channels.into_values() {
        plan.statuses.push(planned.status);
        if planned.ready {
            plan.resources.push(planned.resource);
        }
    }
}

impl PlannedChannel {
    /// Adds a subscriber's egress, or its reason, to the channel's
    /// `status.subscribers`; the reason, if any, is returned.
    fn add_subscriber(
        &mut self,
        result: Result<Egress, NotReady>,
        name: String,
        uid: String,
        observed_generation: Option<i64>,
    ) -> Option<NotReady> {
        let (ready, message, failed) = match result {
            Ok(egress) => {
                self.resource.egresses.push(egress);
                (Ready::True, String::new(), None)
            }
            Err((reason, message)) => (
                Ready::False,
                format!("{reason}: {message}"),
                Some((reason, message)),
            ),
        };
        self.status.subscribers.push(SubscriberStatus {
            name,
            uid,
            observed_generation,
            ready,
            message,
        });
        failed
    }
}

/// Ferry's own reading of Subscriptions, each with a status of its own.
fn plan_subscriptions(
    resources: &Resources,
    settings: &Settings,
    channels: &mut BTreeMap<(String, String), PlannedChannel>,
    plan: &mut Plan,
) {
    let mut subscriptions: Vec<&Subscription> = resources.subscriptions.iter().collect();
    subscriptions.sort_by_key(|s| (s.metadata.namespace().to_owned(), s.metadata.name.clone()));
    for subscription in subscriptions {
        let ns = subscription.metadata.namespace();
        let status = Status::new("Subscription", ns, &subscription.metadata.name);
        let target = &subscription.spec.channel;
        let is_channel_kind = matches!(target.kind.as_str(), "KafkaChannel" | "Channel");
        let Some(channel) = channels
            .get_mut(&(ns.to_owned(), target.name.clone()))
            .filter(|_| is_channel_kind)
        else {
            plan.statuses.push(status.not_ready(
                "ChannelDoesNotExist",
                format!("{} '{}' does not exist", target.kind, target.name),
            ));
            continue;
        };
        let uid = subscription
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| subscription.metadata.name.clone());
        let group = consumer_group(ns, &target.name, &uid);
        plan.groups.insert((channel.cluster.clone(), group.clone()));
        let mut status = status;
        let result = if channel.ready {
            plan_subscription(subscription, settings, &group, &mut status)
        } else {
            Err((
                "ChannelNotReady",
                format!("channel '{}' is not ready", target.name),
            ))
        };
        let name = subscription.metadata.name.clone();
        if let Some((reason, message)) = channel.add_subscriber(result, name, uid, None) {
            status = status.not_ready(reason, message);
        }
        plan.statuses.push(status);
    }
}

/// One entry of a channel's `spec.subscribers`, as Knative's subscription
/// controller resolved it: URIs already, and its own delivery.
fn spec_subscriber(
    channel: &Channel,
    subscriber: &ChannelSubscriber,
    group: &str,
    settings: &Settings,
) -> Result<Egress, NotReady> {
    let ns = channel.metadata.namespace();
    let uri = |u: &Option<String>| Destination {
        uri: u.clone(),
        ..Default::default()
    };
    let destination = resolve(&uri(&subscriber.subscriber_uri), ns, settings)
        .map_err(|m| ("SubscriberResolveFailed", m))?;
    let reply = match subscriber.reply_uri.as_deref().filter(|u| !u.is_empty()) {
        Some(_) => ReplyStrategy::ReplyUrl(
            resolve(&uri(&subscriber.reply_uri), ns, settings)
                .map_err(|m| ("ReplyResolveFailed", m))?,
        ),
        None => ReplyStrategy::DiscardReply(Empty {}),
    };
    // The subscription's status is Knative's to write; this one only
    // collects what egress_delivery reports along the way.
    let mut scratch = Status::new("Subscription", ns, &subscriber.uid);
    let (egress_config, order) = egress_delivery(
        subscriber.delivery.as_ref(),
        &channel.metadata,
        DeliveryOrder::Ordered,
        settings,
        &mut scratch,
    )?;
    Ok(Egress {
        consumer_group: group.to_owned(),
        destination,
        reply_strategy: Some(reply),
        uid: subscriber.uid.clone(),
        egress_config,
        delivery_order: order as i32,
        // spec.subscribers names no Subscription, only its uid.
        reference: Some(Reference {
            uuid: subscriber.uid.clone(),
            namespace: ns.to_owned(),
            name: subscriber.uid.clone(),
            kind: "Subscription".to_owned(),
            group_version: "messaging.knative.dev/v1".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn plan_channel(
    channel: &Channel,
    settings: &Settings,
    health: &TopicHealth,
) -> (PlannedChannel, Option<TopicSpec>) {
    let (ns, name) = (channel.metadata.namespace(), channel.metadata.name.as_str());
    let status = Status::new(channel.kind, ns, name);
    let defaults = &settings.defaults;
    let resource = ferry_proto::Resource {
        uid: channel.metadata.uid(channel.kind),
        topics: vec![topic_name(ns, name)],
        bootstrap_servers: defaults.bootstrap.clone(),
        // Both: the reference's Host header in a cluster, and a path that
        // works anywhere (the receiver serves both).
        ingress: Some(Ingress {
            path: channel_path(ns, name),
            host: channel_host(ns, name),
            ..Default::default()
        }),
        reference: Some(Reference {
            uuid: channel.metadata.uid(channel.kind),
            namespace: ns.to_owned(),
            name: name.to_owned(),
            kind: "KafkaChannel".to_owned(),
            group_version: "messaging.knative.dev/v1beta1".to_owned(),
            ..Default::default()
        }),
        auth: Some(defaults.contract_auth()),
        feature_flags: super::event_types::feature_flags(&channel.metadata, settings),
        ..Default::default()
    };
    let not_ready = |status: Status, reason: &str, message: String, topic: Option<TopicSpec>| {
        let planned = PlannedChannel {
            resource: resource.clone(),
            ready: false,
            status: status.not_ready(reason, message),
            cluster: defaults.cluster(),
        };
        (planned, topic)
    };
    let spec = &channel.spec;
    let positive = |what: &str, value: Option<i32>, default: i32| match value {
        None => Ok(default),
        Some(n) if n > 0 => Ok(n),
        Some(n) => Err(format!("{what} must be positive (got {n})")),
    };
    let (partitions, replication) = match (
        positive("numPartitions", spec.num_partitions, defaults.partitions),
        positive(
            "replicationFactor",
            spec.replication_factor,
            defaults.replication,
        ),
    ) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(m), _) | (_, Err(m)) => return not_ready(status, "InvalidSpec", m, None),
    };
    let mut config = defaults.topic_config.clone();
    if let Some(retention) = &spec.retention_duration {
        match duration::parse(retention) {
            Ok(d) => {
                config.insert("retention.ms".into(), d.as_millis().to_string());
            }
            Err(e) => {
                return not_ready(
                    status,
                    "InvalidSpec",
                    format!("retentionDuration: {e}"),
                    None,
                )
            }
        }
    }
    let topic = TopicSpec {
        cluster: defaults.cluster(),
        name: topic_name(ns, name),
        partitions,
        replication,
        config,
        external: false,
        kept: false,
    };
    let mut resource = resource.clone();
    let mut status = status;
    match delivery_config(spec.delivery.as_ref(), ns, settings, &mut status) {
        Ok(config) => resource.egress_config = config,
        Err(message) => return not_ready(status, "DeliveryInvalid", message, Some(topic)),
    }
    if let Some(why) = health.failed(&topic) {
        return not_ready(status, "TopicNotReady", why.clone(), Some(topic));
    }
    addresses::set_address(
        &mut status,
        settings,
        addresses::channel(settings, ns, name),
    );
    (
        PlannedChannel {
            resource,
            ready: true,
            status,
            cluster: defaults.cluster(),
        },
        Some(topic),
    )
}

fn plan_subscription(
    subscription: &Subscription,
    settings: &Settings,
    group: &str,
    status: &mut Status,
) -> Result<Egress, (&'static str, String)> {
    let ns = subscription.metadata.namespace();
    let destination = resolve(&subscription.spec.subscriber, ns, settings)
        .map_err(|m| ("SubscriberResolveFailed", m))?;
    status.subscriber_uri = Some(destination.clone());
    // A reply goes to the subscription's reply destination, or nowhere.
    let reply = match &subscription.spec.reply {
        Some(reply) => ReplyStrategy::ReplyUrl(
            resolve(reply, ns, settings).map_err(|m| ("ReplyResolveFailed", m))?,
        ),
        None => ReplyStrategy::DiscardReply(Empty {}),
    };
    // Channels deliver in order unless asked not to.
    let (egress_config, order) = egress_delivery(
        subscription.spec.delivery.as_ref(),
        &subscription.metadata,
        DeliveryOrder::Ordered,
        settings,
        status,
    )?;
    Ok(Egress {
        consumer_group: group.to_owned(),
        destination,
        destination_ca_certs: subscription
            .spec
            .subscriber
            .ca_certs
            .clone()
            .unwrap_or_default(),
        destination_audience: policies::of_destination(&subscription.spec.subscriber, ns, settings),
        reply_url_audience: (subscription.spec.reply.as_ref())
            .map(|r| policies::of_destination(r, ns, settings))
            .unwrap_or_default(),
        oidc_service_account_name: policies::sender_account(
            settings,
            "messaging.knative.dev",
            "Subscription",
            &subscription.metadata.name,
        ),
        reply_url_ca_certs: (subscription.spec.reply.as_ref())
            .and_then(|r| r.ca_certs.clone())
            .unwrap_or_default(),
        reply_strategy: Some(reply),
        uid: subscription.metadata.uid("Subscription"),
        egress_config,
        delivery_order: order as i32,
        reference: Some(Reference {
            uuid: subscription.metadata.uid("Subscription"),
            namespace: ns.to_owned(),
            name: subscription.metadata.name.clone(),
            kind: "Subscription".to_owned(),
            group_version: "messaging.knative.dev/v1".to_owned(),
            ..Default::default()
        }),
        ..ferry_annotations(&subscription.metadata, status)?
    })
}
