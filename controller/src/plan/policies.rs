//! Sender identity in the plan (Knative's `authentication-oidc`): each
//! addressable's audience, and the EventPolicies that apply to it resolved
//! into the contract's token matchers and filters, as the reference's
//! control plane writes them; with none, the default authorization mode's
//! policy. EventPolicies get their `from` resolved and their conditions.

use ferry_proto::{
    token_matcher::Matcher, EventPolicy as ContractPolicy, Exact, Prefix, TokenMatcher,
};

use super::{
    output::Plan,
    settings::{AuthorizationMode, Settings},
    status::{Address, AppliedPolicy, Condition, Ready, Status},
    triggers::dialected_filter,
};
use crate::resources::{Destination, EventPolicy, Metadata, PolicyRef, Resources};

/// Knative's audience of an addressable: `<group>/<kind>/<ns>/<name>`,
/// lower case.
pub fn audience(group_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let group = group_version.split('/').next().unwrap_or_default();
    format!("{group}/{kind}/{namespace}/{name}").to_lowercase()
}

/// The subject of the OIDC identity Knative gives an object: its service
/// account `<name>-oidc-<group>-<kind>`, lower case.
pub fn identity(reference: &PolicyRef, namespace: &str) -> String {
    let group = reference.api_version.split('/').next().unwrap_or_default();
    let ns = reference.namespace.as_deref().unwrap_or(namespace);
    format!(
        "system:serviceaccount:{ns}:{}",
        format!("{}-oidc-{group}-{}", reference.name, reference.kind).to_lowercase()
    )
}

/// The audience of the token a destination requires: its own `audience`,
/// or with sender identity on, the audience of the Broker, KafkaSink or
/// channel it names.
pub fn of_destination(destination: &Destination, namespace: &str, settings: &Settings) -> String {
    if let Some(audience) = destination.audience.as_ref().filter(|a| !a.is_empty()) {
        return audience.clone();
    }
    match (&destination.reference, settings.oidc) {
        (Some(r), Some(_))
            if matches!(
                r.kind.as_str(),
                "Broker" | "KafkaSink" | "KafkaChannel" | "Channel"
            ) =>
        {
            let kind = if r.kind == "Channel" {
                "KafkaChannel"
            } else {
                &r.kind
            };
            let group = if r.kind == "Channel" {
                "messaging.knative.dev"
            } else {
                &r.api_version
            };
            audience(
                group,
                kind,
                r.namespace.as_deref().unwrap_or(namespace),
                &r.name,
            )
        }
        _ => String::new(),
    }
}

/// The service account whose tokens an egress's deliveries carry, as
/// Knative names a Trigger's or Subscription's OIDC identity; empty with
/// sender identity off.
pub fn sender_account(settings: &Settings, group: &str, kind: &str, name: &str) -> String {
    match settings.oidc {
        Some(_) => format!("{name}-oidc-{group}-{kind}").to_lowercase(),
        None => String::new(),
    }
}

pub(super) fn apply(resources: &Resources, settings: &Settings, plan: &mut Plan) {
    let Some(mode) = settings.oidc else {
        for policy in &resources.event_policies {
            let status = Status::new(
                "EventPolicy",
                policy.metadata.namespace(),
                &policy.metadata.name,
            );
            let mut status = status.not_ready(
                "OIDCAuthenticationDisabled",
                "authentication-oidc is off: EventPolicies have no effect",
            );
            status.conditions = vec![Condition::new(
                "AuthenticationEnabled",
                Ready::False,
                "OIDCAuthenticationDisabled",
                "authentication-oidc is off",
            )];
            plan.statuses.push(status);
        }
        return;
    };
    let resolved: Vec<(&EventPolicy, Result<ContractPolicy, String>)> = resources
        .event_policies
        .iter()
        .map(|p| (p, resolve(p)))
        .collect();
    for (policy, result) in &resolved {
        plan.statuses.push(policy_status(policy, result));
    }
    for resource in &mut plan.resources {
        let (Some(reference), Some(ingress)) = (&resource.reference, &mut resource.ingress) else {
            continue;
        };
        let (ns, name, kind) = (&reference.namespace, &reference.name, &reference.kind);
        ingress.audience = audience(&reference.group_version, kind, ns, name);
        let applying: Vec<_> = resolved
            .iter()
            .filter(|(p, r)| r.is_ok() && applies_to(p, resources, kind, ns, name))
            .collect();
        ingress.event_policies = applying
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().cloned())
            .collect();
        if ingress.event_policies.is_empty() {
            ingress.event_policies = default_policy(mode, ns);
        }
        let status = plan
            .statuses
            .iter_mut()
            .find(|s| is_kind(&s.kind, kind) && &s.namespace == ns && &s.name == name);
        if let Some(status) = status {
            with_audience(status, &ingress.audience);
            status.policies = applying
                .iter()
                .map(|(p, _)| AppliedPolicy {
                    name: p.metadata.name.clone(),
                    api_version: "eventing.knative.dev/v1alpha1".into(),
                })
                .collect();
            status
                .conditions
                .push(Condition::new("EventPoliciesReady", Ready::True, "", ""));
        }
    }
}

/// Whether a status is of the contract reference's kind: a
/// `messaging.knative.dev/v1` Channel is served as a KafkaChannel.
fn is_kind(status_kind: &str, reference_kind: &str) -> bool {
    status_kind == reference_kind || (reference_kind == "KafkaChannel" && status_kind == "Channel")
}

fn with_audience(status: &mut Status, audience: &str) {
    if status.addresses.is_empty() {
        if let Some(url) = &status.address {
            status.addresses.push(Address {
                name: "http".into(),
                url: url.clone(),
                ca_certs: None,
                audience: None,
            });
        }
    }
    for address in &mut status.addresses {
        address.audience = Some(audience.to_owned());
    }
}

/// The policy of `allow-all` and `allow-same-namespace`; `deny-all`:
/// none, so no one.
fn default_policy(mode: AuthorizationMode, namespace: &str) -> Vec<ContractPolicy> {
    let prefix = match mode {
        AuthorizationMode::AllowAll => String::new(),
        AuthorizationMode::AllowSameNamespace => format!("system:serviceaccount:{namespace}:"),
        AuthorizationMode::DenyAll => return Vec::new(),
    };
    vec![ContractPolicy {
        token_matchers: vec![TokenMatcher {
            matcher: Some(Matcher::Prefix(Prefix {
                attributes: [("sub".to_owned(), prefix)].into(),
            })),
        }],
        filters: Vec::new(),
    }]
}

/// Whether a policy names this addressable: by `ref`, by a `selector` of
/// its labels, or (no `to`) as one of its namespace.
fn applies_to(
    policy: &EventPolicy,
    resources: &Resources,
    kind: &str,
    ns: &str,
    name: &str,
) -> bool {
    if policy.metadata.namespace() != ns {
        return false;
    }
    if policy.spec.to.is_empty() {
        return true;
    }
    policy.spec.to.iter().any(|to| {
        if let Some(r) = &to.reference {
            return r.kind == kind && r.name == name;
        }
        match &to.selector {
            Some(s) if s.kind == kind => {
                labels_of(resources, kind, ns, name).is_some_and(|labels| {
                    s.match_labels
                        .iter()
                        .all(|(k, v)| labels.labels.get(k) == Some(v))
                })
            }
            _ => false,
        }
    })
}

fn labels_of<'a>(
    resources: &'a Resources,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<&'a Metadata> {
    let is = |m: &&Metadata| m.namespace() == ns && m.name == name;
    match kind {
        "Broker" => resources.brokers.iter().map(|b| &b.metadata).find(is),
        "KafkaSink" => resources.kafka_sinks.iter().map(|s| &s.metadata).find(is),
        _ => resources.channels.iter().map(|c| &c.metadata).find(is),
    }
}

/// A policy's `from` as token matchers, and its filters.
fn resolve(policy: &EventPolicy) -> Result<ContractPolicy, String> {
    let subjects = subjects(policy)?;
    let token_matchers = subjects
        .iter()
        .map(|sub| TokenMatcher {
            matcher: Some(match sub.strip_suffix('*') {
                Some(prefix) => Matcher::Prefix(Prefix {
                    attributes: [("sub".to_owned(), prefix.to_owned())].into(),
                }),
                None => Matcher::Exact(Exact {
                    attributes: [("sub".to_owned(), sub.clone())].into(),
                }),
            }),
        })
        .collect();
    let filters = policy
        .spec
        .filters
        .iter()
        .map(dialected_filter)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|(_, m)| format!("spec.filters: {m}"))?;
    Ok(ContractPolicy {
        token_matchers,
        filters,
    })
}

/// `status.from`: each sender's subject.
fn subjects(policy: &EventPolicy) -> Result<Vec<String>, String> {
    let ns = policy.metadata.namespace();
    policy
        .spec
        .from
        .iter()
        .map(|from| match (&from.reference, &from.sub) {
            (Some(r), None) if !r.name.is_empty() && !r.kind.is_empty() => Ok(identity(r, ns)),
            (None, Some(sub)) if !sub.is_empty() => Ok(sub.clone()),
            _ => Err(
                "spec.from: each entry needs exactly one of ref (with kind and name) and sub"
                    .into(),
            ),
        })
        .collect()
}

fn policy_status(policy: &EventPolicy, result: &Result<ContractPolicy, String>) -> Status {
    let status = Status::new(
        "EventPolicy",
        policy.metadata.namespace(),
        &policy.metadata.name,
    );
    let enabled = Condition::new("AuthenticationEnabled", Ready::True, "", "");
    match result {
        Ok(_) => {
            let mut status = status;
            status.from = subjects(policy).unwrap_or_default();
            status.conditions = vec![
                enabled,
                Condition::new("SubjectsResolved", Ready::True, "", ""),
            ];
            status
        }
        Err(why) => {
            let mut status = status.not_ready("SubjectsNotResolved", why.clone());
            status.conditions = vec![
                enabled,
                Condition::new("SubjectsResolved", Ready::False, "SubjectsNotResolved", why),
            ];
            status
        }
    }
}
