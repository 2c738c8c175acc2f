//! Sender identity through an emulated Kubernetes API: Knative's
//! `config-features` turns `authentication-oidc` on; a Broker gets its
//! audience in its addresses and the contract, and an EventPolicy's
//! senders reach the contract as token matchers, with both statuses
//! written as Knative writes them.

use ferry_harness::{
    kube::{controller, has_condition, published_contract, KubeApi},
    process::KubeEmulator,
    unique,
};
use ferry_proto::token_matcher::Matcher;
use serde_json::json;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[tokio::test]
async fn event_policies_and_audiences_through_the_api() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    k.features(json!({"authentication-oidc": "enabled", "default-authorization-mode": "deny-all"}))
        .await;
    let brokers = format!("/apis/eventing.knative.dev/v1/namespaces/{ns}/brokers");
    k.create(
        &brokers,
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": ns, "uid": "broker-uid",
                            "annotations": {"eventing.knative.dev/broker.class": "Kafka"}}}),
    )
    .await;
    let policies = format!("/apis/eventing.knative.dev/v1alpha1/namespaces/{ns}/eventpolicies");
    k.create(
        &policies,
        json!({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventPolicy",
               "metadata": {"name": "senders", "namespace": ns},
               "spec": {"to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}],
                        "from": [{"sub": format!("system:serviceaccount:{ns}:app")}]}}),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-1", &[]);

    let audience = format!("eventing.knative.dev/broker/{ns}/b");
    let broker = k
        .wait_for(&format!("{brokers}/b"), "the broker Ready", |b| {
            has_condition(&b["status"], "Ready", "True")
        })
        .await;
    let status = &broker["status"];
    assert_eq!(status["address"]["audience"], audience.as_str(), "{status}");
    assert_eq!(status["policies"][0]["name"], "senders", "{status}");
    assert!(
        has_condition(status, "EventPoliciesReady", "True"),
        "{status}"
    );
    let policy = k
        .wait_for(&format!("{policies}/senders"), "the policy Ready", |p| {
            has_condition(&p["status"], "Ready", "True")
        })
        .await;
    assert_eq!(
        policy["status"]["from"][0],
        format!("system:serviceaccount:{ns}:app")
    );

    let contract = published_contract(&k).await;
    let ingress = contract.resources[0].ingress.as_ref().unwrap();
    assert_eq!(ingress.audience, audience);
    let subjects: Vec<_> = ingress
        .event_policies
        .iter()
        .flat_map(|p| &p.token_matchers)
        .map(|m| match m.matcher.as_ref().unwrap() {
            Matcher::Exact(e) => e.attributes["sub"].clone(),
            Matcher::Prefix(p) => format!("{}*", p.attributes["sub"]),
        })
        .collect();
    assert_eq!(subjects, [format!("system:serviceaccount:{ns}:app")]);
}
