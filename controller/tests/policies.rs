//! Sender identity in the plan: audiences of addressables, EventPolicies
//! resolved into the contract's token matchers and filters (by `ref`, by
//! label selector, for a whole namespace), the default authorization
//! mode's policy where none applies, and the policies' statuses.

mod support;

use ferry_controller::{
    plan::{plan, AuthorizationMode, Plan, Ready, Settings, Status, TopicHealth},
    resources::Resources,
};
use ferry_proto::{token_matcher::Matcher, EventPolicy};

fn settings(oidc: Option<AuthorizationMode>) -> Settings {
    Settings {
        oidc,
        ..support::settings()
    }
}

const YAML: &str = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b1, namespace: ns, labels: {team: a}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b2, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  broker: b1
  subscriber: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b2}}
  delivery:
    deadLetterSink: {uri: 'http://dls.example', audience: dls-audience}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: s, namespace: ns}
spec: {topic: t, numPartitions: 1, replicationFactor: 1}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {name: p1, namespace: ns}
spec:
  to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b1}}]
  from: [{sub: 'system:serviceaccount:ns:x'}, {sub: 'system:serviceaccount:other:*'}]
  filters: [{exact: {type: t}}]
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {name: p2, namespace: ns}
spec:
  to: [{selector: {apiVersion: eventing.knative.dev/v1, kind: Broker, matchLabels: {team: a}}}]
  from: [{ref: {apiVersion: sources.knative.dev/v1, kind: PingSource, name: ping}}]
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {name: broken, namespace: ns}
spec:
  to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b2}}]
  from: [{}]
";

fn run(oidc: Option<AuthorizationMode>) -> Plan {
    let mut resources = Resources::default();
    resources.add_yaml("policies.yaml", YAML);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    plan(&resources, &settings(oidc), &TopicHealth::default())
}

fn policies<'a>(plan: &'a Plan, name: &str) -> (&'a str, &'a [EventPolicy]) {
    let resource = plan
        .resources
        .iter()
        .find(|r| r.reference.as_ref().is_some_and(|re| re.name == name))
        .unwrap_or_else(|| panic!("{name} in {:?}", plan.resources));
    let ingress = resource.ingress.as_ref().unwrap();
    (&ingress.audience, &ingress.event_policies)
}

fn status<'a>(plan: &'a Plan, kind: &str, name: &str) -> &'a Status {
    plan.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("{kind} {name}"))
}

fn subjects(policy: &EventPolicy) -> Vec<String> {
    policy
        .token_matchers
        .iter()
        .map(|m| match m.matcher.as_ref().unwrap() {
            Matcher::Exact(e) => e.attributes["sub"].clone(),
            Matcher::Prefix(p) => format!("{}*", p.attributes["sub"]),
        })
        .collect()
}

#[test]
fn policies_become_each_addressables_token_matchers_and_filters() {
    let plan = run(Some(AuthorizationMode::AllowSameNamespace));
    let (audience, b1) = policies(&plan, "b1");
    assert_eq!(audience, "eventing.knative.dev/broker/ns/b1");
    assert_eq!(b1.len(), 2, "by ref and by label: {b1:?}");
    assert_eq!(
        subjects(&b1[0]),
        [
            "system:serviceaccount:ns:x",
            "system:serviceaccount:other:*"
        ]
    );
    assert_eq!(b1[0].filters.len(), 1);
    assert_eq!(
        subjects(&b1[1]),
        ["system:serviceaccount:ns:ping-oidc-sources.knative.dev-pingsource"],
        "a ref is the sender's OIDC service account"
    );
    // b2's only policy is broken: the default mode applies.
    let (_, b2) = policies(&plan, "b2");
    assert_eq!(
        b2.iter().map(subjects).collect::<Vec<_>>(),
        [["system:serviceaccount:ns:*"]]
    );
    let (audience, _) = policies(&plan, "s");
    assert_eq!(audience, "eventing.knative.dev/kafkasink/ns/s");

    let broker = status(&plan, "Broker", "b1");
    assert_eq!(
        broker.addresses[0].audience.as_deref(),
        Some("eventing.knative.dev/broker/ns/b1")
    );
    let applied: Vec<_> = broker.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(applied, ["p1", "p2"]);
    assert!(broker
        .conditions
        .iter()
        .any(|c| c.ty == "EventPoliciesReady"));

    let p1 = status(&plan, "EventPolicy", "p1");
    assert_eq!(p1.ready, Ready::True, "{p1:?}");
    assert_eq!(
        p1.from,
        [
            "system:serviceaccount:ns:x",
            "system:serviceaccount:other:*"
        ]
    );
    let broken = status(&plan, "EventPolicy", "broken");
    assert_eq!(
        (broken.ready, broken.reason.as_str()),
        (Ready::False, "SubjectsNotResolved")
    );
}

#[test]
fn deliveries_carry_the_senders_account_and_the_destinations_audience() {
    let trigger = |plan: &Plan| {
        plan.resources
            .iter()
            .flat_map(|r| &r.egresses)
            .find(|e| e.reference.as_ref().is_some_and(|re| re.name == "t"))
            .cloned()
            .expect("the trigger")
    };
    let on = trigger(&run(Some(AuthorizationMode::AllowAll)));
    assert_eq!(on.destination_audience, "eventing.knative.dev/broker/ns/b2");
    assert_eq!(
        on.oidc_service_account_name,
        "t-oidc-eventing.knative.dev-trigger"
    );
    assert_eq!(
        on.egress_config.unwrap().dead_letter_audience,
        "dls-audience"
    );
    let off = trigger(&run(None));
    assert!(off.destination_audience.is_empty() && off.oidc_service_account_name.is_empty());
    assert_eq!(
        off.egress_config.unwrap().dead_letter_audience,
        "dls-audience",
        "an audience the destination names is its own"
    );
}

#[test]
fn the_default_mode_decides_where_no_policy_applies() {
    let deny = run(Some(AuthorizationMode::DenyAll));
    assert!(
        policies(&deny, "b2").1.is_empty(),
        "deny-all: no policy, no one"
    );
    let all = run(Some(AuthorizationMode::AllowAll));
    assert_eq!(
        policies(&all, "b2")
            .1
            .iter()
            .map(subjects)
            .collect::<Vec<_>>(),
        [["*"]]
    );
}

#[test]
fn without_oidc_there_are_no_audiences_and_policies_say_so() {
    let plan = run(None);
    let (audience, policies) = policies(&plan, "b1");
    assert!(audience.is_empty() && policies.is_empty());
    let p1 = status(&plan, "EventPolicy", "p1");
    assert_eq!(
        (p1.ready, p1.reason.as_str()),
        (Ready::False, "OIDCAuthenticationDisabled")
    );
}

#[test]
fn knatives_config_features_override_the_flags() {
    let mut resources = Resources::default();
    resources.add_yaml("policies.yaml", YAML);
    resources.features = [
        ("authentication-oidc".to_owned(), "enabled".to_owned()),
        (
            "default-authorization-mode".to_owned(),
            "deny-all".to_owned(),
        ),
        ("transport-encryption".to_owned(), "strict".to_owned()),
    ]
    .into();
    let plan = plan(&resources, &settings(None), &TopicHealth::default());
    assert!(policies(&plan, "b2").1.is_empty(), "deny-all");
    let broker = status(&plan, "Broker", "b2");
    assert_eq!(broker.address.as_deref(), Some("https://ingress/ns/b2"));
    assert_eq!(broker.addresses.len(), 1, "strict: HTTPS only");
    assert_eq!(
        broker.addresses[0].audience.as_deref(),
        Some("eventing.knative.dev/broker/ns/b2")
    );
}
