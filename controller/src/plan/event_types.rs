//! The EventType registry's part of a plan: which addressables make
//! EventTypes of what they carry (the contract's feature flag), each
//! EventType's status (`ReferenceExists` → `Ready`), and the pairs
//! sources declare in their `ceAttributes` for the addressables they
//! send to.

use ferry_proto::{FeatureFlags, Reference};

use super::{
    output::{Declared, Plan},
    settings::Settings,
    status::{Condition, EventTypeSummary, Ready, Status},
};
use crate::resources::{Destination, EventType, KReference, Metadata, Resources};

/// Ferry's per-addressable switch, over `--eventtype-autocreate` and
/// Knative's `eventtype-auto-create` feature: `enabled` or `disabled`.
pub const AUTOCREATE_ANNOTATION: &str = "ferry.dev/eventtype-auto-create";

/// The contract's feature flags of a Broker or Channel.
pub(super) fn feature_flags(metadata: &Metadata, settings: &Settings) -> Option<FeatureFlags> {
    let on = match metadata
        .annotations
        .get(AUTOCREATE_ANNOTATION)
        .map(String::as_str)
    {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => settings.eventtype_autocreate,
    };
    on.then_some(FeatureFlags {
        enable_event_type_autocreate: true,
    })
}

/// What Knative's v1beta3 EventType must say its events carry.
const REQUIRED: [&str; 4] = ["type", "source", "specversion", "id"];

pub(super) fn plan_event_types(resources: &Resources, plan: &mut Plan) {
    let mut event_types: Vec<&EventType> = resources.event_types.iter().collect();
    event_types.sort_by_key(|e| (e.metadata.namespace().to_owned(), e.metadata.name.clone()));
    for event_type in event_types {
        plan.statuses.push(status(event_type, resources));
    }
}

fn status(event_type: &EventType, resources: &Resources) -> Status {
    let (ns, name) = (
        event_type.metadata.namespace(),
        event_type.metadata.name.as_str(),
    );
    let mut status = Status::new("EventType", ns, name);
    status.event_type = Some(EventTypeSummary {
        ty: event_type.attribute("type").map(str::to_owned),
        source: event_type.attribute("source").map(str::to_owned),
        schema: event_type.attribute("dataschema").map(str::to_owned),
        reference: event_type.reference.as_ref().map(|r| {
            let ns = r.namespace.as_deref().unwrap_or(ns);
            format!("{} {ns}/{}", r.kind, r.name)
        }),
        description: event_type.description.clone(),
        created: event_type.metadata.created.clone(),
    });
    let (exists, reason, message) = match &event_type.reference {
        None => (
            Ready::True,
            "ReferenceNotSet",
            "spec.reference is not set".to_owned(),
        ),
        Some(r) => match exists(r, ns, resources) {
            Some(true) => (Ready::True, "", String::new()),
            Some(false) => (
                Ready::False,
                "ResourceDoesNotExist",
                "Resource in spec.reference does not exist".to_owned(),
            ),
            None => (
                Ready::Unknown,
                "ReferenceNotChecked",
                format!("Ferry does not track {} of {}", r.kind, r.api_version),
            ),
        },
    };
    status.conditions.push(Condition {
        ty: "ReferenceExists",
        status: exists,
        reason: reason.to_owned(),
        message: message.clone(),
    });
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|a| !event_type.attributes.iter().any(|e| e.name == *a))
        .collect();
    if event_type.version == "v1beta3" && !missing.is_empty() {
        let message = format!("spec.attributes: missing field(s): {}", missing.join(", "));
        return status.not_ready("InvalidSpec", message);
    }
    if event_type.spec_changed {
        let message = "spec: an EventType's spec is immutable; this one is kept as first seen (delete it and create it again to change it)";
        return status.not_ready("InvalidSpec", message);
    }
    match exists {
        Ready::True => status,
        Ready::False => status.not_ready(reason, message),
        Ready::Unknown => Status {
            ready: Ready::Unknown,
            reason: reason.to_owned(),
            message,
            ..status
        },
    }
}

/// Whether the addressable a reference names exists, among the kinds
/// Ferry reads; `None` for other kinds.
fn exists(r: &KReference, namespace: &str, resources: &Resources) -> Option<bool> {
    let ns = r.namespace.as_deref().unwrap_or(namespace);
    let named = |m: &Metadata| m.namespace() == ns && m.name == r.name;
    Some(match r.kind.as_str() {
        "Broker" => resources.brokers.iter().any(|b| named(&b.metadata)),
        "KafkaChannel" | "Channel" => resources
            .channels
            .iter()
            .any(|c| c.kind == r.kind && named(&c.metadata)),
        "PingSource" => resources.ping_sources.iter().any(|s| named(&s.metadata)),
        "ApiServerSource" => resources
            .apiserver_sources
            .iter()
            .any(|s| named(&s.metadata)),
        "ContainerSource" => resources
            .container_sources
            .iter()
            .any(|s| named(&s.metadata)),
        _ => return None,
    })
}

/// The pairs sources declare (their statuses' `ceAttributes`) for sinks
/// that are Brokers or Channels making EventTypes; run after sources are
/// planned.
pub(super) fn declared_by_sources(resources: &Resources, settings: &Settings, plan: &mut Plan) {
    let sources = resources
        .ping_sources
        .iter()
        .map(|s| ("PingSource", &s.metadata, &s.spec.sink))
        .chain(
            resources
                .apiserver_sources
                .iter()
                .map(|s| ("ApiServerSource", &s.metadata, &s.spec.sink)),
        )
        .chain(
            resources
                .container_sources
                .iter()
                .map(|s| ("ContainerSource", &s.metadata, &s.spec.sink)),
        );
    let mut declared = Vec::new();
    for (kind, metadata, sink) in sources {
        let Some(addressable) = addressable(sink, metadata.namespace(), resources, settings) else {
            continue;
        };
        let Some(status) = plan.statuses.iter().find(|s| {
            s.kind == kind && s.namespace == metadata.namespace() && s.name == metadata.name
        }) else {
            continue;
        };
        let owner = Reference {
            uuid: metadata.uid(kind),
            namespace: metadata.namespace().to_owned(),
            name: metadata.name.clone(),
            kind: kind.to_owned(),
            group_version: "sources.knative.dev/v1".to_owned(),
            ..Default::default()
        };
        for attribute in &status.ce_attributes {
            declared.push(Declared {
                addressable: addressable.clone(),
                owner: owner.clone(),
                ty: attribute.ty.clone(),
                source: attribute.source.clone(),
            });
        }
    }
    plan.declared_event_types = declared;
}

/// The Broker or Channel a sink names, when it makes EventTypes.
fn addressable(
    sink: &Destination,
    namespace: &str,
    resources: &Resources,
    settings: &Settings,
) -> Option<Reference> {
    let r = sink.reference.as_ref()?;
    let ns = r.namespace.as_deref().unwrap_or(namespace);
    let (metadata, kind, group_version) = match r.kind.as_str() {
        "Broker" => {
            let b = resources
                .brokers
                .iter()
                .find(|b| b.metadata.namespace() == ns && b.metadata.name == r.name)?;
            (&b.metadata, "Broker", "eventing.knative.dev/v1")
        }
        "KafkaChannel" | "Channel" => {
            let c = resources.channels.iter().find(|c| {
                c.kind == r.kind && c.metadata.namespace() == ns && c.metadata.name == r.name
            })?;
            let gv = match c.kind {
                "KafkaChannel" => "messaging.knative.dev/v1beta1",
                _ => "messaging.knative.dev/v1",
            };
            (&c.metadata, c.kind, gv)
        }
        _ => return None,
    };
    feature_flags(metadata, settings)?;
    Some(Reference {
        uuid: metadata.uid(kind),
        namespace: ns.to_owned(),
        name: r.name.clone(),
        kind: kind.to_owned(),
        group_version: group_version.to_owned(),
        ..Default::default()
    })
}
