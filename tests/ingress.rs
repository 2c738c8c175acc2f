//! The broker ingress against a real Kafka broker: what is posted is what
//! lands in the topic, byte for byte; every refusal has its status and
//! reason.

use std::time::Duration;

use cloudevents::{binding::rdkafka::MessageExt, AttributesReader};
use ferry_harness::{
    bootstrap, broker, eventually,
    http::{self, post},
    kafka::{create_topic, header, headers, value, TopicReader},
    metrics::Scrape,
    receiver_config, unique, ContractFile, TestReceiver,
};
use ferry_proto::Contract;
use rdkafka::Message;

const READ: Duration = Duration::from_secs(20);

/// A receiver serving one broker `ns/<name>` on a fresh topic.
struct OneBroker {
    receiver: TestReceiver,
    topic: String,
    path: String,
    _contract: ContractFile,
}

async fn one_broker(partitions: i32, tweak: impl FnOnce(&mut ferry_proto::Resource)) -> OneBroker {
    let bootstrap = bootstrap();
    let topic = unique("knative-broker-ns");
    create_topic(&bootstrap, &topic, partitions).await;
    let name = unique("b");
    let mut resource = broker("ns", &name, &topic, "");
    tweak(&mut resource);
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![resource],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    OneBroker {
        receiver,
        topic,
        path: format!("/ns/{name}"),
        _contract: contract,
    }
}

fn sorted(mut pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    pairs.sort();
    pairs
}

fn pairs(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    sorted(
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
    )
}

#[tokio::test]
async fn binary_mode_reaches_kafka_unchanged() {
    let b = one_broker(2, |_| {}).await;
    let answer = post(
        &http::client(),
        &b.receiver.url(&b.path),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e-1"),
            ("ce-source", "/orders"),
            ("ce-type", "com.example.order.created"),
            ("ce-time", "2024-01-01T00:00:00Z"),
            ("ce-greeting", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
            ("ce-partitionkey", "customer-7"),
            ("content-type", "application/octet-stream"),
        ],
        vec![0u8, 1, 2, 255],
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let records = TopicReader::new(&bootstrap(), &b.topic, 2)
        .read(1, READ)
        .await;
    let record = &records[0];
    assert_eq!(record.key(), Some(&b"customer-7"[..]));
    assert_eq!(
        sorted(headers(record)),
        pairs(&[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e-1"),
            ("ce_source", b"/orders"),
            ("ce_type", b"com.example.order.created"),
            ("ce_time", b"2024-01-01T00:00:00Z"),
            ("ce_greeting", "Euro € 😀".as_bytes()),
            ("ce_partitionkey", b"customer-7"),
            ("content-type", b"application/octet-stream"),
        ])
    );
    assert_eq!(value(record), [0, 1, 2, 255]);

    // The CloudEvents SDK reads the record as the same event.
    let event = record.to_event().expect("the SDK reads Ferry's records");
    assert_eq!(event.id(), "e-1");
    assert_eq!(event.ty(), "com.example.order.created");
    assert_eq!(
        event.extension("greeting").unwrap().to_string(),
        "Euro € 😀"
    );
}

#[tokio::test]
async fn structured_mode_is_written_binary_by_default() {
    let b = one_broker(1, |_| {}).await;
    let body = r#"{"specversion":"1.0","id":"s-1","source":"/s","type":"t","count":3,"datacontenttype":"application/json","data":{"b": 2.50, "a": ["x"]}}"#;
    let answer = post(
        &http::client(),
        &b.receiver.url(&b.path),
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        body,
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let record = &TopicReader::new(&bootstrap(), &b.topic, 1)
        .read(1, READ)
        .await[0];
    assert_eq!(record.key(), None);
    assert_eq!(
        sorted(headers(record)),
        pairs(&[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"s-1"),
            ("ce_source", b"/s"),
            ("ce_type", b"t"),
            ("ce_count", b"3"),
            ("content-type", b"application/json"),
        ])
    );
    assert_eq!(value(record), br#"{"b": 2.50, "a": ["x"]}"#);
}

#[tokio::test]
async fn structured_ingress_writes_the_json_format() {
    let b = one_broker(1, |r| {
        r.ingress.as_mut().unwrap().content_mode = ferry_proto::ContentMode::Structured as i32;
    })
    .await;
    let client = http::client();
    let body = r#"{"specversion":"1.0","id":"s-2","source":"/s","type":"t","data":{"k": "v"}}"#;
    let answer = post(
        &client,
        &b.receiver.url(&b.path),
        &[("content-type", "application/cloudevents+json")],
        body,
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    // A binary-mode request is turned into the JSON format.
    let answer = post(
        &client,
        &b.receiver.url(&b.path),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "s-3"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "text/plain"),
        ],
        "plain text",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let records = TopicReader::new(&bootstrap(), &b.topic, 1)
        .read(2, READ)
        .await;
    assert_eq!(
        header(&records[0], "content-type").unwrap(),
        "application/cloudevents+json; charset=UTF-8"
    );
    assert_eq!(
        value(&records[0]),
        body.as_bytes(),
        "unchanged structured events are written as received"
    );
    let second: serde_json::Value = serde_json::from_slice(&value(&records[1])).unwrap();
    assert_eq!(
        second,
        serde_json::json!({"specversion":"1.0","id":"s-3","source":"/s","type":"t","datacontenttype":"text/plain","data":"plain text"})
    );
    assert_eq!(records[1].to_event().unwrap().id(), "s-3");
}

#[tokio::test]
async fn batches_are_written_whole_or_refused_whole() {
    let b = one_broker(1, |_| {}).await;
    let client = http::client();
    let url = b.receiver.url(&b.path);
    let batch_ct = [("content-type", "application/cloudevents-batch+json")];
    let invalid = r#"[{"specversion":"1.0","id":"bad-1","source":"/s","type":"t"},{"specversion":"1.0","id":"bad-2","source":"/s"}]"#;
    let answer = post(&client, &url, &batch_ct, invalid).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .contains("event 1 of the batch: missing required attribute 'type'"),
        "{}",
        answer.body
    );

    let valid = r#"[{"specversion":"1.0","id":"b-1","source":"/s","type":"t","data":1},{"specversion":"1.0","id":"b-2","source":"/s","type":"t","ext":"x"},{"specversion":"1.0","id":"b-3","source":"/s","type":"t"}]"#;
    let answer = post(&client, &url, &batch_ct, valid).await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    // Nothing of the refused batch was written: the first records are the valid batch's.
    let records = TopicReader::new(&bootstrap(), &b.topic, 1)
        .read(3, READ)
        .await;
    let ids: Vec<_> = records
        .iter()
        .map(|r| header(r, "ce_id").unwrap())
        .collect();
    assert_eq!(ids, ["b-1", "b-2", "b-3"]);
    assert_eq!(value(&records[0]), b"1");
    assert_eq!(header(&records[1], "ce_ext").as_deref(), Some("x"));
}

#[tokio::test]
async fn overrides_are_left_to_the_dispatcher() {
    let b = one_broker(1, |r| {
        r.cloud_event_overrides = Some(ferry_proto::CloudEventOverrides {
            extensions: [
                ("region".to_string(), "eu-west".to_string()),
                ("tier".to_string(), "gold".to_string()),
            ]
            .into(),
        });
    })
    .await;
    let answer = post(
        &http::client(),
        &b.receiver.url(&b.path),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "o-1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-region", "us"),
        ],
        "",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let record = &TopicReader::new(&bootstrap(), &b.topic, 1)
        .read(1, READ)
        .await[0];
    // The reference's receiver writes events as sent; its dispatcher sets
    // the overrides on every record it delivers (tests/compat.rs).
    assert_eq!(header(record, "ce_region").as_deref(), Some("us"));
    assert_eq!(header(record, "ce_tier"), None);
    assert_eq!(record.payload(), None, "no data, no value");
}

#[tokio::test]
async fn every_refusal_has_its_status_and_reason() {
    let b = one_broker(1, |_| {}).await;
    let client = http::client();
    let url = b.receiver.url(&b.path);
    let required = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = required.to_vec();
        h.extend_from_slice(extra);
        h
    };
    let without = |name: &str| {
        required
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect::<Vec<_>>()
    };
    let structured = [("content-type", "application/cloudevents+json")];
    let batch = [("content-type", "application/cloudevents-batch+json")];

    // (headers, body, status, reason)
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (without("ce-id"), String::new(), 400, "missing required attribute 'id'"),
        (without("ce-type"), String::new(), 400, "missing required attribute 'type'"),
        (with(&[("ce-source", "")]).into_iter().filter(|h| *h != ("ce-source", "/s")).collect(), String::new(), 400, "attribute 'source' must not be empty"),
        (vec![("ce-specversion", "2.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")], String::new(), 400, "unsupported specversion '2.0'"),
        (with(&[("ce-my_ext", "x")]), String::new(), 400, "invalid attribute name 'my_ext'"),
        (with(&[("ce-time", "not-a-time")]), String::new(), 400, "'not-a-time' is not an RFC 3339 timestamp"),
        (with(&[("ce-ext", "%E2%82")]), String::new(), 400, "not UTF-8 after percent-decoding"),
        (vec![("content-type", "text/plain")], "hello".into(), 400, "no ce-specversion header"),
        (structured.to_vec(), r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x","data_base64":"eA=="}"#.into(), 400, "both 'data' and 'data_base64'"),
        (structured.to_vec(), "{not json".into(), 400, "not a CloudEvent in JSON format"),
        (with(&[("ce-id", "2")]), String::new(), 400, "attribute 'id' appears more than once"),
        (structured.to_vec(), r#"{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}"#.into(), 400, "'id' appears more than once"),
        (with(&[("ce-", "x")]), String::new(), 400, "invalid attribute name ''"),
        (batch.to_vec(), r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#.into(), 400, "not a CloudEvent in JSON format"),
        (batch.to_vec(), r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","type":"t"}]"#.into(), 400, "event 1 of the batch: missing required attribute 'source'"),
    ];
    for (headers, body, status, reason) in cases {
        let answer = post(&client, &url, &headers, body).await;
        assert_eq!(answer.status, status, "{headers:?}: {}", answer.body);
        assert!(
            answer.body.contains(reason),
            "{headers:?}: expected '{reason}' in '{}'",
            answer.body
        );
    }

    let answer = post(&client, &b.receiver.url("/ns/nobody-here"), &required, "").await;
    assert_eq!(answer.status, 404);
    assert!(
        answer
            .body
            .contains("no broker or channel at /ns/nobody-here"),
        "{}",
        answer.body
    );

    for method in [
        ::http::Method::GET,
        ::http::Method::PUT,
        ::http::Method::DELETE,
    ] {
        let answer = http::request(&client, method.clone(), &url, &required, "").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.headers["allow"], "POST");
    }

    // The test receiver's limit is 64 KiB.
    let answer = post(&client, &url, &required, vec![b'x'; 64 * 1024 + 1]).await;
    assert_eq!(answer.status, 413);
    assert!(
        answer.body.contains("exceeds the limit of 65536 bytes"),
        "{}",
        answer.body
    );
    let event = format!(
        r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"{}"}}"#,
        "x".repeat(1000)
    );
    let oversized_batch = format!("[{}]", vec![event; 70].join(","));
    let answer = post(&client, &url, &batch, oversized_batch).await;
    assert_eq!(
        answer.status, 413,
        "a batch over the limit: {}",
        answer.body
    );
    let answer = post(&client, &url, &required, vec![b'x'; 64 * 1024]).await;
    assert_eq!(
        answer.status, 202,
        "a body at the limit is accepted: {}",
        answer.body
    );

    // A trailing slash is tolerated.
    let answer = post(&client, &format!("{url}/"), &required, "").await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    for (path, status) in [("/healthz", 200), ("/readyz", 200)] {
        assert_eq!(
            http::request(&client, ::http::Method::GET, &b.receiver.url(path), &[], "")
                .await
                .status,
            status
        );
        assert_eq!(
            http::request(
                &client,
                ::http::Method::GET,
                &b.receiver.admin_url(path),
                &[],
                ""
            )
            .await
            .status,
            status
        );
    }
    let metrics = http::request(
        &client,
        ::http::Method::GET,
        &b.receiver.admin_url("/metrics"),
        &[],
        "",
    )
    .await;
    assert!(
        metrics
            .body
            .contains(r#"ferry_ingress_requests_total{code="400"} 15"#),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_get_413() {
    use futures::stream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let b = one_broker(1, |_| {}).await;
    // No content-length: the limit is enforced while reading.
    let chunks: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> = (0..80)
        .map(|_| Ok(Frame::data(bytes::Bytes::from(vec![b'y'; 1024]))))
        .collect();
    let request = ::http::Request::post(b.receiver.url(&b.path))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.expect("response");
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn host_routing_for_channels() {
    let bootstrap = bootstrap();
    let topic = unique("knative-messaging-kafka.ns.ch");
    create_topic(&bootstrap, &topic, 1).await;
    let mut channel = broker("ns", "unused", &topic, "");
    channel.ingress = Some(ferry_proto::Ingress {
        host: "ch-kn-channel.ns.svc.cluster.local".into(),
        ..Default::default()
    });
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![channel],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    let answer = post(
        &http::client(),
        &receiver.url("/"),
        &[
            ("host", "ch-kn-channel.ns.svc.cluster.local"),
            ("ce-specversion", "1.0"),
            ("ce-id", "h-1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ],
        "",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let record = &TopicReader::new(&bootstrap, &topic, 1).read(1, READ).await[0];
    assert_eq!(header(record, "ce_id").as_deref(), Some("h-1"));
}

#[tokio::test]
async fn two_brokers_take_concurrent_posts_on_their_own_topics() {
    let bootstrap = bootstrap();
    let (t1, t2) = (
        unique("knative-broker-ns-one"),
        unique("knative-broker-ns-two"),
    );
    create_topic(&bootstrap, &t1, 3).await;
    create_topic(&bootstrap, &t2, 3).await;
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![broker("ns", "one", &t1, ""), broker("ns", "two", &t2, "")],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    let client = http::client();
    let n = 50;
    let posts = (0..n).flat_map(|i| {
        ["one", "two"].map(|b| {
            let client = client.clone();
            let url = receiver.url(&format!("/ns/{b}"));
            async move {
                let id = format!("{b}-{i}");
                let answer = post(
                    &client,
                    &url,
                    &[
                        ("ce-specversion", "1.0"),
                        ("ce-id", &id),
                        ("ce-source", "/s"),
                        ("ce-type", "t"),
                    ],
                    "",
                )
                .await;
                assert_eq!(answer.status, 202, "{}", answer.body);
            }
        })
    });
    futures::future::join_all(posts).await;
    for (topic, broker) in [(&t1, "one"), (&t2, "two")] {
        let records = TopicReader::new(&bootstrap, topic, 3).read(n, READ).await;
        let mut ids: Vec<String> = records
            .iter()
            .map(|r| header(r, "ce_id").unwrap())
            .collect();
        ids.sort();
        let mut expected: Vec<String> = (0..n).map(|i| format!("{broker}-{i}")).collect();
        expected.sort();
        assert_eq!(ids, expected, "every event on its own broker's topic, once");
    }
}

#[tokio::test]
async fn contract_reload_adds_and_removes_brokers_while_requests_run() {
    let bootstrap = bootstrap();
    let (t1, t2) = (
        unique("knative-broker-ns-stay"),
        unique("knative-broker-ns-new"),
    );
    create_topic(&bootstrap, &t1, 1).await;
    create_topic(&bootstrap, &t2, 1).await;
    let stay = broker("ns", "stay", &t1, "");
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![stay.clone()],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    let client = http::client();
    let headers = |id: &'static str| {
        [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
    };

    // A steady stream to the broker that stays, across both reloads.
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = {
        let (client, url, stop) = (client.clone(), receiver.url("/ns/stay"), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.is_cancelled() {
                let answer = post(&client, &url, &headers("steady"), "").await;
                assert_eq!(
                    answer.status, 202,
                    "the steady broker never fails: {}",
                    answer.body
                );
                sent += 1;
            }
            sent
        })
    };

    let new_url = receiver.url("/ns/new");
    assert_eq!(
        post(&client, &new_url, &headers("before"), "").await.status,
        404
    );
    contract.write(&Contract {
        generation: 2,
        resources: vec![stay.clone(), broker("ns", "new", &t2, "")],
        ..Default::default()
    });
    eventually("the new broker to accept events", Duration::from_secs(15), || {
        let (client, url) = (client.clone(), new_url.clone());
        async move { (post(&client, &url, &headers("added"), "").await.status == 202).then_some(()) }
    })
    .await;
    contract.write(&Contract {
        generation: 3,
        resources: vec![stay],
        ..Default::default()
    });
    eventually(
        "the removed broker to answer 404",
        Duration::from_secs(15),
        || {
            let (client, url) = (client.clone(), new_url.clone());
            async move {
                (post(&client, &url, &headers("removed"), "").await.status == 404).then_some(())
            }
        },
    )
    .await;
    stop.cancel();
    let sent = stream.await.unwrap();
    assert!(sent > 0);
    let records = TopicReader::new(&bootstrap, &t2, 1).read(1, READ).await;
    assert_eq!(header(&records[0], "ce_id").as_deref(), Some("added"));
    let steady = TopicReader::new(&bootstrap, &t1, 1).read(sent, READ).await;
    assert_eq!(steady.len(), sent);
}

/// The event-type label can be switched off to bound cardinality, and a
/// contract that does not parse is counted while the previous one serves.
#[tokio::test]
async fn metrics_without_event_types_and_with_contract_errors() {
    let bootstrap = bootstrap();
    let topic = unique("knative-broker-ns");
    create_topic(&bootstrap, &topic, 1).await;
    let name = unique("b");
    let contract = ContractFile::new(&Contract {
        generation: 3,
        resources: vec![broker("ns", &name, &topic, "")],
        ..Default::default()
    });
    let config = ferry_receiver::Config {
        metrics_event_type: false,
        ..receiver_config(&contract, &bootstrap)
    };
    let receiver = TestReceiver::start(config).await;
    receiver.ready().await;
    let client = http::client();
    let url = receiver.url(&format!("/ns/{name}"));
    ferry_harness::send_event(&client, &url, "1", "t", &[]).await;

    let admin = receiver.admin_url("");
    let scrape = Scrape::get(&admin).await;
    let latency = "kn_eventing_dispatch_latency_ms_count";
    assert_eq!(
        scrape.sum(latency, &[("kn_broker_name", &name)]),
        1.0,
        "{}",
        scrape.text
    );
    assert!(
        !scrape.has_label(latency, "cloudevents_type"),
        "{}",
        scrape.text
    );
    assert_eq!(scrape.sum("ferry_contract_generation", &[]), 3.0);

    // Replaced whole, as a ConfigMap update is, so no empty file is seen.
    let staged = contract.path().with_extension("staged");
    std::fs::write(&staged, b"{\"generation\": \"4\", \"resou").unwrap();
    std::fs::rename(&staged, contract.path()).unwrap();
    eventually("the broken contract counted", READ, || {
        let admin = admin.clone();
        async move {
            let scrape = Scrape::get(&admin).await;
            (scrape.sum(
                "ferry_contract_reload_errors_total",
                &[("component", "receiver")],
            ) == 1.0)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        Scrape::get(&admin)
            .await
            .sum("ferry_contract_generation", &[]),
        3.0
    );
    ferry_harness::send_event(&client, &url, "2", "t", &[]).await;
}
