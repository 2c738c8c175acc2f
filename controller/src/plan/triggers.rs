//! Triggers: each one's egress on its broker (subscriber, filters, delivery,
//! order) and its consumer group.

use std::collections::BTreeMap;

use ferry_proto::{
    dialected_filter::Filter as Dialect, egress::ReplyStrategy, DeliveryOrder, DialectedFilter,
    Egress, Empty,
};

use super::{
    addresses::{reference, resolve},
    brokers::{is_ours, PlannedBroker},
    delivery::{egress_delivery, ferry_annotations, NotReady},
    output::Plan,
    policies,
    settings::Settings,
    status::Status,
};
use crate::resources::{Resources, SubscriptionsApiFilter, Trigger};

pub fn consumer_group(namespace: &str, name: &str) -> String {
    format!("knative-trigger-{namespace}-{name}")
}

/// Every trigger: its egress onto its broker's resource, or why not, and
/// its consumer group (kept while the trigger exists, ready or not).
pub(super) fn plan_triggers(
    resources: &Resources,
    settings: &Settings,
    brokers: &mut BTreeMap<(String, String), PlannedBroker>,
    plan: &mut Plan,
) {
    let mut triggers: Vec<&Trigger> = resources.triggers.iter().collect();
    triggers.sort_by_key(|t| (t.metadata.namespace().to_owned(), t.metadata.name.clone()));
    for trigger in triggers {
        let ns = trigger.metadata.namespace();
        let status = Status::new("Trigger", ns, &trigger.metadata.name);
        let broker_key = (ns.to_owned(), trigger.spec.broker.clone());
        let other_class = resources.brokers.iter().any(|b| {
            b.metadata.namespace() == ns
                && b.metadata.name == trigger.spec.broker
                && !is_ours(b, settings)
        });
        if other_class {
            continue; // another implementation's trigger
        }
        let Some(broker) = brokers.get_mut(&broker_key) else {
            plan.statuses.push(status.not_ready(
                "BrokerDoesNotExist",
                format!("broker '{}' does not exist", trigger.spec.broker),
            ));
            continue;
        };
        plan.groups.insert((
            broker.cluster.clone(),
            consumer_group(ns, &trigger.metadata.name),
        ));
        if !broker.ready {
            plan.statuses.push(status.not_ready(
                "BrokerNotReady",
                format!("broker '{}' is not ready", trigger.spec.broker),
            ));
            continue;
        }
        let mut status = status;
        match plan_trigger(trigger, settings, &mut status) {
            Ok(egress) => {
                broker.resource.egresses.push(egress);
                plan.statuses.push(status);
            }
            Err((reason, message)) => plan.statuses.push(status.not_ready(reason, message)),
        }
    }
}

fn plan_trigger(
    trigger: &Trigger,
    settings: &Settings,
    status: &mut Status,
) -> Result<Egress, NotReady> {
    let ns = trigger.metadata.namespace();
    let destination = resolve(&trigger.spec.subscriber, ns, settings)
        .map_err(|m| ("SubscriberResolveFailed", m))?;
    status.subscriber_uri = Some(destination.clone());
    let dialected = trigger
        .spec
        .filters
        .iter()
        .map(dialected_filter)
        .collect::<Result<Vec<_>, _>>()?;
    let legacy = trigger.spec.filter.as_ref().map(|f| ferry_proto::Filter {
        attributes: f
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    if let Some(bad) = trigger
        .spec
        .filter
        .iter()
        .flat_map(|f| f.attributes.keys())
        .find(|k| !ferry_event::is_valid_name(k))
    {
        return Err((
            "FilterInvalid",
            format!("'{bad}' is not a CloudEvents attribute name"),
        ));
    }
    let (egress_config, order) = egress_delivery(
        trigger.spec.delivery.as_ref(),
        &trigger.metadata,
        DeliveryOrder::Unordered,
        settings,
        status,
    )?;
    let egress = Egress {
        consumer_group: consumer_group(ns, &trigger.metadata.name),
        destination,
        destination_ca_certs: trigger.spec.subscriber.ca_certs.clone().unwrap_or_default(),
        destination_audience: policies::of_destination(&trigger.spec.subscriber, ns, settings),
        oidc_service_account_name: policies::sender_account(
            settings,
            "eventing.knative.dev",
            "Trigger",
            &trigger.metadata.name,
        ),
        reply_strategy: Some(ReplyStrategy::ReplyToOriginalTopic(Empty {})),
        filter: legacy,
        uid: trigger.metadata.uid("Trigger"),
        egress_config,
        delivery_order: order as i32,
        reference: Some(reference(&trigger.metadata, "Trigger")),
        dialected_filter: dialected,
        ..ferry_annotations(&trigger.metadata, status)?
    };
    Ok(egress)
}

/// One `spec.filters` entry: exactly one dialect, with valid attribute names.
pub(super) fn dialected_filter(
    filter: &SubscriptionsApiFilter,
) -> Result<DialectedFilter, (&'static str, String)> {
    let invalid = |m: String| ("FilterInvalid", m);
    let attributes = |dialect: &str, map: &BTreeMap<String, String>| {
        if map.len() != 1 {
            return Err(invalid(format!(
                "'{dialect}' must have exactly one attribute, has {}",
                map.len()
            )));
        }
        match map.keys().find(|k| !ferry_event::is_valid_name(k)) {
            Some(bad) => Err(invalid(format!(
                "'{bad}' is not a CloudEvents attribute name"
            ))),
            None => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        }
    };
    let set = [
        !filter.exact.is_empty(),
        !filter.prefix.is_empty(),
        !filter.suffix.is_empty(),
        !filter.all.is_empty(),
        !filter.any.is_empty(),
        filter.not.is_some(),
        filter.cesql.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(invalid(format!("a filter must set exactly one of exact, prefix, suffix, all, any, not, cesql (sets {set})")));
    }
    let dialect = if !filter.exact.is_empty() {
        Dialect::Exact(ferry_proto::Exact {
            attributes: attributes("exact", &filter.exact)?,
        })
    } else if !filter.prefix.is_empty() {
        Dialect::Prefix(ferry_proto::Prefix {
            attributes: attributes("prefix", &filter.prefix)?,
        })
    } else if !filter.suffix.is_empty() {
        Dialect::Suffix(ferry_proto::Suffix {
            attributes: attributes("suffix", &filter.suffix)?,
        })
    } else if !filter.all.is_empty() {
        Dialect::All(ferry_proto::All {
            filters: filter
                .all
                .iter()
                .map(dialected_filter)
                .collect::<Result<_, _>>()?,
        })
    } else if !filter.any.is_empty() {
        Dialect::Any(ferry_proto::Any {
            filters: filter
                .any
                .iter()
                .map(dialected_filter)
                .collect::<Result<_, _>>()?,
        })
    } else if let Some(not) = &filter.not {
        Dialect::Not(Box::new(ferry_proto::Not {
            filter: Some(Box::new(dialected_filter(not)?)),
        }))
    } else {
        let expression = filter.cesql.clone().unwrap_or_default();
        // Checked here, so a bad expression is the trigger's status, not a
        // surprise in the data plane.
        if let Err(error) = ferry_cesql::Expression::parse(&expression) {
            return Err(("FilterInvalid", format!("cesql '{expression}': {error}")));
        }
        Dialect::Cesql(ferry_proto::Cesql { expression })
    };
    Ok(DialectedFilter {
        filter: Some(dialect),
    })
}
