//! Flows (`flows.knative.dev/v1`), built as Knative builds them: out of
//! KafkaChannels and Subscriptions, generated before the rest of the plan
//! so each hop is an ordinary durable channel.
//!
//! - A Sequence `s`: channel and subscription `s-kn-sequence-<i>` per step;
//!   subscription *i* delivers channel *i* to step *i*, its reply goes to
//!   channel *i+1* (the last one's to `spec.reply`, or nowhere). Its
//!   address is channel 0's.
//! - A Parallel `p`: the ingress channel `p-kn-parallel`; per branch a
//!   channel `p-kn-parallel-<i>`, a filter subscription
//!   `p-kn-parallel-filter-<i>` on the ingress channel (to the filter,
//!   replying to the branch channel; without a filter, to the branch
//!   channel itself) and a subscription `p-kn-parallel-<i>` on the branch
//!   channel (to the subscriber, replying to the branch's reply, else the
//!   Parallel's).
//!
//! Their statuses sum up those of what they generated.

use std::borrow::Cow;

use serde_json::json;

use super::{
    output::Plan,
    status::{Condition, Ready, Status},
};
use crate::resources::{
    Channel, ChannelTemplate, DeliverySpec, Destination, KReference, KafkaChannelSpec, Metadata,
    Resources, Subscription, SubscriptionSpec, DELIVERY_ORDER_ANNOTATION,
};

/// On each generated channel and subscription: `<Kind> <namespace>/<name>`
/// of its flow.
pub const GENERATED_BY: &str = "flows.ferry.dev/generated-by";

/// What a flow generates, or why it generates nothing.
struct Generated {
    channels: Vec<Channel>,
    subscriptions: Vec<Subscription>,
}

/// The resources with every valid flow's channels and subscriptions.
pub fn expand(resources: &Resources) -> Cow<'_, Resources> {
    if resources.sequences.is_empty() && resources.parallels.is_empty() {
        return Cow::Borrowed(resources);
    }
    let mut expanded = resources.clone();
    let flows = resources
        .sequences
        .iter()
        .filter_map(|s| sequence(s).ok())
        .chain(resources.parallels.iter().filter_map(|p| parallel(p).ok()));
    for generated in flows {
        expanded.channels.extend(generated.channels);
        expanded.subscriptions.extend(generated.subscriptions);
    }
    Cow::Owned(expanded)
}

fn channel_spec(template: &Option<ChannelTemplate>) -> Result<KafkaChannelSpec, String> {
    match template {
        None => Ok(KafkaChannelSpec::default()),
        Some(t) if t.kind == "KafkaChannel" => Ok(KafkaChannelSpec {
            subscribers: Vec::new(),
            ..t.spec.clone()
        }),
        Some(t) => Err(format!(
            "spec.channelTemplate: Ferry makes KafkaChannels, not {}",
            t.kind
        )),
    }
}

/// Metadata of a generated object: in the flow's namespace, marked, with
/// the flow's delivery order.
fn child(flow: &Metadata, kind: &str, name: String) -> Metadata {
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        GENERATED_BY.to_owned(),
        format!("{kind} {}/{}", flow.namespace(), flow.name),
    );
    if let Some(order) = flow.annotations.get(DELIVERY_ORDER_ANNOTATION) {
        annotations.insert(DELIVERY_ORDER_ANNOTATION.to_owned(), order.clone());
    }
    Metadata {
        name,
        namespace: Some(flow.namespace().to_owned()),
        uid: None,
        generation: flow.generation,
        annotations,
        labels: Default::default(),
        created: None,
    }
}

fn channel_ref(name: &str) -> KReference {
    KReference {
        api_version: "messaging.knative.dev/v1beta1".into(),
        kind: "KafkaChannel".into(),
        name: name.to_owned(),
        namespace: None,
    }
}

fn to_channel(name: &str) -> Destination {
    Destination {
        reference: Some(channel_ref(name)),
        ..Default::default()
    }
}

fn subscription(
    metadata: Metadata,
    channel: &str,
    subscriber: Destination,
    reply: Option<Destination>,
    delivery: Option<DeliverySpec>,
) -> Subscription {
    Subscription {
        metadata,
        spec: SubscriptionSpec {
            channel: channel_ref(channel),
            subscriber,
            reply,
            delivery,
        },
    }
}

pub fn sequence_channel(sequence: &str, i: usize) -> String {
    format!("{sequence}-kn-sequence-{i}")
}

fn sequence(s: &crate::resources::Sequence) -> Result<Generated, String> {
    let spec = channel_spec(&s.spec.channel_template)?;
    if s.spec.steps.is_empty() {
        return Err("spec.steps: a Sequence needs at least one step".into());
    }
    let n = s.spec.steps.len();
    let mut generated = Generated {
        channels: Vec::new(),
        subscriptions: Vec::new(),
    };
    for (i, step) in s.spec.steps.iter().enumerate() {
        let name = sequence_channel(&s.metadata.name, i);
        generated.channels.push(Channel {
            kind: "KafkaChannel",
            metadata: child(&s.metadata, "Sequence", name.clone()),
            spec: spec.clone(),
        });
        let reply = match i + 1 < n {
            true => Some(to_channel(&sequence_channel(&s.metadata.name, i + 1))),
            false => s.spec.reply.clone(),
        };
        generated.subscriptions.push(subscription(
            child(&s.metadata, "Sequence", name.clone()),
            &name,
            step.destination.clone(),
            reply,
            step.delivery.clone(),
        ));
    }
    Ok(generated)
}

pub fn parallel_ingress(parallel: &str) -> String {
    format!("{parallel}-kn-parallel")
}

fn parallel(p: &crate::resources::Parallel) -> Result<Generated, String> {
    let spec = channel_spec(&p.spec.channel_template)?;
    if p.spec.branches.is_empty() {
        return Err("spec.branches: a Parallel needs at least one branch".into());
    }
    let name = &p.metadata.name;
    let ingress = parallel_ingress(name);
    let meta = |n: String| child(&p.metadata, "Parallel", n);
    let mut generated = Generated {
        channels: vec![Channel {
            kind: "KafkaChannel",
            metadata: meta(ingress.clone()),
            spec: spec.clone(),
        }],
        subscriptions: Vec::new(),
    };
    for (i, branch) in p.spec.branches.iter().enumerate() {
        let branch_channel = format!("{name}-kn-parallel-{i}");
        generated.channels.push(Channel {
            kind: "KafkaChannel",
            metadata: meta(branch_channel.clone()),
            spec: spec.clone(),
        });
        let (filter, filter_reply) = match &branch.filter {
            Some(filter) => (filter.clone(), Some(to_channel(&branch_channel))),
            None => (to_channel(&branch_channel), None),
        };
        generated.subscriptions.push(subscription(
            meta(format!("{name}-kn-parallel-filter-{i}")),
            &ingress,
            filter,
            filter_reply,
            None,
        ));
        generated.subscriptions.push(subscription(
            meta(branch_channel.clone()),
            &branch_channel,
            branch.subscriber.clone(),
            branch.reply.clone().or_else(|| p.spec.reply.clone()),
            branch.delivery.clone(),
        ));
    }
    Ok(generated)
}

/// Each flow's status, from its generated channels' and subscriptions';
/// those are marked as generated.
pub(super) fn statuses(resources: &Resources, plan: &mut Plan) {
    for status in &mut plan.statuses {
        let generated = match status.kind.as_str() {
            "KafkaChannel" => resources
                .channels
                .iter()
                .find(|c| {
                    c.metadata.namespace() == status.namespace && c.metadata.name == status.name
                })
                .map(|c| &c.metadata),
            "Subscription" => resources
                .subscriptions
                .iter()
                .find(|s| {
                    s.metadata.namespace() == status.namespace && s.metadata.name == status.name
                })
                .map(|s| &s.metadata),
            _ => None,
        };
        status.generated_by = generated.and_then(|m| m.annotations.get(GENERATED_BY).cloned());
    }
    let mut flows = Vec::new();
    for s in &resources.sequences {
        let channels: Vec<String> = (0..s.spec.steps.len())
            .map(|i| sequence_channel(&s.metadata.name, i))
            .collect();
        let check = sequence(s).map(|_| ());
        flows.push(flow_status(
            plan,
            ("Sequence", &s.metadata),
            check,
            &channels,
            &channels,
            channels.first().cloned(),
        ));
    }
    for p in &resources.parallels {
        let name = &p.metadata.name;
        let ingress = parallel_ingress(name);
        let branches: Vec<String> = (0..p.spec.branches.len())
            .map(|i| format!("{name}-kn-parallel-{i}"))
            .collect();
        let channels: Vec<String> = std::iter::once(ingress.clone())
            .chain(branches.clone())
            .collect();
        let subscriptions: Vec<String> = (0..branches.len())
            .flat_map(|i| {
                [
                    format!("{name}-kn-parallel-filter-{i}"),
                    branches[i].clone(),
                ]
            })
            .collect();
        let check = parallel(p).map(|_| ());
        flows.push(flow_status(
            plan,
            ("Parallel", &p.metadata),
            check,
            &channels,
            &subscriptions,
            Some(ingress),
        ));
    }
    plan.statuses.extend(flows);
}

fn flow_status(
    plan: &Plan,
    (kind, metadata): (&str, &Metadata),
    check: Result<(), String>,
    channels: &[String],
    subscriptions: &[String],
    address_of: Option<String>,
) -> Status {
    let ns = metadata.namespace();
    let mut status = Status::new(kind, ns, &metadata.name);
    if let Err(message) = check {
        return status.not_ready("InvalidSpec", message);
    }
    let find = |kind: &str, name: &str| {
        plan.statuses
            .iter()
            .find(|s| s.kind == kind && s.namespace == ns && s.name == name)
    };
    let entry = |kind: &str, name: &str| {
        let s = find(kind, name);
        let ready = s.map(|s| s.ready).unwrap_or(Ready::Unknown);
        let message = s.map(|s| s.message.clone()).unwrap_or_default();
        let api_version = match kind {
            "KafkaChannel" => "messaging.knative.dev/v1beta1",
            _ => "messaging.knative.dev/v1",
        };
        (
            json!({
                "channel": {"apiVersion": api_version, "kind": kind, "name": name, "namespace": ns},
                "ready": {"type": "Ready", "status": format!("{ready:?}"), "message": message},
            }),
            ready,
            message,
        )
    };
    let summed = |kind: &str, names: &[String], ty: &'static str, reason: &str| {
        let entries: Vec<_> = names.iter().map(|n| (n, entry(kind, n))).collect();
        let failing = entries
            .iter()
            .find(|(_, (_, ready, _))| *ready != Ready::True);
        let condition = match failing {
            None => Condition {
                ty,
                status: Ready::True,
                reason: String::new(),
                message: String::new(),
            },
            Some((name, (_, ready, message))) => Condition {
                ty,
                status: *ready,
                reason: reason.to_owned(),
                message: format!("{kind} {name} is not ready: {message}"),
            },
        };
        (
            entries
                .into_iter()
                .map(|(_, (j, _, _))| j)
                .collect::<Vec<_>>(),
            condition,
        )
    };
    let (channel_statuses, channels_ready) = summed(
        "KafkaChannel",
        channels,
        "ChannelsReady",
        "ChannelsNotReady",
    );
    let (subscription_statuses, subscriptions_ready) = summed(
        "Subscription",
        subscriptions,
        "SubscriptionsReady",
        "SubscriptionsNotReady",
    );
    let address = address_of.and_then(|c| find("KafkaChannel", &c)?.address.clone());
    let addressable = Condition {
        ty: "Addressable",
        status: if address.is_some() {
            Ready::True
        } else {
            Ready::False
        },
        reason: if address.is_some() {
            String::new()
        } else {
            "NoAddress".into()
        },
        message: String::new(),
    };
    // Knative's names: the subscriptions' entries name their channel key
    // `subscription`; a Parallel splits channels into ingress and branches.
    let subscription_statuses: Vec<_> = subscription_statuses
        .into_iter()
        .map(|mut e| {
            e["subscription"] = e["channel"].take();
            e.as_object_mut().map(|o| o.remove("channel"));
            e
        })
        .collect();
    status.flow = Some(match kind {
        "Sequence" => {
            json!({"channelStatuses": channel_statuses, "subscriptionStatuses": subscription_statuses})
        }
        _ => json!({
            "ingressChannelStatus": channel_statuses.first(),
            "branchStatuses": channel_statuses.iter().skip(1).enumerate().map(|(i, c)| json!({
                "filterSubscriptionStatus": subscription_statuses.get(2 * i),
                "subscriberSubscriptionStatus": subscription_statuses.get(2 * i + 1),
                "filterChannelStatus": c,
            })).collect::<Vec<_>>(),
        }),
    });
    status.address = address;
    status.conditions = vec![channels_ready, subscriptions_ready, addressable];
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.status != Ready::True)
        .cloned()
    {
        status.ready = c.status;
        status.reason = c.reason;
        status.message = c.message;
    }
    status
}
