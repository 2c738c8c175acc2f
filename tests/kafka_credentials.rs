//! Kafka credentials from Secrets, as the reference reads them, against a
//! broker that takes only TLS with a client certificate (a private Tansu
//! behind a TLS front; certificates made for this run): a KafkaSink and a
//! KafkaSource in `ferry standalone` reach it with the Secrets they name,
//! and a Secret that is missing, or lacks the client certificate, leaves
//! its resource not Ready with the reason. Needs `tansu` on PATH, as the
//! fault tests do.

use std::time::Duration;

use ferry_harness::{
    bootstrap, eventually, http,
    kafka::{header, TopicReader},
    post_event,
    process::{write_resource, Standalone},
    subscriber::Subscriber,
    tls::TlsKafka,
    unique, ContractFile, TestReceiver,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

/// A `v1` Secret of string values (JSON strings are valid YAML).
fn secret(ns: &str, name: &str, values: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {}\n",
        serde_json::Value::Object(data)
    )
}

#[tokio::test]
async fn kafka_sinks_and_sources_reach_a_tls_cluster_with_the_secrets_they_name() {
    let kafka = TlsKafka::start().await;
    let pki = &kafka.pki;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (sink_topic, source_topic) = (unique("tls-sink"), unique("tls-source"));

    // The source's topic exists before the source, made over TLS too.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let made = admin
        .create_topics(
            &[NewTopic::new(&source_topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("topic over TLS");
    assert!(made.iter().all(Result::is_ok), "{made:?}");

    let subscriber = Subscriber::accepting().await;
    let tls = kafka.bootstrap();
    let resources = [
        secret(
            &ns,
            "kafka-mtls",
            &[
                ("protocol", "SSL"),
                ("ca.crt", &pki.ca_pem),
                ("user.crt", &pki.client.cert_pem),
                ("user.key", &pki.client.key_pem),
            ],
        ),
        // A KafkaSource's net picks each value from a key of its own.
        secret(
            &ns,
            "source-tls",
            &[
                ("cert", &pki.client.cert_pem),
                ("key", &pki.client.key_pem),
                ("ca", &pki.ca_pem),
            ],
        ),
        secret(
            &ns,
            "server-only",
            &[("protocol", "SSL"), ("ca.crt", &pki.ca_pem), ("user.skip", "true")],
        ),
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: archive, namespace: {ns}}}\nspec:\n  \
             topic: {sink_topic}\n  numPartitions: 2\n  replicationFactor: 1\n  bootstrapServers: [\"{tls}\"]\n  \
             auth: {{secret: {{ref: {{name: kafka-mtls}}}}}}\n"
        ),
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: no-client-cert, namespace: {ns}}}\nspec:\n  \
             topic: {sink_topic}\n  bootstrapServers: [\"{tls}\"]\n  auth: {{secret: {{ref: {{name: server-only}}}}}}\n"
        ),
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: no-secret, namespace: {ns}}}\nspec:\n  \
             topic: {sink_topic}\n  bootstrapServers: [\"{tls}\"]\n  auth: {{secret: {{ref: {{name: nowhere}}}}}}\n"
        ),
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: tls-in, namespace: {ns}}}\nspec:\n  \
             bootstrapServers: [\"{tls}\"]\n  topics: [\"{source_topic}\"]\n  initialOffset: earliest\n  \
             net:\n    tls:\n      enable: true\n      cert: {{secretKeyRef: {{name: source-tls, key: cert}}}}\n      \
             key: {{secretKeyRef: {{name: source-tls, key: key}}}}\n      caCert: {{secretKeyRef: {{name: source-tls, key: ca}}}}\n  \
             sink: {{uri: \"{}\"}}\n",
            subscriber.url()
        ),
    ]
    .join("---\n");
    write_resource(dir.path(), "tls.yaml", &resources);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;

    // In: a KafkaSink made its topic over TLS and writes what it is sent.
    let status = ferry.wait_for_status("KafkaSink", "archive", "True").await;
    let address = status["address"].as_str().expect("an address").to_owned();
    ferry.wait_for_status("KafkaSource", "tls-in", "True").await;
    ferry.ready().await;
    let client = http::client();
    post_event(&client, &address, "over-tls", "dev.example.tls", "/tests").await;
    let records = TopicReader::with(kafka.client_config(), &sink_topic, 2)
        .read(1, WAIT)
        .await;
    assert_eq!(header(&records[0], "ce_id").as_deref(), Some("over-tls"));

    // Out: a record any TLS client wrote reaches the source's sink.
    let producer: FutureProducer = kafka.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::<(), str>::to(&source_topic).payload("hello over TLS"),
            Duration::from_secs(10),
        )
        .await
        .expect("record written over TLS");
    let received = eventually("the record at the sink", WAIT, || {
        let first = subscriber.received().into_iter().next();
        async move { first }
    })
    .await;
    assert_eq!(&received.body[..], b"hello over TLS");
    assert_eq!(received.header("ce-type"), Some("dev.knative.kafka.event"));

    // What cannot work says why, and the rest keeps running.
    let missing = ferry
        .wait_for_status("KafkaSink", "no-secret", "False")
        .await;
    assert_eq!(missing["reason"], "CredentialsUnavailable", "{missing}");
    let message = missing["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Secret {ns}/nowhere not found")),
        "{missing}"
    );
    let refused = ferry
        .wait_for_status("KafkaSink", "no-client-cert", "False")
        .await;
    assert_eq!(refused["reason"], "KafkaClusterUnreachable", "{refused}");
    post_event(
        &client,
        &address,
        "still-served",
        "dev.example.tls",
        "/tests",
    )
    .await;
}

#[tokio::test]
async fn a_route_whose_secret_cannot_be_read_answers_503_and_the_others_202() {
    let b = bootstrap();
    let topic = unique("creds");
    ferry_harness::kafka::create_topic(&b, &topic, 1).await;
    let mut locked = ferry_harness::broker("ns", "locked", &topic, &b);
    locked.auth = Some(
        ferry_common::credentials::SecretAuth::Secret {
            namespace: "ns".into(),
            name: "kafka".into(),
        }
        .to_contract(),
    );
    let open = ferry_harness::broker("ns", "open", &topic, &b);
    let contract = ferry_proto::Contract {
        generation: 1,
        resources: vec![locked, open],
        ..Default::default()
    };
    let file = ContractFile::new(&contract);
    // No Secret store: the locked broker's Secret cannot be read.
    let receiver = TestReceiver::start(ferry_harness::receiver_config(&file, &b)).await;
    receiver.ready().await;
    let client = http::client();
    let answer = |path: &str| {
        let url = receiver.url(path);
        let client = &client;
        async move {
            http::post(
                client,
                &url,
                &[
                    ("ce-id", "1"),
                    ("ce-specversion", "1.0"),
                    ("ce-type", "t"),
                    ("ce-source", "/s"),
                ],
                "{}".to_owned(),
            )
            .await
        }
    };
    let locked = answer("/ns/locked").await;
    assert_eq!(locked.status, 503, "{}", locked.body);
    assert!(
        locked
            .body
            .contains("Kafka credentials of ns/locked are unavailable")
            && locked.body.contains("Secret ns/kafka"),
        "{}",
        locked.body
    );
    assert_eq!(answer("/ns/open").await.status, 202);
}
