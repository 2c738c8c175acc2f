//! `ferry controller --kube` against an emulated Kubernetes API: Brokers
//! and Triggers created through the API get their status, the contract
//! ConfigMap appears, topics are created, and one replica holds the Lease.

use std::time::Duration;

use ferry_harness::{
    bootstrap, eventually,
    http::{self, HttpClient},
    kafka::topic_exists,
    process::{FerryProcess, KubeEmulator},
    unique,
};
use serde_json::{json, Value};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

async fn create(client: &HttpClient, url: &str, object: Value) {
    let answer = http::post(
        client,
        url,
        &[("content-type", "application/json")],
        object.to_string(),
    )
    .await;
    assert!(
        answer.status.is_success(),
        "creating at {url}: {} {}",
        answer.status,
        answer.body
    );
}

async fn get(client: &HttpClient, url: &str) -> Option<Value> {
    let answer = http::request(client, ::http::Method::GET, url, &[], "").await;
    answer
        .status
        .is_success()
        .then(|| serde_json::from_str(&answer.body).expect("JSON"))
}

/// Subscription `sub` (uid `sub-uid`) of KafkaChannel `ch` to a URI.
fn subscription(ns: &str) -> Value {
    json!({"apiVersion": "messaging.knative.dev/v1", "kind": "Subscription",
           "metadata": {"name": "sub", "namespace": ns, "uid": "sub-uid"},
           "spec": {"channel": {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel", "name": "ch"},
                    "subscriber": {"uri": "http://sink.test"}}})
}

/// Waits until the object at `url` is as `accept` wants it.
async fn wait_for(
    client: &HttpClient,
    url: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let accept = &accept;
    eventually(what, WAIT, || async move {
        get(client, url).await.filter(|object| accept(object))
    })
    .await
}

/// The contract in the ConfigMap the data plane mounts, once it names
/// something.
async fn published_contract(client: &HttpClient, api: &KubeEmulator) -> ferry_proto::Contract {
    let configmap = format!(
        "{}/api/v1/namespaces/knative-eventing/configmaps/kafka-broker-brokers-triggers",
        api.url
    );
    eventually("the contract ConfigMap", WAIT, || {
        let (client, url) = (client.clone(), configmap.clone());
        async move {
            let data = get(&client, &url).await?["data"]["data"]
                .as_str()?
                .to_owned();
            let contract: ferry_proto::Contract = serde_json::from_str(&data).ok()?;
            (!contract.resources.is_empty()).then_some(contract)
        }
    })
    .await
}

/// `ferry controller --kube` against the emulator, as replica `pod`.
fn controller(api: &KubeEmulator, state: &std::path::Path, pod: &str) -> FerryProcess {
    let kubeconfig = api.kubeconfig();
    FerryProcess::spawn(
        FERRY,
        &[
            "controller",
            "--admin",
            "127.0.0.1:0",
            "--kube",
            "--namespace",
            "knative-eventing",
            "--state-dir",
            state.to_str().unwrap(),
            "--bootstrap-servers",
            &bootstrap(),
            "--default-partitions",
            "2",
            "--default-replication-factor",
            "1",
            "--ingress-url",
            "http://ingress.test",
            "--resync-ms",
            "300",
        ],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", pod),
        ],
    )
}

#[tokio::test]
async fn brokers_and_triggers_through_the_api() {
    let api = KubeEmulator::start();
    let client = http::client();
    let ns = unique("ns");
    let eventing = format!("{}/apis/eventing.knative.dev/v1/namespaces/{ns}", api.url);
    create(
        &client,
        &format!("{eventing}/brokers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": ns, "generation": 1,
                            "annotations": {"eventing.knative.dev/broker.class": "Kafka"}}, "spec": {}}),
    )
    .await;
    create(
        &client,
        &format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": ns},
               "spec": {"broker": "b", "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}}}),
    )
    .await;
    create(
        &client,
        &format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "orphan", "namespace": ns},
               "spec": {"broker": "missing", "subscriber": {"uri": "http://s"}}}),
    )
    .await;

    let messaging = format!("{}/apis/messaging.knative.dev", api.url);
    create(
        &client,
        &format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels"),
        json!({"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel",
               "metadata": {"name": "ch", "namespace": ns}, "spec": {"numPartitions": 2}}),
    )
    .await;
    create(
        &client,
        &format!("{messaging}/v1/namespaces/{ns}/subscriptions"),
        subscription(&ns),
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let _controller = controller(&api, state.path(), "ferry-test-1");

    let broker = eventually("the broker's Ready status", WAIT, || {
        let (client, url) = (client.clone(), format!("{eventing}/brokers/b"));
        async move {
            get(&client, &url)
                .await
                .filter(|b| b["status"]["conditions"][0]["status"] == "True")
        }
    })
    .await;
    assert_eq!(
        broker["status"]["address"]["url"],
        format!("http://ingress.test/{ns}/b")
    );
    assert_eq!(broker["status"]["observedGeneration"], 1);
    assert!(topic_exists(
        &bootstrap(),
        &format!("knative-broker-{ns}-b")
    ));

    let trigger = eventually("the trigger's Ready status", WAIT, || {
        let (client, url) = (client.clone(), format!("{eventing}/triggers/t"));
        async move {
            get(&client, &url)
                .await
                .filter(|t| t["status"]["conditions"][0]["status"] == "True")
        }
    })
    .await;
    assert_eq!(
        trigger["status"]["subscriberUri"],
        format!("http://display.{ns}.svc.cluster.local")
    );
    let orphan = eventually("the orphan trigger's status", WAIT, || {
        let (client, url) = (client.clone(), format!("{eventing}/triggers/orphan"));
        async move {
            get(&client, &url)
                .await
                .filter(|t| t["status"]["conditions"][0]["status"] == "False")
        }
    })
    .await;
    assert_eq!(
        orphan["status"]["conditions"][0]["reason"],
        "BrokerDoesNotExist"
    );

    let contract = published_contract(&client, &api).await;
    let resource = &contract.resources[0];
    assert_eq!(resource.topics, [format!("knative-broker-{ns}-b")]);
    assert_eq!(resource.ingress.as_ref().unwrap().path, format!("/{ns}/b"));
    assert_eq!(resource.egresses.len(), 1);
    assert_eq!(
        resource.egresses[0].consumer_group,
        format!("knative-trigger-{ns}-t")
    );

    let channel_url = format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels/ch");
    let channel = wait_for(&client, &channel_url, "the channel's Ready status", |c| {
        c["status"]["conditions"][0]["status"] == "True"
    })
    .await;
    assert_eq!(
        channel["status"]["address"]["url"],
        format!("http://ch-kn-channel.{ns}.svc.cluster.local")
    );
    assert_eq!(channel["status"]["subscribers"][0]["uid"], "sub-uid");
    assert_eq!(channel["status"]["subscribers"][0]["ready"], "True");
    assert!(topic_exists(
        &bootstrap(),
        &format!("knative-messaging-kafka.{ns}.ch")
    ));

    let lease = get(
        &client,
        &format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/knative-eventing/leases/ferry-controller",
            api.url
        ),
    )
    .await
    .expect("the lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "ferry-test-1");
}

/// With Knative's core in the cluster, its subscription controller writes
/// a channel's `spec.subscribers` and owns Subscriptions' statuses: Ferry
/// serves the channel's subscribers from its spec and reports them in the
/// channel's `status.subscribers`, and writes no Subscription status.
#[tokio::test]
async fn beside_knatives_core_channels_serve_their_spec_subscribers() {
    let api = KubeEmulator::start();
    let client = http::client();
    let ns = unique("ns");
    // What tells Ferry that Knative's core runs.
    create(
        &client,
        &format!(
            "{}/apis/apps/v1/namespaces/knative-eventing/deployments",
            api.url
        ),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "eventing-controller", "namespace": "knative-eventing"},
               "spec": {"selector": {"matchLabels": {"app": "eventing-controller"}},
                        "template": {"metadata": {"labels": {"app": "eventing-controller"}},
                                     "spec": {"containers": [{"name": "controller", "image": "x"}]}}}}),
    )
    .await;
    let messaging = format!("{}/apis/messaging.knative.dev", api.url);
    create(
        &client,
        &format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels"),
        json!({"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel",
               "metadata": {"name": "ch", "namespace": ns},
               "spec": {"numPartitions": 1, "subscribers": [
                   {"uid": "sub-uid", "generation": 2, "subscriberUri": "http://sink.test"}]}}),
    )
    .await;
    let subscription_url = format!("{messaging}/v1/namespaces/{ns}/subscriptions");
    create(&client, &subscription_url, subscription(&ns)).await;

    let state = tempfile::tempdir().unwrap();
    let _controller = controller(&api, state.path(), "ferry-test-2");
    let channel_url = format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels/ch");
    let channel = wait_for(&client, &channel_url, "the channel's subscribers", |c| {
        c["status"]["subscribers"][0]["ready"] == "True"
    })
    .await;
    let subscriber = &channel["status"]["subscribers"][0];
    assert_eq!(subscriber["uid"], "sub-uid");
    assert_eq!(subscriber["observedGeneration"], 2);

    let contract = published_contract(&client, &api).await;
    let egress = &contract.resources[0].egresses[0];
    assert_eq!(egress.consumer_group, format!("kafka.{ns}.ch.sub-uid"));
    assert_eq!(egress.destination, "http://sink.test");

    // The channel's status was written after a full pass: so would a
    // Subscription's have been, were it Ferry's to write.
    let subscription = get(&client, &format!("{subscription_url}/sub"))
        .await
        .expect("the subscription exists");
    assert!(
        subscription["status"]["conditions"].is_null(),
        "{subscription}"
    );
}

/// A PingSource created through the API gets Knative's status, and with
/// two replicas each tick is fired once: by the one holding the Lease.
#[tokio::test]
async fn ping_sources_through_the_api_are_fired_by_the_leader_only() {
    let api = KubeEmulator::start();
    let client = http::client();
    let ns = unique("ns");
    let sink = ferry_harness::subscriber::Subscriber::accepting().await;
    let url = format!(
        "{}/apis/sources.knative.dev/v1/namespaces/{ns}/pingsources",
        api.url
    );
    create(
        &client,
        &url,
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
               "metadata": {"name": "p", "namespace": ns, "generation": 2},
               "spec": {"schedule": "* * * * * *", "data": "tick", "contentType": "text/plain",
                        "sink": {"uri": sink.url()}}}),
    )
    .await;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _first = controller(&api, one.path(), "controller-1");
    let _second = controller(&api, two.path(), "controller-2");

    let object = wait_for(
        &client,
        &format!("{url}/p"),
        "the PingSource's status",
        |o| o["status"]["conditions"][0]["status"] == "True",
    )
    .await;
    let status = &object["status"];
    assert_eq!(status["sinkUri"], sink.url(), "{status}");
    assert_eq!(status["observedGeneration"], 2, "{status}");
    assert_eq!(
        status["ceAttributes"],
        json!([{"type": "dev.knative.sources.ping",
                "source": format!("/apis/v1/namespaces/{ns}/pingsources/p")}]),
        "{status}"
    );
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "SinkProvided" && c["status"] == "True"),
        "{status}"
    );

    let ticks = sink.wait_for(4, WAIT).await;
    let mut times: Vec<&str> = ticks.iter().map(|t| t.header("ce-time").unwrap()).collect();
    let all = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), all, "a tick fired twice: {times:?}");
    assert!(ticks.iter().all(|t| t.body.as_ref() == b"tick"));
}

/// `ferry standalone` given a kubeconfig runs ApiServerSources against
/// that cluster: a ConfigMap created, updated and deleted becomes the
/// three events, as references and as whole objects.
#[tokio::test]
async fn api_server_sources_turn_changes_into_events() {
    use ferry_harness::{
        process::{write_resource, Standalone},
        subscriber::Subscriber,
    };
    let api = KubeEmulator::start();
    let client = http::client();
    let ns = unique("ns");
    let (refs, whole) = (Subscriber::accepting().await, Subscriber::accepting().await);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let source = |name: &str, mode: &str, sink: &str| {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  \
             mode: {mode}\n  resources:\n    - apiVersion: v1\n      kind: ConfigMap\n      selector:\n        matchLabels:\n          app: watched\n  \
             ceOverrides:\n    extensions:\n      team: ferry\n  sink:\n    uri: {sink}\n"
        )
    };
    write_resource(
        dir.path(),
        "refs.yaml",
        &source("refs", "Reference", &refs.url()),
    );
    write_resource(
        dir.path(),
        "whole.yaml",
        &source("whole", "Resource", &whole.url()),
    );
    let kubeconfig = api.kubeconfig();
    let ferry = Standalone::start_with_env(
        FERRY,
        dir.path(),
        state.path(),
        &bootstrap(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    let status = ferry
        .wait_for_status("ApiServerSource", "refs", "True")
        .await;
    assert_eq!(status["sinkUri"], refs.url(), "{status}");
    let api_url = api.url.trim_end_matches('/').to_owned();
    assert_eq!(
        status["ceAttributes"][0],
        json!({"type": "dev.knative.apiserver.ref.add", "source": api_url}),
        "{status}"
    );
    ferry
        .wait_for_status("ApiServerSource", "whole", "True")
        .await;

    let configmaps = format!("{}/api/v1/namespaces/{ns}/configmaps", api.url);
    // One the selector leaves out, then the watched one: created, updated,
    // deleted.
    create(
        &client,
        &configmaps,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": ns}, "data": {"k": "0"}}),
    )
    .await;
    let watched = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns, "labels": {"app": "watched"}},
        "data": {"k": value}})
    };
    create(&client, &configmaps, watched("1")).await;
    // Both sources have the object (by watch, or by their first list)
    // before it changes.
    eventually("the add, by both sources", WAIT, || {
        let done = !refs.received().is_empty() && !whole.received().is_empty();
        async move { done.then_some(()) }
    })
    .await;
    let answer = http::request(
        &client,
        ::http::Method::PATCH,
        &format!("{configmaps}/settings"),
        &[("content-type", "application/merge-patch+json")],
        json!({"data": {"k": "2"}}).to_string(),
    )
    .await;
    assert!(
        answer.status.is_success(),
        "update: {} {}",
        answer.status,
        answer.body
    );
    // Seen before the next change (the emulator's watches end at once, so
    // changes are seen by relisting).
    eventually("the update, by both sources", WAIT, || {
        let got: Vec<_> = refs
            .received()
            .into_iter()
            .chain(whole.received())
            .collect();
        async move {
            let seen = |ty| got.iter().any(|r| r.header("ce-type") == Some(ty));
            (seen("dev.knative.apiserver.ref.update")
                && seen("dev.knative.apiserver.resource.update"))
            .then_some(())
        }
    })
    .await;
    let answer = http::request(
        &client,
        ::http::Method::DELETE,
        &format!("{configmaps}/settings"),
        &[],
        "",
    )
    .await;
    assert!(
        answer.status.is_success(),
        "delete: {} {}",
        answer.status,
        answer.body
    );

    let types = |sub: &Subscriber| {
        sub.received()
            .iter()
            .map(|r| r.header("ce-type").unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let got = eventually("add, update and delete as references", WAIT, || {
        let got = refs.received();
        async move {
            got.iter()
                .any(|r| r.header("ce-type") == Some("dev.knative.apiserver.ref.delete"))
                .then_some(got)
        }
    })
    .await;
    assert_eq!(
        types(&refs),
        [
            "dev.knative.apiserver.ref.add",
            "dev.knative.apiserver.ref.update",
            "dev.knative.apiserver.ref.delete"
        ],
        "only the selected ConfigMap, each change once"
    );
    let add = &got[0];
    assert_eq!(add.header("ce-source"), Some(api_url.as_str()));
    assert_eq!(
        add.header("ce-subject"),
        Some(format!("/api/v1/namespaces/{ns}/configmaps/settings").as_str())
    );
    assert_eq!(add.header("ce-kind"), Some("ConfigMap"));
    assert_eq!(add.header("ce-apiversion"), Some("v1"));
    assert_eq!(add.header("ce-name"), Some("settings"));
    assert_eq!(add.header("ce-namespace"), Some(ns.as_str()));
    assert_eq!(add.header("ce-team"), Some("ferry"));
    let data: Value = serde_json::from_slice(&add.body).unwrap();
    assert_eq!(
        data,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": ns})
    );

    let got = eventually("the three changes as whole objects", WAIT, || {
        let got = whole.received();
        async move { (got.len() >= 3).then_some(got) }
    })
    .await;
    assert_eq!(
        types(&whole),
        [
            "dev.knative.apiserver.resource.add",
            "dev.knative.apiserver.resource.update",
            "dev.knative.apiserver.resource.delete"
        ]
    );
    let update: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(
        update["data"]["k"], "2",
        "the new object on update: {update}"
    );
    assert_eq!(update["kind"], "ConfigMap");
}
