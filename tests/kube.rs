//! `ferry controller --kube` against an emulated Kubernetes API: Brokers
//! and Triggers created through the API get their status, the contract
//! ConfigMap appears, topics are created, and one replica holds the Lease.

use ferry_harness::{
    bootstrap, eventually,
    kafka::{group_offsets, high_watermarks, partition_count, topic_exists},
    kube::{controller, published_contract, KubeApi, WAIT},
    process::KubeEmulator,
    unique,
};
use serde_json::{json, Value};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Subscription `sub` (uid `sub-uid`) of KafkaChannel `ch` to a URI.
fn subscription(ns: &str) -> Value {
    json!({"apiVersion": "messaging.knative.dev/v1", "kind": "Subscription",
           "metadata": {"name": "sub", "namespace": ns, "uid": "sub-uid"},
           "spec": {"channel": {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel", "name": "ch"},
                    "subscriber": {"uri": "http://sink.test"}}})
}

#[tokio::test]
async fn brokers_and_triggers_through_the_api() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let eventing = format!("/apis/eventing.knative.dev/v1/namespaces/{ns}");
    k.create(&format!("{eventing}/brokers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": ns, "generation": 1,
                            "annotations": {"eventing.knative.dev/broker.class": "Kafka"}}, "spec": {}}),
    )
    .await;
    k.create(&format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": ns},
               "spec": {"broker": "b", "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}}}),
    )
    .await;
    k.create(
        &format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "orphan", "namespace": ns},
               "spec": {"broker": "missing", "subscriber": {"uri": "http://s"}}}),
    )
    .await;

    let messaging = "/apis/messaging.knative.dev".to_owned();
    k.create(
        &format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels"),
        json!({"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel",
               "metadata": {"name": "ch", "namespace": ns}, "spec": {"numPartitions": 2}}),
    )
    .await;
    k.create(
        &format!("{messaging}/v1/namespaces/{ns}/subscriptions"),
        subscription(&ns),
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-1", &[]);

    let broker = k
        .wait_for(
            &format!("{eventing}/brokers/b"),
            "the broker's Ready status",
            |b| b["status"]["conditions"][0]["status"] == "True",
        )
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

    let trigger = k
        .wait_for(
            &format!("{eventing}/triggers/t"),
            "the trigger's Ready status",
            |t| t["status"]["conditions"][0]["status"] == "True",
        )
        .await;
    assert_eq!(
        trigger["status"]["subscriberUri"],
        format!("http://display.{ns}.svc.cluster.local")
    );
    // Ready only once its group's start is committed, as the reference's
    // control plane does it: no dispatcher runs here to pin it, and one
    // would pin it only when it adds the trigger, after an event sent on
    // Ready may have been written. The topic is empty: the end is 0.
    let topic = format!("knative-broker-{ns}-b");
    let partitions = partition_count(&bootstrap(), &topic) as i32;
    let group = format!("knative-trigger-{ns}-t");
    let pinned = group_offsets(&bootstrap(), &group, &topic, partitions).await;
    let ends = high_watermarks(&bootstrap(), &topic, partitions).await;
    assert_eq!(pinned, ends.into_iter().map(Some).collect::<Vec<_>>());
    let orphan = k
        .wait_for(
            &format!("{eventing}/triggers/orphan"),
            "the orphan trigger's status",
            |t| t["status"]["conditions"][0]["status"] == "False",
        )
        .await;
    assert_eq!(
        orphan["status"]["conditions"][0]["reason"],
        "BrokerDoesNotExist"
    );

    let contract = published_contract(&k).await;
    let resource = &contract.resources[0];
    assert_eq!(resource.topics, [format!("knative-broker-{ns}-b")]);
    assert_eq!(resource.ingress.as_ref().unwrap().path, format!("/{ns}/b"));
    assert_eq!(resource.egresses.len(), 1);
    assert_eq!(
        resource.egresses[0].consumer_group,
        format!("knative-trigger-{ns}-t")
    );

    let channel_url = format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels/ch");
    let channel = k
        .wait_for(&channel_url, "the channel's Ready status", |c| {
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

    let lease = k
        .get("/apis/coordination.k8s.io/v1/namespaces/knative-eventing/leases/ferry-controller")
        .await
        .expect("the lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "ferry-test-1");
}

/// With Knative's core in the cluster, its subscription controller writes
/// a channel's `spec.subscribers` and owns Subscriptions' statuses: Ferry
/// serves the channel's subscribers from its spec and reports them in the
/// channel's `status.subscribers`, and writes no Subscription status; its
/// source controllers run sources, so Ferry does not.
#[tokio::test]
async fn beside_knatives_core_channels_serve_their_spec_subscribers() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    // What tells Ferry that Knative's core runs.
    k.create("/apis/apps/v1/namespaces/knative-eventing/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "eventing-controller", "namespace": "knative-eventing"},
               "spec": {"selector": {"matchLabels": {"app": "eventing-controller"}},
                        "template": {"metadata": {"labels": {"app": "eventing-controller"}},
                                     "spec": {"containers": [{"name": "controller", "image": "x"}]}}}}),
    )
    .await;
    let messaging = "/apis/messaging.knative.dev".to_owned();
    k.create(
        &format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels"),
        json!({"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel",
               "metadata": {"name": "ch", "namespace": ns},
               "spec": {"numPartitions": 1, "subscribers": [
                   {"uid": "sub-uid", "generation": 2, "subscriberUri": "http://sink.test"}]}}),
    )
    .await;
    let subscription_url = format!("{messaging}/v1/namespaces/{ns}/subscriptions");
    k.create(&subscription_url, subscription(&ns)).await;
    // Knative's own PingSource adapter fires these there, so Ferry leaves
    // them alone (`--sources auto`).
    let pings = format!("/apis/sources.knative.dev/v1/namespaces/{ns}/pingsources");
    k.create(
        &pings,
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
               "metadata": {"name": "p", "namespace": ns},
               "spec": {"schedule": "* * * * *", "sink": {"uri": "http://sink.test"}}}),
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-2", &[]);
    let channel_url = format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels/ch");
    let channel = k
        .wait_for(&channel_url, "the channel's subscribers", |c| {
            c["status"]["subscribers"][0]["ready"] == "True"
        })
        .await;
    let subscriber = &channel["status"]["subscribers"][0];
    assert_eq!(subscriber["uid"], "sub-uid");
    assert_eq!(subscriber["observedGeneration"], 2);
    // Knative's core makes the Subscription Ready of this entry: it says
    // ready once the subscriber's group has its start committed.
    let group = format!("kafka.{ns}.ch.sub-uid");
    let topic = format!("knative-messaging-kafka.{ns}.ch");
    let pinned = group_offsets(&bootstrap(), &group, &topic, 1).await;
    assert_eq!(pinned, [Some(0)], "{channel}");

    let contract = published_contract(&k).await;
    let egress = &contract.resources[0].egresses[0];
    assert_eq!(egress.consumer_group, format!("kafka.{ns}.ch.sub-uid"));
    assert_eq!(egress.destination, "http://sink.test");

    // The channel's status was written after a full pass: so would a
    // Subscription's have been, were it Ferry's to write.
    let subscription = k
        .get(&format!("{subscription_url}/sub"))
        .await
        .expect("the subscription exists");
    assert!(
        subscription["status"]["conditions"].is_null(),
        "{subscription}"
    );
    let ping = k
        .get(&format!("{pings}/p"))
        .await
        .expect("the PingSource exists");
    assert!(ping["status"].is_null(), "Knative's to run: {ping}");
}

/// With Knative's `eventtype-auto-create` feature on, the controller asks
/// for EventTypes in the contract, and a receiver writing to the API
/// creates one per new pair, owned by and referring to the broker; `ferry
/// eventtypes --kube` lists it with the triggers it reaches.
#[tokio::test]
async fn event_types_are_created_through_the_api_owned_by_the_broker() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    k.features(json!({"eventtype-auto-create": "enabled"}))
        .await;
    let eventing = format!("/apis/eventing.knative.dev/v1/namespaces/{ns}");
    k.create(
        &format!("{eventing}/brokers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": ns, "uid": "broker-uid",
                            "annotations": {"eventing.knative.dev/broker.class": "Kafka"}}, "spec": {}}),
    )
    .await;
    k.create(
        &format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "orders", "namespace": ns},
               "spec": {"broker": "b", "filter": {"attributes": {"type": "dev.example.order"}},
                        "subscriber": {"uri": "http://sink.test"}}}),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "controller-1", &[]);
    let contract = eventually("a contract with the trigger", WAIT, || async {
        let contract = published_contract(&k).await;
        (!contract.resources[0].egresses.is_empty()).then_some(contract)
    })
    .await;
    let resource = &contract.resources[0];
    assert!(
        resource
            .feature_flags
            .as_ref()
            .is_some_and(|f| f.enable_event_type_autocreate),
        "{resource:?}"
    );

    // A receiver on that contract, making EventTypes through the API.
    let dir = tempfile::tempdir().unwrap();
    let contract_file = dir.path().join("contract.json");
    std::fs::write(&contract_file, serde_json::to_vec(&contract).unwrap()).unwrap();
    let port = ferry_harness::free_port();
    let kubeconfig = api.kubeconfig();
    let listen = format!("127.0.0.1:{port}");
    let _receiver = ferry_harness::process::FerryProcess::spawn(
        FERRY,
        &[
            "receiver",
            "--listen",
            &listen,
            "--admin",
            "127.0.0.1:0",
            "--contract",
            contract_file.to_str().unwrap(),
            "--bootstrap-servers",
            &bootstrap(),
            "--eventtype-store",
            "kube",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let client = ferry_harness::http::client();
    let url = format!("http://{listen}/{ns}/b");
    eventually("the receiver takes the event", WAIT, || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let headers = [
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/shop"),
                ("ce-type", "dev.example.order"),
            ];
            let answer = ferry_harness::http::try_request(
                &client,
                ::http::Method::POST,
                &url,
                &headers,
                "{}",
            )
            .await;
            answer
                .ok()
                .filter(|a| a.status == ::http::StatusCode::ACCEPTED)
        }
    })
    .await;
    let name = ferry_registry::name::event_type_name("dev.example.order", "/shop", &ns, "b");
    let path = format!("/apis/eventing.knative.dev/v1beta2/namespaces/{ns}/eventtypes/{name}");
    let event_type = k.wait_for(&path, "the EventType", |_| true).await;
    assert_eq!(event_type["spec"]["type"], "dev.example.order");
    assert_eq!(event_type["spec"]["source"], "/shop");
    assert_eq!(event_type["spec"]["reference"]["kind"], "Broker");
    assert_eq!(event_type["spec"]["reference"]["name"], "b");
    let owner = &event_type["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], "broker-uid");
    assert_eq!(owner["kind"], "Broker");

    let env = [("KUBECONFIG", kubeconfig.as_os_str())];
    let table = ferry_harness::process::ferry_output(FERRY, &["eventtypes", "--kube"], &env);
    let row = table
        .lines()
        .find(|l| l.starts_with("dev.example.order "))
        .unwrap_or_else(|| panic!("a row:\n{table}"));
    assert!(row.contains(&format!("Broker {ns}/b")), "{row}");
    assert!(row.ends_with(" 1"), "the orders trigger: {row}");
}

/// Without Knative's core, Ferry builds flows itself: a Sequence and a
/// Parallel get their KafkaChannels and Subscriptions as API objects owned
/// by them, and Knative's status.
#[tokio::test]
async fn flows_get_their_channels_subscriptions_and_status() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let flows = format!("/apis/flows.knative.dev/v1/namespaces/{ns}");
    k.create(
        &format!("{flows}/sequences"),
        json!({"apiVersion": "flows.knative.dev/v1", "kind": "Sequence",
               "metadata": {"name": "seq", "namespace": ns, "uid": "seq-uid", "generation": 1},
               "spec": {"steps": [{"uri": "http://one.test"}, {"uri": "http://two.test"}],
                        "reply": {"uri": "http://reply.test"}}}),
    )
    .await;
    k.create(
        &format!("{flows}/parallels"),
        json!({"apiVersion": "flows.knative.dev/v1", "kind": "Parallel",
               "metadata": {"name": "par", "namespace": ns, "uid": "par-uid"},
               "spec": {"branches": [{"filter": {"uri": "http://filter.test"}, "subscriber": {"uri": "http://branch.test"}}]}}),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "controller-1", &[]);
    let sequence = k
        .wait_for(
            &format!("{flows}/sequences/seq"),
            "the Sequence Ready",
            |s| s["status"]["conditions"][0]["status"] == "True",
        )
        .await;
    let status = &sequence["status"];
    assert_eq!(
        status["address"]["url"],
        format!("http://seq-kn-sequence-0-kn-channel.{ns}.svc.cluster.local"),
        "{status}"
    );
    assert_eq!(
        status["channelStatuses"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    assert_eq!(
        status["subscriptionStatuses"][1]["subscription"]["name"],
        "seq-kn-sequence-1"
    );
    assert_eq!(status["observedGeneration"], 1);
    let messaging = "/apis/messaging.knative.dev";
    let channel = k
        .wait_for(
            &format!("{messaging}/v1beta1/namespaces/{ns}/kafkachannels/seq-kn-sequence-1"),
            "the second step's channel",
            |c| c["status"]["conditions"][0]["status"] == "True",
        )
        .await;
    assert_eq!(
        channel["metadata"]["ownerReferences"][0]["kind"],
        "Sequence"
    );
    assert_eq!(channel["metadata"]["ownerReferences"][0]["uid"], "seq-uid");
    let first = k
        .get(&format!(
            "{messaging}/v1/namespaces/{ns}/subscriptions/seq-kn-sequence-0"
        ))
        .await
        .expect("the first step's subscription");
    assert_eq!(first["spec"]["subscriber"]["uri"], "http://one.test");
    assert_eq!(first["spec"]["reply"]["ref"]["name"], "seq-kn-sequence-1");
    let parallel = k
        .wait_for(
            &format!("{flows}/parallels/par"),
            "the Parallel Ready",
            |p| p["status"]["conditions"][0]["status"] == "True",
        )
        .await;
    let status = &parallel["status"];
    assert_eq!(
        status["ingressChannelStatus"]["channel"]["name"], "par-kn-parallel",
        "{status}"
    );
    assert_eq!(
        status["branchStatuses"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    let filter = k
        .get(&format!(
            "{messaging}/v1/namespaces/{ns}/subscriptions/par-kn-parallel-filter-0"
        ))
        .await
        .expect("the branch's filter subscription");
    assert_eq!(filter["spec"]["channel"]["name"], "par-kn-parallel");
    assert_eq!(filter["spec"]["reply"]["ref"]["name"], "par-kn-parallel-0");
}

/// `ferry replay --kube` annotates the trigger through the API, as
/// `kubectl annotate` would; the controller passes the replay on in the
/// contract once and records it in the trigger's status.
#[tokio::test]
async fn ferry_replay_annotates_a_trigger_and_the_controller_passes_it_on() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let eventing = format!("/apis/eventing.knative.dev/v1/namespaces/{ns}");
    k.create(&format!("{eventing}/brokers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": ns,
                            "annotations": {"eventing.knative.dev/broker.class": "Kafka"}}, "spec": {}}),
    )
    .await;
    k.create(
        &format!("{eventing}/triggers"),
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": ns, "uid": "t-uid"},
               "spec": {"broker": "b", "subscriber": {"uri": "http://s.test"}}}),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-replay", &[]);
    let trigger_path = format!("{eventing}/triggers/t");
    k.wait_for(&trigger_path, "the trigger Ready", |t| {
        t["status"]["conditions"][0]["status"] == "True"
    })
    .await;

    let kubeconfig = api.kubeconfig();
    let env = [("KUBECONFIG", kubeconfig.as_os_str())];
    let object = format!("{ns}/t");
    let printed = ferry_harness::process::ferry_output(
        FERRY,
        &[
            "replay",
            "trigger",
            &object,
            "--to-time",
            "2026-12-07T09:00:00Z",
            "--kube",
        ],
        &env,
    );
    assert!(printed.contains("2026-12-07T09:00:00Z"), "{printed}");
    let trigger = k.get(&trigger_path).await.expect("the trigger");
    let asked = trigger["metadata"]["annotations"]["delivery.ferry.dev/replay"]
        .as_str()
        .expect("the annotation")
        .to_owned();
    assert!(asked.starts_with("2026-12-07T09:00:00Z#"), "{asked}");

    let trigger = k
        .wait_for(&trigger_path, "the replay in the status", |t| {
            t["status"]["annotations"]["delivery.ferry.dev/replay"] == asked.as_str()
        })
        .await;
    assert_eq!(
        trigger["metadata"]["annotations"]["delivery.ferry.dev/replay"],
        asked.as_str()
    );
    let replay = eventually("the replay in the contract", WAIT, || async {
        let contract = published_contract(&k).await;
        contract
            .resources
            .iter()
            .flat_map(|r| &r.egresses)
            .find(|e| e.uid == "t-uid")
            .and_then(|e| e.replay.clone())
    })
    .await;
    assert_eq!(replay.id, asked);
    assert_eq!(
        replay.to,
        Some(ferry_proto::replay::To::Time(1_796_634_000_000))
    );
}
