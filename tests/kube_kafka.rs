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
