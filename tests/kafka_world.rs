//! KafkaSources and KafkaSinks in `ferry standalone`, on the real broker:
//! records any Kafka client wrote reach a sink as the reference's events;
//! CloudEvent records pass through; `initialOffset` earliest against latest
//! on a topic with a backlog; a failing sink is retried and dead-lettered;
//! a killed standalone loses nothing; a KafkaSink writes records in both
//! content modes into a topic it made; and a broker → KafkaSink → topic →
//! KafkaSource → broker chain delivers every event.

use std::{collections::BTreeSet, time::Duration};

use ferry_harness::{
    bootstrap, eventually,
    http::{self},
    kafka::{
        create_topic, header, headers, partition_count, produce_raw, produce_record, value,
        TopicReader,
    },
    metrics::Scrape,
    post_event,
    process::{write_resource, Standalone},
    subscriber::{Answer, Received, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

fn source_yaml(ns: &str, name: &str, topic: &str, sink: &str, extra: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  \
         bootstrapServers: [\"{bootstrap}\"]\n  topics: [\"{topic}\"]\n{extra}  sink: {sink}\n",
        bootstrap = bootstrap()
    )
}

fn uri(url: &str) -> String {
    format!("{{uri: \"{url}\"}}")
}

/// Folders for a standalone, and a fresh namespace and topic.
struct Setup {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    ns: String,
    topic: String,
}

async fn setup(partitions: i32) -> Setup {
    let topic = unique("plain");
    create_topic(&bootstrap(), &topic, partitions).await;
    Setup {
        dir: tempfile::tempdir().unwrap(),
        state: tempfile::tempdir().unwrap(),
        ns: unique("ns"),
        topic,
    }
}

/// The distinct bodies the sink got, once there are `n` of them.
async fn wait_for_bodies(sink: &Subscriber, n: usize) -> BTreeSet<String> {
    eventually(&format!("{n} distinct records"), WAIT, || {
        let bodies: BTreeSet<String> = sink
            .received()
            .iter()
            .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
            .collect();
        async move { (bodies.len() >= n).then_some(bodies) }
    })
    .await
}

fn by_subject(received: &[Received], offset: i64) -> &Received {
    let subject = format!("partition:0#{offset}");
    received
        .iter()
        .find(|r| r.header("ce-subject") == Some(subject.as_str()))
        .unwrap_or_else(|| panic!("no event for offset {offset}"))
}

#[tokio::test]
async fn a_kafka_source_makes_events_of_plain_records_and_passes_cloudevents_through() {
    let Setup {
        dir,
        state,
        ns,
        topic,
    } = setup(1).await;
    let b = bootstrap();
    // Written before the source exists: it starts at the earliest.
    produce_record(
        &b,
        &topic,
        Some(b"k1"),
        &[("Content-Type", b"Text/Plain"), ("X-Trace_Id", b"t-1")],
        b"hello",
    )
    .await;
    produce_record(
        &b,
        &topic,
        None,
        &[("content-type", b"application/json")],
        b"{\"a\":1}",
    )
    .await;
    produce_record(&b, &topic, None, &[], &[0, 255, 1]).await;
    produce_record(
        &b,
        &topic,
        None,
        &[("bad", &[0xff, 0xfe]), ("good", b"yes")],
        b"x",
    )
    .await;
    let binary_ce: [(&str, &[u8]); 5] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"ce-binary"),
        ("ce_source", b"/producer"),
        ("ce_type", b"dev.example.binary"),
        ("content-type", b"application/json"),
    ];
    produce_record(&b, &topic, Some(b"ck"), &binary_ce, b"{\"b\":2}").await;
    let structured = br#"{"specversion":"1.0","id":"ce-structured","source":"/producer","type":"dev.example.structured","data":{"c":3}}"#;
    produce_record(
        &b,
        &topic,
        None,
        &[("content-type", b"application/cloudevents+json")],
        structured,
    )
    .await;

    let sink = Subscriber::accepting().await;
    let extra = "  initialOffset: earliest\n  ceOverrides: {extensions: {team: ferry}}\n";
    write_resource(
        dir.path(),
        "source.yaml",
        &source_yaml(&ns, "src", &topic, &uri(&sink.url()), extra),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &b).await;
    let status = ferry.wait_for_status("KafkaSource", "src", "True").await;
    assert_eq!(status["sinkUri"], sink.url(), "{status}");
    let source = format!("/apis/v1/namespaces/{ns}/kafkasources/src#{topic}");
    assert_eq!(
        status["ceAttributes"][0]["type"], "dev.knative.kafka.event",
        "{status}"
    );
    assert_eq!(status["ceAttributes"][0]["source"], source, "{status}");

    let got = sink.wait_for(6, WAIT).await;
    assert_eq!(got.len(), 6, "each record once");
    for r in got.iter().filter(|r| r.id().starts_with("partition:")) {
        assert_eq!(r.header("ce-type"), Some("dev.knative.kafka.event"));
        assert_eq!(r.header("ce-source"), Some(source.as_str()));
        assert_eq!(r.header("ce-specversion"), Some("1.0"));
        assert!(r.header("ce-time").is_some_and(|t| t.ends_with('Z')));
        assert_eq!(r.header("ce-team"), Some("ferry"), "the overrides");
    }
    let text = by_subject(&got, 0);
    assert_eq!(text.id(), "partition:0/offset:0");
    assert_eq!(text.header("content-type"), Some("text/plain"));
    assert_eq!(text.header("ce-key"), Some("k1"));
    assert_eq!(text.header("ce-partitionkey"), Some("k1"));
    assert_eq!(text.header("ce-kafkaheaderxtraceid"), Some("t-1"));
    assert_eq!(text.body.as_ref(), b"hello");
    let json = by_subject(&got, 1);
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.header("ce-key"), None);
    assert_eq!(json.body.as_ref(), b"{\"a\":1}");
    let bytes = by_subject(&got, 2);
    assert_eq!(bytes.header("content-type"), None);
    assert_eq!(bytes.body.as_ref(), &[0, 255, 1]);
    let headers = by_subject(&got, 3);
    assert_eq!(headers.header("ce-kafkaheadergood"), Some("yes"));
    assert_eq!(
        headers.header("ce-kafkaheaderbad"),
        None,
        "not UTF-8: left out"
    );

    let binary = got
        .iter()
        .find(|r| r.id() == "ce-binary")
        .expect("binary CE");
    assert_eq!(binary.header("ce-type"), Some("dev.example.binary"));
    assert_eq!(binary.header("ce-source"), Some("/producer"));
    assert_eq!(binary.header("ce-kafkaheadercontenttype"), None);
    assert_eq!(binary.body.as_ref(), b"{\"b\":2}");
    let structured = got
        .iter()
        .find(|r| r.id() == "ce-structured")
        .expect("structured CE");
    assert_eq!(structured.header("ce-type"), Some("dev.example.structured"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&structured.body).unwrap(),
        serde_json::json!({"c": 3})
    );

    // The dispatcher's view of the source, as for a trigger.
    eventually("the source's deliveries in /resources", WAIT, || async {
        let resources = ferry.resources().await;
        let status = resources
            .iter()
            .find(|r| r["kind"] == "KafkaSource" && r["name"] == "src")?;
        (status["deliveries"] == 6 && status["lag"] == 0).then_some(())
    })
    .await;
    let scrape = Scrape::get(&ferry.admin).await;
    assert_eq!(
        scrape.sum("ferry_dispatch_skipped_headers_total", &[]),
        1.0,
        "the one non-UTF-8 header is counted"
    );
}

#[tokio::test]
async fn initial_offset_earliest_reads_the_backlog_and_latest_does_not_and_deletion_takes_the_group(
) {
    let Setup {
        dir,
        state,
        ns,
        topic,
    } = setup(1).await;
    let b = bootstrap();
    for i in 0..3 {
        produce_record(&b, &topic, None, &[], format!("old-{i}").as_bytes()).await;
    }
    let (early, late) = (Subscriber::accepting().await, Subscriber::accepting().await);
    let yaml = |name: &str, sink: &Subscriber, offset: &str| {
        let extra = format!("  initialOffset: {offset}\n  consumerGroup: {ns}-{name}\n");
        source_yaml(&ns, name, &topic, &uri(&sink.url()), &extra)
    };
    write_resource(dir.path(), "early.yaml", &yaml("early", &early, "earliest"));
    write_resource(dir.path(), "late.yaml", &yaml("late", &late, "latest"));
    let _ferry = Standalone::start(FERRY, dir.path(), state.path(), &b).await;
    // The latest one's start is pinned before anything new is written.
    ferry_harness::kafka::wait_for_group(&b, &format!("{ns}-late"), &topic, 1).await;
    for i in 0..2 {
        produce_record(&b, &topic, None, &[], format!("new-{i}").as_bytes()).await;
    }
    let bodies = |got: Vec<Received>| -> Vec<String> {
        got.iter()
            .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
            .collect()
    };
    let early_got = bodies(early.wait_for(5, WAIT).await);
    assert_eq!(
        early_got,
        ["old-0", "old-1", "old-2", "new-0", "new-1"],
        "in order"
    );
    // The early one has read past the new records, from the same reader.
    let late_got = bodies(late.wait_for(2, WAIT).await);
    assert_eq!(late_got, ["new-0", "new-1"]);

    // Deleting a source deletes its consumer group, as the reference does.
    std::fs::remove_file(dir.path().join("late.yaml")).unwrap();
    ferry_harness::kafka::wait_for_group_deleted(&b, &format!("{ns}-late"), &topic, 1).await;
}

#[tokio::test]
async fn a_failing_sink_is_retried_then_dead_lettered() {
    let Setup {
        dir,
        state,
        ns,
        topic,
    } = setup(1).await;
    let failing = Subscriber::scripted(|_, _| Answer::status(500).with_body("down")).await;
    let dead = Subscriber::accepting().await;
    let extra = format!(
        "  initialOffset: earliest\n  delivery:\n    retry: 2\n    backoffPolicy: linear\n    backoffDelay: PT0.05S\n    \
         deadLetterSink: {}\n",
        uri(&dead.url())
    );
    write_resource(
        dir.path(),
        "source.yaml",
        &source_yaml(&ns, "src", &topic, &uri(&failing.url()), &extra),
    );
    produce_record(&bootstrap(), &topic, None, &[], b"doomed").await;
    let _ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let dead_lettered = dead.wait_for(1, WAIT).await;
    let event = &dead_lettered[0];
    assert_eq!(event.id(), "partition:0/offset:0");
    assert_eq!(event.header("ce-knativeerrorcode"), Some("500"));
    assert_eq!(event.body.as_ref(), b"doomed");
    assert_eq!(failing.received().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_killed_standalone_loses_no_record() {
    let Setup {
        dir,
        state,
        ns,
        topic,
    } = setup(2).await;
    let b = bootstrap();
    let sink =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(5))).await;
    // Ordered: one delivery in flight per partition, so the kill comes
    // while most records are still to be delivered.
    let extra = "  initialOffset: earliest\n";
    write_resource(
        dir.path(),
        "source.yaml",
        &source_yaml(&ns, "src", &topic, &uri(&sink.url()), extra),
    );
    let count = 300;
    let sends = (0..count).map(|i| {
        let (b, topic) = (b.clone(), topic.clone());
        async move {
            let key = format!("k{i}");
            produce_record(
                &b,
                &topic,
                Some(key.as_bytes()),
                &[],
                format!("r{i}").as_bytes(),
            )
            .await
        }
    });
    futures::future::join_all(sends).await;
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &b).await;
    sink.wait_for(50, WAIT).await;
    drop(ferry); // SIGKILL, mid-stream
    let _ferry = Standalone::start(FERRY, dir.path(), state.path(), &b).await;
    let expected: BTreeSet<String> = (0..count).map(|i| format!("r{i}")).collect();
    assert_eq!(wait_for_bodies(&sink, expected.len()).await, expected);
}

#[tokio::test]
async fn a_kafka_sink_writes_both_content_modes_into_the_topic_it_made() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (binary_topic, structured_topic) = (unique("sink-binary"), unique("sink-structured"));
    let sink_yaml = |name: &str, topic: &str, mode: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  \
             topic: {topic}\n  numPartitions: 3\n  replicationFactor: 1\n  bootstrapServers: [\"{b}\"]\n  contentMode: {mode}\n",
            b = bootstrap()
        )
    };
    write_resource(
        dir.path(),
        "binary.yaml",
        &sink_yaml("bin", &binary_topic, "binary"),
    );
    write_resource(
        dir.path(),
        "structured.yaml",
        &sink_yaml("str", &structured_topic, "structured"),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let status = ferry.wait_for_status("KafkaSink", "bin", "True").await;
    let address = status["address"].as_str().expect("an address").to_owned();
    assert!(address.ends_with(&format!("/{ns}/bin")), "{status}");
    let structured_status = ferry.wait_for_status("KafkaSink", "str", "True").await;
    assert_eq!(partition_count(&bootstrap(), &binary_topic), 3);
    assert_eq!(partition_count(&bootstrap(), &structured_topic), 3);
    ferry.ready().await;

    let client = http::client();
    ferry_harness::send_event(
        &client,
        &address,
        "e-bin",
        "dev.example.a",
        &[
            ("ce-partitionkey", "order-7"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    let structured_address = structured_status["address"].as_str().unwrap();
    post_event(
        &client,
        structured_address,
        "e-str",
        "dev.example.b",
        "/tests",
    )
    .await;

    let record = &TopicReader::new(&bootstrap(), &binary_topic, 3)
        .read(1, WAIT)
        .await[0];
    assert_eq!(header(record, "ce_id").as_deref(), Some("e-bin"));
    assert_eq!(header(record, "ce_type").as_deref(), Some("dev.example.a"));
    assert_eq!(
        header(record, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(value(record), b"{\"id\":\"e-bin\"}");
    assert_eq!(
        rdkafka::Message::key(record),
        Some(&b"order-7"[..]),
        "the partition key is the record's key"
    );
    let record = &TopicReader::new(&bootstrap(), &structured_topic, 3)
        .read(1, WAIT)
        .await[0];
    let content_type = header(record, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/cloudevents+json"),
        "{content_type}"
    );
    assert!(headers(record).iter().all(|(n, _)| !n.starts_with("ce_")));
    let event: serde_json::Value = serde_json::from_slice(&value(record)).unwrap();
    assert_eq!(event["id"], "e-str");
    assert_eq!(event["type"], "dev.example.b");
    assert_eq!(event["data"], serde_json::json!({}));

    // What the receiver refuses for a broker, it refuses for a sink.
    let bad = http::post(&client, &address, &[("ce-id", "x")], "{}".to_owned()).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn broker_to_kafka_sink_to_kafka_source_to_broker_loses_nothing() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let topic = unique("bridge");
    let end = Subscriber::accepting().await;
    let broker = |name: &str| {
        format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}, namespace: {ns}}}\n")
    };
    let trigger = |name: &str, broker: &str, subscriber: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  \
             broker: {broker}\n  subscriber: {subscriber}\n"
        )
    };
    let to_sink =
        "{ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: bridge}}";
    let to_b = "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}";
    let yaml = [
        broker("a"),
        trigger("out", "a", to_sink),
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: bridge, namespace: {ns}}}\nspec:\n  \
             topic: {topic}\n  numPartitions: 2\n  replicationFactor: 1\n  bootstrapServers: [\"{b}\"]\n",
            b = bootstrap()
        ),
        source_yaml(&ns, "in", &topic, to_b, "  initialOffset: earliest\n"),
        broker("b"),
        trigger("end", "b", &uri(&end.url())),
    ]
    .join("---\n");
    write_resource(dir.path(), "chain.yaml", &yaml);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    for (kind, name) in [
        ("Trigger", "out"),
        ("KafkaSink", "bridge"),
        ("KafkaSource", "in"),
        ("Trigger", "end"),
    ] {
        ferry.wait_for_status(kind, name, "True").await;
    }
    ferry.ready().await;
    let a = ferry.wait_for_status("Broker", "a", "True").await["address"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first trigger's start is pinned when its reader starts: send
    // until events come out at the end, then the batch that is counted.
    let client = http::client();
    let mut warm = 0;
    eventually("the chain delivering", WAIT, || {
        warm += 1;
        let (client, a, id) = (client.clone(), a.clone(), format!("warm-{warm}"));
        let through = !end.received().is_empty();
        async move {
            post_event(&client, &a, &id, "dev.example.warm", "/chain").await;
            through.then_some(())
        }
    })
    .await;
    let ids: Vec<String> = (0..50).map(|i| format!("chain-{i}")).collect();
    for id in &ids {
        post_event(&client, &a, id, "dev.example.chain", "/chain").await;
    }
    let got = end.wait_for_ids(&ids, WAIT).await;
    for id in &ids {
        let copies: Vec<_> = got.iter().filter(|r| r.id() == id).collect();
        assert_eq!(copies.len(), 1, "{id} arrived once");
        assert_eq!(copies[0].header("ce-type"), Some("dev.example.chain"));
        assert_eq!(
            copies[0].header("ce-source"),
            Some("/chain"),
            "passed through as it was"
        );
    }
}

#[tokio::test]
async fn bad_kafka_sources_and_sinks_say_why() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let sink = Subscriber::accepting().await;
    let missing = unique("missing");
    let resources = [
        source_yaml(&ns, "no-topic", &missing, &uri(&sink.url()), ""),
        source_yaml(&ns, "bad-offset", &missing, &uri(&sink.url()), "  initialOffset: middle\n"),
        source_yaml(
            &ns,
            "no-sink",
            &missing,
            "{ref: {apiVersion: v1, kind: Pod, name: p}}",
            "",
        ),
        format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: external, namespace: {ns}}}\nspec:\n  \
             topic: {missing}\n  bootstrapServers: [\"{b}\"]\n",
            b = bootstrap()
        ),
    ]
    .join("---\n");
    write_resource(dir.path(), "bad.yaml", &resources);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    for (kind, name, reason, message) in [
        (
            "KafkaSource",
            "no-topic",
            "TopicsNotPresentOrInvalid",
            "does not exist",
        ),
        (
            "KafkaSource",
            "bad-offset",
            "InvalidSpec",
            "spec.initialOffset",
        ),
        ("KafkaSource", "no-sink", "NotFound", "Pod"),
        (
            "KafkaSink",
            "external",
            "TopicsNotPresentOrInvalid",
            "does not exist",
        ),
    ] {
        let status = ferry.wait_for_status(kind, name, "False").await;
        assert_eq!(status["reason"], reason, "{status}");
        assert!(
            status["message"].as_str().unwrap().contains(message),
            "{status}"
        );
    }
    assert!(
        !ferry_harness::kafka::topic_exists(&bootstrap(), &missing),
        "an undeclared topic is not made"
    );
}

/// A contract as the reference's control plane writes a KafkaSource's (no
/// ingress, the user's group, no `initialOffset`: the data plane starts a
/// new group at the earliest offset), read by two dispatcher replicas.
#[tokio::test]
async fn two_dispatchers_share_a_kafka_sources_topics() {
    let b = bootstrap();
    let topics = [unique("shared-a"), unique("shared-b")];
    for topic in &topics {
        create_topic(&b, topic, 2).await;
    }
    // Held until both replicas read a share of the partitions.
    let (open, gate) = tokio::sync::watch::channel(false);
    let sink = Subscriber::scripted(move |_, _| Answer::status(202).until(gate.clone())).await;
    let reference = ferry_proto::Reference {
        uuid: "source-uid".into(),
        namespace: "ns".into(),
        name: "shared".into(),
        kind: "KafkaSource".into(),
        group_version: "sources.knative.dev/v1".into(),
        ..Default::default()
    };
    let contract = ferry_harness::ContractFile::new(&ferry_proto::Contract {
        generation: 1,
        resources: vec![ferry_proto::Resource {
            uid: "source-uid".into(),
            topics: topics.to_vec(),
            bootstrap_servers: b.clone(),
            reference: Some(reference.clone()),
            egresses: vec![ferry_proto::Egress {
                consumer_group: unique("shared-group"),
                destination: sink.url(),
                uid: "source-uid".into(),
                delivery_order: ferry_proto::DeliveryOrder::Ordered as i32,
                reference: Some(reference),
                reply_strategy: Some(ferry_proto::egress::ReplyStrategy::DiscardReply(
                    ferry_proto::Empty {},
                )),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    for (i, topic) in topics.iter().enumerate() {
        // Every partition has records, whichever replica reads it.
        for n in 0..50 {
            produce_raw(&b, topic, n % 2, &format!("{i}-{n}")).await;
        }
    }
    let admins = [ferry_harness::free_port(), ferry_harness::free_port()];
    let _replicas: Vec<_> = admins
        .iter()
        .map(|&admin| {
            ferry_harness::process::FerryProcess::dispatcher_with(
                FERRY,
                &contract.path(),
                &b,
                admin,
                &["--lag-interval-ms", "200"],
            )
        })
        .collect();
    for admin in admins {
        ferry_harness::wait_ready(&format!("http://127.0.0.1:{admin}/readyz")).await;
    }
    // Each replica shows lag for the partitions it reads: the four are
    // split between them once both have joined the readers' groups.
    eventually(
        "the partitions split between the replicas",
        WAIT,
        || async {
            let mut shares = Vec::new();
            for admin in admins {
                let scrape = Scrape::get(&format!("http://127.0.0.1:{admin}")).await;
                let lag = [("kn_kafkasource_name", "shared")];
                shares.push(scrape.count("ferry_dispatch_consumer_lag", &lag));
            }
            (shares.iter().all(|&n| n > 0) && shares.iter().sum::<usize>() == 4).then_some(())
        },
    )
    .await;
    open.send_replace(true);
    let expected: BTreeSet<String> = (0..2)
        .flat_map(|i| (0..50).map(move |n| format!("{i}-{n}")))
        .collect();
    assert_eq!(wait_for_bodies(&sink, expected.len()).await, expected);
    let sources: BTreeSet<String> = sink
        .received()
        .iter()
        .map(|r| r.header("ce-source").unwrap().to_owned())
        .collect();
    assert_eq!(
        sources,
        topics
            .iter()
            .map(|t| format!("/apis/v1/namespaces/ns/kafkasources/shared#{t}"))
            .collect()
    );
    // Each replica delivered its share.
    for admin in admins {
        let scrape = Scrape::get(&format!("http://127.0.0.1:{admin}")).await;
        let sent = scrape.sum("http_events_sent_total", &[]);
        assert!(sent > 0.0, "the replica on {admin} delivered nothing");
    }
}
