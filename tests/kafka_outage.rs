//! Kafka unavailable: the receiver answers 503 within its bound, never a
//! 202 that was not written, and takes events again once Kafka is back.
//! Runs its own Tansu so stopping it disturbs no other test.

use std::time::{Duration, Instant};

use ferry_harness::{
    broker, eventually,
    http::{self, post},
    kafka::{create_topic, header, TopicReader},
    receiver_config, unique, ContractFile, Tansu, TestReceiver,
};
use ferry_proto::Contract;

#[tokio::test]
async fn kafka_down_gives_503_within_the_bound_and_recovers() {
    let mut tansu = Tansu::start();
    let bootstrap = tansu.bootstrap();
    let topic = unique("knative-broker-ns-outage");
    create_topic(&bootstrap, &topic, 1).await;
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![broker("ns", "b", &topic, "")],
        ..Default::default()
    });
    let config = receiver_config(&contract, &bootstrap);
    let bound = config.producer.timeout;
    let receiver = TestReceiver::start(config).await;
    receiver.ready().await;
    let client = http::client();
    let url = receiver.url("/ns/b");
    let event = |id: &'static str| {
        [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
    };

    assert_eq!(post(&client, &url, &event("before"), "").await.status, 202);

    tansu.stop();
    let started = Instant::now();
    let answer = post(&client, &url, &event("during"), "").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("event not stored"), "{}", answer.body);
    // The producer's bound, plus the margin the receiver allows itself.
    assert!(
        took < bound + Duration::from_secs(2),
        "503 after {took:?}, bound {bound:?}"
    );

    // The broker comes back empty (in-memory storage): the control plane
    // would recreate the topic, so the test does.
    tansu.resume();
    create_topic(&bootstrap, &topic, 1).await;
    eventually("a 202 after Kafka is back", Duration::from_secs(60), || {
        let client = client.clone();
        let url = url.clone();
        async move { (post(&client, &url, &event("after"), "").await.status == 202).then_some(()) }
    })
    .await;
    let records = TopicReader::new(&bootstrap, &topic, 1)
        .read(1, Duration::from_secs(20))
        .await;
    assert_eq!(header(&records[0], "ce_id").as_deref(), Some("after"));
}
