//! The reference Kafka broker's own kinds through an emulated Kubernetes
//! API: a KafkaSink gets its topic, its address and a contract resource
//! with its ingress; a KafkaSource's status has its sink and consumers,
//! and its contract resource the egress the reference writes.

use ferry_harness::{
    bootstrap,
    kafka::{create_topic, partition_count},
    kube::{controller, has_condition, published_contract, KubeApi},
    process::KubeEmulator,
    unique,
};
use ferry_proto::{egress::ReplyStrategy, DeliveryOrder, InitialOffset, KeyType};
use serde_json::json;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[tokio::test]
async fn kafka_sinks_and_sources_through_the_api() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let (sink_topic, source_topic) = (unique("kube-sink"), unique("kube-source"));
    create_topic(&bootstrap(), &source_topic, 1).await;
    let sinks = format!("/apis/eventing.knative.dev/v1alpha1/namespaces/{ns}/kafkasinks");
    k.create(
        &sinks,
        json!({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "KafkaSink",
               "metadata": {"name": "archive", "namespace": ns, "uid": "sink-uid"},
               "spec": {"topic": sink_topic, "numPartitions": 4, "replicationFactor": 1,
                        "bootstrapServers": [bootstrap()], "contentMode": "structured"}}),
    )
    .await;
    let sources = format!("/apis/sources.knative.dev/v1/namespaces/{ns}/kafkasources");
    k.create(
        &sources,
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "KafkaSource",
               "metadata": {"name": "src", "namespace": ns, "uid": "source-uid", "generation": 2,
                            "labels": {"kafkasources.sources.knative.dev/key-type": "int"}},
               "spec": {"bootstrapServers": [bootstrap()], "topics": [source_topic],
                        "consumerGroup": "my-group", "initialOffset": "earliest",
                        "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1alpha1",
                                         "kind": "KafkaSink", "name": "archive"}}}}),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-1", &[]);

    let sink = k
        .wait_for(
            &format!("{sinks}/archive"),
            "the sink's Ready status",
            |s| has_condition(&s["status"], "Ready", "True"),
        )
        .await;
    let address = format!("http://ingress.test/{ns}/archive");
    assert_eq!(sink["status"]["address"]["url"], address);
    assert_eq!(partition_count(&bootstrap(), &sink_topic), 4);

    let source = k
        .wait_for(
            &format!("{sources}/src"),
            "the source's Ready status",
            |s| has_condition(&s["status"], "Ready", "True"),
        )
        .await;
    let status = &source["status"];
    assert_eq!(status["sinkUri"], address, "{status}");
    assert_eq!(status["consumers"], 1, "{status}");
    assert_eq!(status["observedGeneration"], 2, "{status}");
    assert!(has_condition(status, "SinkProvided", "True"), "{status}");
    assert!(
        has_condition(status, "ConnectionEstablished", "True"),
        "{status}"
    );
    assert_eq!(
        status["ceAttributes"][0]["source"],
        format!("/apis/v1/namespaces/{ns}/kafkasources/src#{source_topic}")
    );

    let contract = published_contract(&k).await;
    let by_kind = |kind: &str| {
        contract
            .resources
            .iter()
            .find(|r| r.reference.as_ref().is_some_and(|re| re.kind == kind))
            .unwrap_or_else(|| panic!("a {kind} resource in {contract:?}"))
    };
    let sink = by_kind("KafkaSink");
    assert_eq!(sink.topics, [sink_topic]);
    let ingress = sink.ingress.as_ref().unwrap();
    assert_eq!(ingress.path, format!("/{ns}/archive"));
    assert_eq!(ingress.content_mode(), ferry_proto::ContentMode::Structured);
    let source = by_kind("KafkaSource");
    assert!(source.ingress.is_none());
    assert_eq!(source.topics, [source_topic]);
    let egress = &source.egresses[0];
    assert_eq!(egress.consumer_group, "my-group");
    assert_eq!(egress.destination, address);
    assert_eq!(egress.key_type(), KeyType::Integer);
    assert_eq!(egress.delivery_order(), DeliveryOrder::Ordered);
    assert_eq!(egress.initial_offset(), InitialOffset::Earliest);
    assert!(matches!(
        egress.reply_strategy,
        Some(ReplyStrategy::DiscardReply(_))
    ));
    let config = egress.egress_config.as_ref().unwrap();
    assert_eq!(
        (config.retry, config.backoff_delay, config.timeout),
        (10, 300, 600_000),
        "the reference's defaults"
    );
}

#[tokio::test]
async fn kafka_credentials_come_from_secrets_in_the_api() {
    use base64::Engine;
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let topic = unique("kube-secret-sink");
    let encode = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    // The shared test broker is plaintext: a Secret saying so is read, and
    // its credentials reach the clients.
    k.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "kafka-plain", "namespace": ns},
               "data": {"protocol": encode("PLAINTEXT")}}),
    )
    .await;
    let sinks = format!("/apis/eventing.knative.dev/v1alpha1/namespaces/{ns}/kafkasinks");
    for (name, secret) in [("with-secret", "kafka-plain"), ("no-secret", "missing")] {
        k.create(
            &sinks,
            json!({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "KafkaSink",
                   "metadata": {"name": name, "namespace": ns, "uid": format!("{name}-uid")},
                   "spec": {"topic": topic, "numPartitions": 1, "replicationFactor": 1,
                            "bootstrapServers": [bootstrap()],
                            "auth": {"secret": {"ref": {"name": secret}}}}}),
        )
        .await;
    }
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "ferry-test-1", &[]);

    k.wait_for(
        &format!("{sinks}/with-secret"),
        "the sink with a Secret Ready",
        |s| has_condition(&s["status"], "Ready", "True"),
    )
    .await;
    assert_eq!(partition_count(&bootstrap(), &topic), 1);
    let refused = k
        .wait_for(
            &format!("{sinks}/no-secret"),
            "the sink without its Secret not Ready",
            |s| has_condition(&s["status"], "Ready", "False"),
        )
        .await;
    let ready = refused["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "CredentialsUnavailable", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains(&format!("Secret {ns}/missing not found")),
        "{ready}"
    );

    // The contract names the Secret as the reference's control plane does,
    // for a data plane that reads it from the API.
    let contract = published_contract(&k).await;
    let sink = contract
        .resources
        .iter()
        .find(|r| r.uid == "with-secret-uid")
        .expect("the ready sink in the contract");
    let Some(ferry_proto::resource::Auth::AuthSecret(secret)) = &sink.auth else {
        panic!("{:?}", sink.auth)
    };
    assert_eq!(
        (secret.namespace.as_str(), secret.name.as_str()),
        (ns.as_str(), "kafka-plain")
    );
    assert!(
        contract.resources.iter().all(|r| r.uid != "no-secret-uid"),
        "a sink without its credentials is not served"
    );
}
