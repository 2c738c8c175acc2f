//! Interop with a CloudEvents implementation Ferry did not write: the
//! Python SDK (PyPI `cloudevents`, through tests/interop/cloudevents_peer.py)
//! sends binary, structured and batched events with both of its APIs and
//! decodes what subscribers receive; its Kafka binding reads the records
//! Ferry writes and writes records Ferry must deliver.

use std::{process::Stdio, time::Duration};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use ferry_harness::{
    bootstrap, broker,
    kafka::{create_topic, headers, produce_record, TopicReader},
    stack::Stack,
    subscriber::{Received, Subscriber},
    trigger, unique,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(30);
const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/cloudevents_peer.py"
);

/// Runs one command of the Python peer.
async fn python(command: &str, input: Value) -> Value {
    let mut child = tokio::process::Command::new("python3")
        .arg(PEER)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&serde_json::to_vec(&input).unwrap())
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the peer answers in time")
        .unwrap();
    assert!(
        output.status.success(),
        "cloudevents_peer.py {command} failed (is the `cloudevents` package installed? scripts/setup installs it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the peer prints JSON")
}

/// A broker with one trigger that takes everything, on a new topic.
async fn mesh(sub: &Subscriber) -> (Stack, String, String) {
    let ns = unique("ns");
    let topic = unique("knative-broker-interop");
    create_topic(&bootstrap(), &topic, 1).await;
    let mut b = broker(&ns, "b", &topic, "");
    b.egresses = vec![trigger(&ns, "all", &sub.url())];
    let group = b.egresses[0].consumer_group.clone();
    let contract = ferry_proto::Contract {
        generation: 1,
        resources: vec![b],
        ..Default::default()
    };
    let stack = Stack::start(&serde_json::to_value(&contract).unwrap(), &topic, &[&group]).await;
    let url = stack.receiver.url(&format!("/{ns}/b"));
    (stack, url, topic)
}

/// What every event the peer sends carries: a `%` that is no escape and a
/// character beyond ASCII, which the legacy API sends as they are.
fn spec(id: &str) -> Value {
    json!({
        "attributes": {
            "id": id, "source": "/python/sdk", "type": "dev.ferry.interop",
            "datacontenttype": "application/json",
            "confidence": "100% sure", "place": "café",
        },
        "data": {"n": 1, "text": "grüße"},
    })
}

/// The Python SDK's Kafka binding's reading of a record.
async fn python_reads(record: &rdkafka::message::OwnedMessage) -> Value {
    let record_headers: Vec<Value> = headers(record)
        .into_iter()
        .map(|(k, v)| json!([k, BASE64.encode(v)]))
        .collect();
    python(
        "kafka-decode",
        json!({
            "headers": record_headers,
            "key": null,
            "value": BASE64.encode(ferry_harness::kafka::value(record)),
        }),
    )
    .await
}

/// The Python SDK's reading of what a subscriber received.
async fn decoded(received: &Received) -> Value {
    let headers: serde_json::Map<String, Value> = received
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
        .collect();
    python(
        "decode",
        json!({"headers": headers, "body": BASE64.encode(&received.body)}),
    )
    .await
}

fn assert_same_event(got: &Value, id: &str) {
    let a = &got["attributes"];
    assert_eq!(a["id"], id, "{got}");
    assert_eq!(a["source"], "/python/sdk", "{got}");
    assert_eq!(a["type"], "dev.ferry.interop", "{got}");
    assert_eq!(a["confidence"], "100% sure", "{got}");
    assert_eq!(a["place"], "café", "{got}");
    assert_eq!(got["data"], json!({"n": 1, "text": "grüße"}), "{got}");
}

#[tokio::test]
async fn the_python_sdk_sends_every_mode_and_reads_what_is_delivered() {
    let sub = Subscriber::accepting().await;
    let (_stack, url, _topic) = mesh(&sub).await;
    let mut ids = Vec::new();
    for api in ["legacy", "core"] {
        for mode in ["binary", "structured", "batch"] {
            let batch = if mode == "batch" { 2 } else { 1 };
            let events: Vec<Value> = (0..batch)
                .map(|i| {
                    let id = format!("{api}-{mode}-{i}");
                    ids.push(id.clone());
                    spec(&id)
                })
                .collect();
            let answers = python(
                "send",
                json!({"url": url, "api": api, "mode": mode, "events": events}),
            )
            .await;
            for answer in answers.as_array().unwrap() {
                assert_eq!(answer[0], 202, "{api} {mode}: {answer}");
            }
        }
    }
    let received = sub.wait_for_ids(&ids, WAIT).await;
    for r in &received {
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{}",
            r.id()
        );
        assert_same_event(&decoded(r).await, r.id());
    }
}

#[tokio::test]
async fn the_python_kafka_binding_reads_ferrys_records_and_writes_its_own() {
    let sub = Subscriber::accepting().await;
    let (stack, url, topic) = mesh(&sub).await;

    // Ferry writes a record from the SDK's own HTTP event...
    let answers = python(
        "send",
        json!({"url": url, "api": "core", "mode": "binary", "events": [spec("to-kafka")]}),
    )
    .await;
    assert_eq!(answers[0][0], 202, "{answers}");
    let record = &TopicReader::new(&bootstrap(), &topic, 1)
        .read(1, WAIT)
        .await[0];
    // ...and the SDK's Kafka binding reads it back.
    assert_same_event(&python_reads(record).await, "to-kafka");

    // Records the SDK's Kafka binding writes, in both modes, are delivered.
    for (mode, id) in [
        ("binary", "from-kafka-binary"),
        ("structured", "from-kafka-structured"),
    ] {
        let mut event = spec(id);
        event["attributes"]["partitionkey"] = json!("key-1");
        let message = python("kafka-encode", json!({"mode": mode, "event": event})).await;
        let headers: Vec<(String, Vec<u8>)> = message["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    BASE64.decode(h[1].as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        let borrowed: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        produce_record(
            &bootstrap(),
            &topic,
            message["key"].as_str().map(str::as_bytes),
            &borrowed,
            &BASE64.decode(message["value"].as_str().unwrap()).unwrap(),
        )
        .await;
    }
    let received = sub
        .wait_for_ids(
            &[
                "to-kafka".into(),
                "from-kafka-binary".into(),
                "from-kafka-structured".into(),
            ],
            WAIT,
        )
        .await;
    for r in &received {
        assert_same_event(&decoded(r).await, r.id());
    }
    drop(stack);
}

/// Python's http.client writes the whole body before it reads the answer:
/// `ferry standalone` must still answer it 413, not reset it.
#[tokio::test]
async fn python_gets_the_413_for_an_oversized_body() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    ferry_harness::process::write_resource(
        dir.path(),
        "broker.yaml",
        &format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: {ns}\n"),
    );
    let ferry = ferry_harness::process::Standalone::start(
        env!("CARGO_BIN_EXE_ferry"),
        dir.path(),
        state.path(),
        &bootstrap(),
    )
    .await;
    let broker = ferry.wait_for_status("Broker", "b", "True").await;
    // Twice the default limit of 1 MiB.
    let answers = python(
        "oversized",
        json!({"url": broker["address"], "bytes": 2 * 1024 * 1024, "times": 30}),
    )
    .await;
    for answer in answers.as_array().unwrap() {
        assert_eq!(answer[0], 413, "{answer}");
        assert!(
            answer[1].as_str().unwrap().contains("exceeds the limit"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn the_python_kafka_binding_reads_what_a_kafka_sink_writes_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    let modes = ["binary", "structured"];
    let topics: Vec<String> = modes.iter().map(|m| unique(&format!("sink-{m}"))).collect();
    for (mode, topic) in modes.iter().zip(&topics) {
        ferry_harness::process::write_resource(
            dir.path(),
            &format!("{mode}.yaml"),
            &format!(
                "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: {mode}, namespace: {ns}}}\nspec:\n  \
                 topic: {topic}\n  numPartitions: 1\n  replicationFactor: 1\n  contentMode: {mode}\n"
            ),
        );
    }
    let ferry = ferry_harness::process::Standalone::start(
        env!("CARGO_BIN_EXE_ferry"),
        dir.path(),
        state.path(),
        &bootstrap(),
    )
    .await;
    for (mode, topic) in modes.iter().zip(&topics) {
        let sink = ferry.wait_for_status("KafkaSink", mode, "True").await;
        ferry.ready().await;
        let id = format!("via-{mode}-sink");
        let answers = python(
            "send",
            json!({"url": sink["address"], "api": "core", "mode": "structured", "events": [spec(&id)]}),
        )
        .await;
        assert_eq!(answers[0][0], 202, "{answers}");
        let record = &TopicReader::new(&bootstrap(), topic, 1).read(1, WAIT).await[0];
        assert_same_event(&python_reads(record).await, &id);
    }
}
