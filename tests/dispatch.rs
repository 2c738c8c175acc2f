//! Trigger delivery against a real Kafka broker and real HTTP subscribers:
//! filters, retries, dead letters, replies, ordering, contract reloads.

use std::time::Duration;

use base64::Engine;
use ferry_harness::{
    bootstrap, broker, dispatcher_config,
    http::{self, HttpClient},
    kafka::{create_topic, wait_for_group},
    metrics::Scrape,
    receiver_config, send_event,
    subscriber::{Answer, HangUp, Subscriber},
    trigger, unique, ContractFile, TestDispatcher, TestReceiver,
};
use ferry_proto::{
    dialected_filter::Filter as Dialect, egress::ReplyStrategy, BackoffPolicy, Contract,
    DeliveryOrder, DialectedFilter, Egress, EgressConfig, Empty, Resource,
};

const WAIT: Duration = Duration::from_secs(30);

/// A broker with a receiver and a dispatcher in this process.
struct Mesh {
    receiver: TestReceiver,
    dispatcher: TestDispatcher,
    contract: ContractFile,
    broker: Resource,
    client: HttpClient,
    partitions: i32,
}

impl Mesh {
    async fn start(partitions: i32, egresses: Vec<Egress>) -> Mesh {
        let bootstrap = bootstrap();
        let topic = unique("knative-broker-ns");
        create_topic(&bootstrap, &topic, partitions).await;
        let mut broker = broker("ns", &unique("b"), &topic, "");
        broker.egresses = egresses;
        let contract = ContractFile::new(&Contract {
            generation: 1,
            resources: vec![broker.clone()],
            ..Default::default()
        });
        let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
        let dispatcher = TestDispatcher::start(dispatcher_config(&contract, &bootstrap)).await;
        receiver.ready().await;
        let mesh = Mesh {
            receiver,
            dispatcher,
            contract,
            broker,
            client: http::client(),
            partitions,
        };
        mesh.wait_for_triggers().await;
        mesh
    }

    /// Every dispatched trigger's start positions are pinned: events sent
    /// from now on are theirs. (Triggers with an unusable filter never start.)
    async fn wait_for_triggers(&self) {
        for egress in self.broker.egresses.iter().filter(|e| !has_cesql(e)) {
            wait_for_group(
                &bootstrap(),
                &egress.consumer_group,
                &self.broker.topics[0],
                self.partitions,
            )
            .await;
        }
    }

    fn broker_name(&self) -> &str {
        &self.broker.reference.as_ref().unwrap().name
    }

    fn url(&self) -> String {
        let r = self.broker.reference.as_ref().unwrap();
        self.receiver.url(&format!("/{}/{}", r.namespace, r.name))
    }

    async fn send(&self, id: &str, ty: &str) {
        send_event(&self.client, &self.url(), id, ty, &[]).await;
    }

    async fn send_with(&self, id: &str, ty: &str, extra: &[(&str, &str)]) {
        send_event(&self.client, &self.url(), id, ty, extra).await;
    }

    async fn metrics(&self) -> Scrape {
        let admin = self.dispatcher.running.as_ref().unwrap().admin;
        Scrape::get(&format!("http://{admin}")).await
    }

    fn replace_egresses(&mut self, egresses: Vec<Egress>, generation: u64) {
        self.broker.egresses = egresses;
        self.contract.write(&Contract {
            generation,
            resources: vec![self.broker.clone()],
            ..Default::default()
        });
    }
}

fn has_cesql(egress: &Egress) -> bool {
    // The suite's only unusable CESQL expression ends in an operator.
    egress.dialected_filter.iter().any(
        |f| matches!(&f.filter, Some(Dialect::Cesql(c)) if c.expression.trim_end().ends_with('=')),
    )
}

fn with_config(mut egress: Egress, config: EgressConfig) -> Egress {
    egress.egress_config = Some(config);
    egress
}

fn attributes(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dialect(filter: Dialect) -> DialectedFilter {
    DialectedFilter {
        filter: Some(filter),
    }
}

fn ids(received: &[ferry_harness::subscriber::Received]) -> Vec<String> {
    let mut ids: Vec<String> = received.iter().map(|r| r.id().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn each_dialect_selects_exactly_its_events() {
    use ferry_proto::{All, Any, Exact, Not, Prefix, Suffix};
    let subs = [
        Subscriber::accepting().await, // 0 legacy exact on type
        Subscriber::accepting().await, // 1 exact
        Subscriber::accepting().await, // 2 prefix
        Subscriber::accepting().await, // 3 suffix
        Subscriber::accepting().await, // 4 all
        Subscriber::accepting().await, // 5 any
        Subscriber::accepting().await, // 6 not
        Subscriber::accepting().await, // 7 no filter
        Subscriber::accepting().await, // 8 legacy empty value: attribute present
    ];
    let mut triggers: Vec<Egress> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| trigger("ns", &format!("t{i}"), &s.url()))
        .collect();
    triggers[0].filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "order.created")]),
    });
    triggers[1].dialected_filter = vec![dialect(Dialect::Exact(Exact {
        attributes: attributes(&[("region", "eu")]),
    }))];
    triggers[2].dialected_filter = vec![dialect(Dialect::Prefix(Prefix {
        attributes: attributes(&[("type", "order.")]),
    }))];
    triggers[3].dialected_filter = vec![dialect(Dialect::Suffix(Suffix {
        attributes: attributes(&[("type", ".deleted")]),
    }))];
    triggers[4].dialected_filter = vec![dialect(Dialect::All(All {
        filters: vec![
            dialect(Dialect::Prefix(Prefix {
                attributes: attributes(&[("type", "order.")]),
            })),
            dialect(Dialect::Exact(Exact {
                attributes: attributes(&[("region", "us")]),
            })),
        ],
    }))];
    triggers[5].dialected_filter = vec![dialect(Dialect::Any(Any {
        filters: vec![
            dialect(Dialect::Exact(Exact {
                attributes: attributes(&[("region", "us")]),
            })),
            dialect(Dialect::Suffix(Suffix {
                attributes: attributes(&[("type", ".deleted")]),
            })),
        ],
    }))];
    triggers[6].dialected_filter = vec![dialect(Dialect::Not(Box::new(Not {
        filter: Some(Box::new(dialect(Dialect::Prefix(Prefix {
            attributes: attributes(&[("type", "order.")]),
        })))),
    })))];
    triggers[8].filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("region", "")]),
    });
    let mesh = Mesh::start(3, triggers).await;

    mesh.send_with("e1", "order.created", &[("ce-region", "eu")])
        .await;
    mesh.send_with("e2", "order.created", &[("ce-region", "us")])
        .await;
    mesh.send("e3", "order.deleted").await;
    mesh.send_with("e4", "user.deleted", &[("ce-region", "us")])
        .await;
    mesh.send("e5", "user.created").await;
    // A marker every filter-less trigger gets, sent last.
    let all = ["e1", "e2", "e3", "e4", "e5"].map(String::from);
    subs[7].wait_for_ids(&all, WAIT).await;

    let expected: [&[&str]; 9] = [
        &["e1", "e2"],
        &["e1"],
        &["e1", "e2", "e3"],
        &["e3", "e4"],
        &["e2"],
        &["e2", "e3", "e4"],
        &["e4", "e5"],
        &["e1", "e2", "e3", "e4", "e5"],
        // An empty expected value is no condition (the reference's rule).
        &["e1", "e2", "e3", "e4", "e5"],
    ];
    for (i, (sub, want)) in subs.iter().zip(expected).enumerate() {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        sub.wait_for_ids(&want, WAIT).await;
        assert_eq!(ids(&sub.received()), want, "trigger t{i}");
    }
}

#[tokio::test]
async fn delivery_is_binary_with_prefer_reply_or_structured_on_request() {
    let binary = Subscriber::accepting().await;
    let structured = Subscriber::accepting().await;
    let json = with_config(
        trigger("ns", "json", &structured.url()),
        EgressConfig {
            format: "json".into(),
            ..Default::default()
        },
    );
    let mesh = Mesh::start(1, vec![trigger("ns", "bin", &binary.url()), json]).await;
    mesh.send_with(
        "d-1",
        "t",
        &[
            ("ce-greeting", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
            ("content-type", "application/json"),
        ],
    )
    .await;

    let got = &binary.wait_for(1, WAIT).await[0];
    assert_eq!(got.header("ce-id"), Some("d-1"));
    assert_eq!(got.header("ce-specversion"), Some("1.0"));
    assert_eq!(got.header("ce-source"), Some("/ferry/tests"));
    assert_eq!(
        got.header("ce-greeting"),
        Some("Euro%20%E2%82%AC%20%F0%9F%98%80"),
        "percent-encoded again on the way out"
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("prefer"), Some("reply"));
    assert_eq!(got.body.as_ref(), br#"{"id":"d-1"}"#);

    let got = &structured.wait_for(1, WAIT).await[0];
    assert_eq!(
        got.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let event: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(event["id"], "d-1");
    assert_eq!(event["greeting"], "Euro € 😀");
    assert_eq!(event["data"], serde_json::json!({"id": "d-1"}));
}

#[tokio::test]
async fn attempts_are_one_plus_retry_with_growing_gaps_then_dead_letter() {
    let failing =
        Subscriber::scripted(|_, _| Answer::status(500).with_body("database on fire")).await;
    let dls = Subscriber::accepting().await;
    let config = EgressConfig {
        retry: 3,
        backoff_policy: BackoffPolicy::Exponential as i32,
        backoff_delay: 50,
        dead_letter: dls.url(),
        ..Default::default()
    };
    let mesh = Mesh::start(
        1,
        vec![with_config(trigger("ns", "t", &failing.url()), config)],
    )
    .await;
    mesh.send("r-1", "t").await;

    let dead = &dls.wait_for(1, WAIT).await[0];
    let attempts = failing.received();
    assert_eq!(attempts.len(), 4, "1 + retry attempts");
    // Exponential from 50 ms: 100, 200, 400 ms. Gaps never shrink below their backoff.
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let backoff = Duration::from_millis(50 * 2u64.pow(i as u32 + 1));
        assert!(gap >= backoff, "gap {i} was {gap:?}, backoff {backoff:?}");
    }
    assert_eq!(dead.id(), "r-1");
    assert_eq!(
        dead.header("ce-knativeerrordest"),
        Some(failing.url().as_str())
    );
    assert_eq!(dead.header("ce-knativeerrorcode"), Some("500"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(dead.header("ce-knativeerrordata").unwrap())
        .unwrap();
    assert_eq!(data, b"database on fire");
    assert_eq!(
        dead.body.as_ref(),
        br#"{"id":"r-1"}"#,
        "the dead-lettered event keeps its data"
    );
    // Nothing more arrives after the dead letter.
    assert_eq!(failing.received().len(), 4);
}

#[tokio::test]
async fn a_recovering_subscriber_gets_the_event_and_nothing_is_dead_lettered() {
    let flaky = Subscriber::scripted(|_, n| {
        if n < 2 {
            Answer::status(503)
        } else {
            Answer::status(200)
        }
    })
    .await;
    let dls = Subscriber::accepting().await;
    let config = EgressConfig {
        retry: 5,
        backoff_policy: BackoffPolicy::Linear as i32,
        backoff_delay: 20,
        dead_letter: dls.url(),
        ..Default::default()
    };
    // A second event proves the first finished: ordered, one partition.
    let mut t = with_config(trigger("ns", "t", &flaky.url()), config);
    t.delivery_order = DeliveryOrder::Ordered as i32;
    let mesh = Mesh::start(1, vec![t]).await;
    mesh.send("f-1", "t").await;
    mesh.send("f-2", "t").await;
    let got = flaky.wait_for(4, WAIT).await;
    assert_eq!(
        got.iter().map(|r| r.id()).collect::<Vec<_>>(),
        ["f-1", "f-1", "f-1", "f-2"]
    );
    assert!(dls.received().is_empty());
}

#[tokio::test]
async fn timeouts_and_final_codes_go_to_the_dead_letter_sink() {
    let slow = Subscriber::scripted(|_, _| Answer::status(200).after(Duration::from_secs(3))).await;
    let refusing = Subscriber::scripted(|_, _| Answer::status(400).with_body("bad")).await;
    let dls = Subscriber::accepting().await;
    let slow_config = EgressConfig {
        retry: 1,
        backoff_delay: 10,
        timeout: 200,
        dead_letter: dls.url(),
        ..Default::default()
    };
    let refusing_config = EgressConfig {
        retry: 5,
        backoff_delay: 10,
        dead_letter: dls.url(),
        ..Default::default()
    };
    let mut only_slow = with_config(trigger("ns", "slow", &slow.url()), slow_config);
    only_slow.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "slow")]),
    });
    let mut only_refused = with_config(trigger("ns", "refusing", &refusing.url()), refusing_config);
    only_refused.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "refused")]),
    });
    let mesh = Mesh::start(1, vec![only_slow, only_refused]).await;
    mesh.send("s-1", "slow").await;
    mesh.send("x-1", "refused").await;

    let dead = dls.wait_for_ids(&["s-1".into(), "x-1".into()], WAIT).await;
    let slow_dead = dead.iter().find(|r| r.id() == "s-1").unwrap();
    assert_eq!(
        slow.received().len(),
        2,
        "the timeout is per attempt: 1 + retry attempts"
    );
    assert_eq!(
        slow_dead.header("ce-knativeerrorcode"),
        None,
        "no answer, no code"
    );
    assert_eq!(
        slow_dead.header("ce-knativeerrordest"),
        Some(slow.url().as_str())
    );
    let refused_dead = dead.iter().find(|r| r.id() == "x-1").unwrap();
    assert_eq!(refusing.received().len(), 1, "400 is final: no retry");
    assert_eq!(refused_dead.header("ce-knativeerrorcode"), Some("400"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let limited = Subscriber::scripted(|_, n| {
        if n == 0 {
            Answer::status(429).with_header("retry-after", "1")
        } else {
            Answer::status(202)
        }
    })
    .await;
    let config = EgressConfig {
        retry: 2,
        backoff_delay: 10,
        ..Default::default()
    };
    let mesh = Mesh::start(
        1,
        vec![with_config(trigger("ns", "t", &limited.url()), config)],
    )
    .await;
    mesh.send("ra-1", "t").await;
    let got = limited.wait_for(2, WAIT).await;
    assert!(
        got[1].at - got[0].at >= Duration::from_secs(1),
        "waited {:?}",
        got[1].at - got[0].at
    );
}

fn reply_headers(id: &str, ty: &str) -> [(String, String); 4] {
    [
        ("ce-specversion".into(), "1.0".into()),
        ("ce-id".into(), id.into()),
        ("ce-source".into(), "/replier".into()),
        ("ce-type".into(), ty.into()),
    ]
}

fn replying(ty: &'static str) -> impl Fn(&ferry_harness::subscriber::Received, usize) -> Answer {
    move |r, _| {
        let mut answer = Answer::status(200)
            .with_body("reply body")
            .with_header("content-type", "text/plain");
        for (k, v) in reply_headers(&format!("reply-to-{}", r.id()), ty) {
            answer = answer.with_header(&k, &v);
        }
        answer
    }
}

#[tokio::test]
async fn replies_re_enter_the_broker_and_reach_another_trigger() {
    let replier = Subscriber::scripted(replying("reply")).await;
    let second = Subscriber::accepting().await;
    let mut first = trigger("ns", "first", &replier.url());
    first.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    let mut then = trigger("ns", "then", &second.url());
    then.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "reply")]),
    });
    let mesh = Mesh::start(2, vec![first, then]).await;
    mesh.send("q-1", "request").await;
    let got = &second.wait_for(1, WAIT).await[0];
    assert_eq!(got.id(), "reply-to-q-1");
    assert_eq!(got.header("ce-source"), Some("/replier"));
    assert_eq!(got.body.as_ref(), b"reply body");
}

#[tokio::test]
async fn replies_go_to_reply_url_or_are_discarded() {
    let replier_a = Subscriber::scripted(replying("reply")).await;
    let replier_b = Subscriber::scripted(replying("reply")).await;
    let reply_sink = Subscriber::accepting().await;
    let everything_else = Subscriber::accepting().await;
    let mut to_url = trigger("ns", "to-url", &replier_a.url());
    to_url.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    to_url.reply_strategy = Some(ReplyStrategy::ReplyUrl(reply_sink.url()));
    let mut discard = trigger("ns", "discard", &replier_b.url());
    discard.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    discard.reply_strategy = Some(ReplyStrategy::DiscardReply(Empty {}));
    let watcher = trigger("ns", "watcher", &everything_else.url());
    let mesh = Mesh::start(1, vec![to_url, discard, watcher]).await;
    mesh.send("q-2", "request").await;
    mesh.send("marker", "marker").await;

    let got = &reply_sink.wait_for(1, WAIT).await[0];
    assert_eq!(got.id(), "reply-to-q-2");
    replier_b.wait_for(1, WAIT).await;
    // Nothing replied into the broker: the watcher sees exactly the two events sent.
    everything_else
        .wait_for_ids(&["q-2".into(), "marker".into()], WAIT)
        .await;
    assert_eq!(ids(&everything_else.received()), ["marker", "q-2"]);
}

#[tokio::test]
async fn a_malformed_reply_is_a_failed_delivery() {
    let broken = Subscriber::scripted(|_, _| {
        Answer::status(200)
            .with_header("ce-specversion", "1.0")
            .with_body("x")
    })
    .await;
    let dls = Subscriber::accepting().await;
    let config = EgressConfig {
        dead_letter: dls.url(),
        ..Default::default()
    };
    let mesh = Mesh::start(
        1,
        vec![with_config(trigger("ns", "t", &broken.url()), config)],
    )
    .await;
    mesh.send("m-1", "t").await;
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(dead.id(), "m-1");
    assert_eq!(dead.header("ce-knativeerrorcode"), Some("200"));
}

#[tokio::test]
async fn ordered_delivery_keeps_partition_order_under_a_slow_subscriber() {
    let slow =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(30))).await;
    let mut t = trigger("ns", "ordered", &slow.url());
    t.delivery_order = DeliveryOrder::Ordered as i32;
    let mesh = Mesh::start(1, vec![t]).await;
    let sent: Vec<String> = (0..15).map(|i| format!("o-{i:02}")).collect();
    for id in &sent {
        mesh.send(id, "t").await;
    }
    let got = slow.wait_for(sent.len(), WAIT).await;
    assert_eq!(
        got.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(slow.max_concurrency(), 1);
}

#[tokio::test]
async fn unordered_delivery_overlaps_deliveries() {
    let slow =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(300))).await;
    let mesh = Mesh::start(1, vec![trigger("ns", "unordered", &slow.url())]).await;
    let sent: Vec<String> = (0..20).map(|i| format!("u-{i:02}")).collect();
    for id in &sent {
        mesh.send(id, "t").await;
    }
    let got = slow.wait_for(sent.len(), WAIT).await;
    assert_eq!(ids(&got), sent);
    assert!(
        slow.max_concurrency() > 1,
        "max concurrency {}",
        slow.max_concurrency()
    );
}

#[tokio::test]
async fn a_new_trigger_gets_events_from_when_it_was_added() {
    let first = Subscriber::accepting().await;
    let late = Subscriber::accepting().await;
    let mut mesh = Mesh::start(2, vec![trigger("ns", "first", &first.url())]).await;
    mesh.send("before", "t").await;
    first.wait_for_ids(&["before".into()], WAIT).await;

    let added = trigger("ns", "late", &late.url());
    let mut egresses = mesh.broker.egresses.clone();
    egresses.push(added);
    mesh.replace_egresses(egresses, 2);
    mesh.wait_for_triggers().await;
    mesh.send("after", "t").await;
    late.wait_for_ids(&["after".into()], WAIT).await;
    first.wait_for_ids(&["after".into()], WAIT).await;
    assert_eq!(
        ids(&late.received()),
        ["after"],
        "nothing from before it was added"
    );
}

#[tokio::test]
async fn reloads_change_and_remove_triggers_without_disturbing_the_others() {
    let steady = Subscriber::accepting().await;
    let changing = Subscriber::accepting().await;
    let removed = Subscriber::accepting().await;
    let mut change_me = trigger("ns", "changing", &changing.url());
    change_me.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "a")]),
    });
    // A trigger whose filter cannot be used (an invalid CESQL expression).
    let unusable = {
        let mut t = trigger("ns", "unusable", &removed.url());
        t.dialected_filter = vec![dialect(Dialect::Cesql(ferry_proto::Cesql {
            expression: "type = ".into(),
        }))];
        t
    };
    let unusable_group = unusable.consumer_group.clone();
    let mut mesh = Mesh::start(
        1,
        vec![
            trigger("ns", "steady", &steady.url()),
            change_me.clone(),
            trigger("ns", "removed", &removed.url()),
            unusable,
        ],
    )
    .await;
    mesh.send("r1", "a").await;
    mesh.send("r2", "b").await;
    removed
        .wait_for_ids(&["r1".into(), "r2".into()], WAIT)
        .await;
    // The unusable trigger is reported and skipped; the others run.
    let topic = mesh.broker.topics[0].clone();
    assert_eq!(
        ferry_harness::kafka::group_offsets(&bootstrap(), &unusable_group, &topic, 1).await,
        [None]
    );
    changing.wait_for_ids(&["r1".into()], WAIT).await;

    change_me.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "b")]),
    });
    let steady_trigger = mesh.broker.egresses[0].clone();
    mesh.replace_egresses(vec![steady_trigger, change_me], 2);
    // The changed trigger keeps its group and position. Probes of type b
    // reach it only once the new filter is in force.
    let mut n = 0;
    ferry_harness::eventually("the new filter", WAIT, || {
        n += 1;
        let id = format!("probe-{n}");
        let (client, url, changing) = (mesh.client.clone(), mesh.url(), &changing);
        async move {
            send_event(&client, &url, &id, "b", &[]).await;
            changing
                .received()
                .iter()
                .any(|r| r.id().starts_with("probe-"))
                .then_some(())
        }
    })
    .await;
    let removed_before = removed.received().len();
    mesh.send("r3", "a").await;
    mesh.send("r4", "b").await;
    changing.wait_for_ids(&["r4".into()], WAIT).await;
    steady
        .wait_for_ids(&["r1".into(), "r2".into(), "r3".into(), "r4".into()], WAIT)
        .await;
    assert!(
        !changing.received().iter().any(|r| r.id() == "r3"),
        "the old filter is gone"
    );
    assert_eq!(
        removed.received().len(),
        removed_before,
        "the removed trigger gets nothing more"
    );
    // The steady trigger saw every event exactly once across both reloads.
    let steady_ids = ids(&steady.received());
    let mut unique_ids = steady_ids.clone();
    unique_ids.dedup();
    assert_eq!(steady_ids, unique_ids);
}

#[tokio::test]
async fn failed_events_without_a_working_dead_letter_sink_are_dropped_and_counted() {
    let failing = Subscriber::scripted(|r, _| {
        if r.id().starts_with("fail") {
            Answer::status(500)
        } else {
            Answer::status(202)
        }
    })
    .await;
    let broken_dls = Subscriber::scripted(|_, _| Answer::status(400)).await;
    let no_dls = trigger("ns", "no-dls", &failing.url());
    let with_broken_dls = with_config(
        trigger("ns", "broken-dls", &failing.url()),
        EgressConfig {
            dead_letter: broken_dls.url(),
            ..Default::default()
        },
    );
    let mesh = Mesh::start(1, vec![no_dls, with_broken_dls]).await;
    mesh.send("fail-1", "t").await;
    mesh.send("ok-1", "t").await;
    // Both triggers dropped fail-1 and went on to ok-1.
    eventually_received(&failing, "ok-1", 2).await;
    broken_dls.wait_for_ids(&["fail-1".into()], WAIT).await;
    let metrics = ferry_harness::eventually("both outcomes of both triggers", WAIT, || async {
        let metrics = mesh.metrics().await;
        (metrics.sum("ferry_dispatch_events_total", &[]) == 4.0).then_some(metrics)
    })
    .await;
    for name in ["no-dls", "broken-dls"] {
        let events = |outcome| {
            metrics.sum(
                "ferry_dispatch_events_total",
                &[("kn_trigger_name", name), ("outcome", outcome)],
            )
        };
        assert_eq!(
            (events("dropped"), events("delivered")),
            (1.0, 1.0),
            "{name}:\n{}",
            metrics.text
        );
    }
}

/// Waits until `id` arrived `times` times.
async fn eventually_received(sub: &Subscriber, id: &str, times: usize) {
    ferry_harness::eventually(&format!("{id} x{times}"), WAIT, || {
        let n = sub.received().iter().filter(|r| r.id() == id).count();
        async move { (n >= times).then_some(()) }
    })
    .await
}

#[tokio::test]
async fn cesql_triggers_receive_exactly_what_their_expressions_select() {
    let expressions = [
        "type LIKE 'order.%' AND region = 'eu'",
        "EXISTS priority AND priority > 5",
        "source IN ('/ferry/tests') AND NOT (type = 'order.created')",
        // Without the EXISTS guard a missing region is an error, and the whole OR is false.
        "(EXISTS region AND LOWER(region) = 'us') OR UPPER(type) LIKE '%DELETED'",
    ];
    let subs = [
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
    ];
    let triggers = expressions
        .iter()
        .zip(&subs)
        .enumerate()
        .map(|(i, (expression, sub))| {
            let mut t = trigger("ns", &format!("sql{i}"), &sub.url());
            t.dialected_filter = vec![dialect(Dialect::Cesql(ferry_proto::Cesql {
                expression: expression.to_string(),
            }))];
            t
        })
        .collect();
    let mesh = Mesh::start(1, triggers).await;
    mesh.send_with(
        "e1",
        "order.created",
        &[("ce-region", "eu"), ("ce-priority", "9")],
    )
    .await;
    mesh.send_with("e2", "order.deleted", &[("ce-region", "US")])
        .await;
    mesh.send_with("e3", "user.created", &[("ce-priority", "2")])
        .await;
    mesh.send_with(
        "e4",
        "order.updated",
        &[("ce-region", "eu"), ("ce-priority", "x")],
    )
    .await;
    // The marker every expression-3 trigger gets goes last; ordering per
    // partition (one partition) means everything before it was decided.
    mesh.send_with("marker", "marker.deleted", &[]).await;
    let expected: [&[&str]; 4] = [
        &["e1", "e4"],
        &["e1"],
        &["e2", "e3", "e4", "marker"],
        &["e2", "marker"],
    ];
    for (i, (sub, want)) in subs.iter().zip(expected).enumerate() {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        sub.wait_for_ids(&want, WAIT).await;
        assert_eq!(ids(&sub.received()), want, "{}", expressions[i]);
    }
}

#[tokio::test]
async fn the_producers_trace_context_reaches_the_subscriber() {
    let sub = Subscriber::accepting().await;
    let mesh = Mesh::start(1, vec![trigger("ns", "traced", &sub.url())]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    mesh.send_with(
        "tr-1",
        "t",
        &[
            ("traceparent", traceparent),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    mesh.send_with("tr-2", "t", &[("traceparent", "not-a-trace-context")])
        .await;

    let got = sub
        .wait_for_ids(&["tr-1".into(), "tr-2".into()], WAIT)
        .await;
    let traced = got.iter().find(|r| r.id() == "tr-1").unwrap();
    assert_eq!(traced.header("traceparent"), Some(traceparent));
    assert_eq!(traced.header("tracestate"), Some("vendor=opaque"));
    let untraced = got.iter().find(|r| r.id() == "tr-2").unwrap();
    assert_eq!(
        untraced.header("traceparent"),
        None,
        "a malformed traceparent is not passed on"
    );

    // In Kafka, the context is a record header beside the ce_ attributes.
    let records = ferry_harness::kafka::TopicReader::new(&bootstrap(), &mesh.broker.topics[0], 1)
        .read(2, WAIT)
        .await;
    let first = records
        .iter()
        .find(|r| ferry_harness::kafka::header(r, "ce_id").as_deref() == Some("tr-1"))
        .unwrap();
    assert_eq!(
        ferry_harness::kafka::header(first, "traceparent").as_deref(),
        Some(traceparent)
    );
}

#[tokio::test]
async fn positions_are_committed_while_running() {
    let sub = Subscriber::accepting().await;
    let t = trigger("ns", "committing", &sub.url());
    let group = t.consumer_group.clone();
    let mesh = Mesh::start(2, vec![t]).await;
    let ids: Vec<String> = (0..40).map(|i| format!("p-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    sub.wait_for_ids(&ids, WAIT).await;
    // Every delivered record is committed by the periodic commit, without a
    // shutdown or rebalance: the positions reach the end of each partition.
    let topic = mesh.broker.topics[0].clone();
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), &topic, 2).await;
    assert_eq!(ends.iter().sum::<i64>(), 40);
    ferry_harness::eventually("committed positions at the end", WAIT, || {
        let (group, topic, ends) = (group.clone(), topic.clone(), ends.clone());
        async move {
            let committed =
                ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
            (committed.iter().zip(&ends).all(|(c, e)| *c == Some(*e))).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_closes_connections_is_retried_then_dead_lettered() {
    let closer = HangUp::start().await;
    let url = closer.url();
    let dls = Subscriber::accepting().await;
    let config = EgressConfig {
        retry: 2,
        backoff_policy: BackoffPolicy::Linear as i32,
        backoff_delay: 20,
        dead_letter: dls.url(),
        ..Default::default()
    };
    let mesh = Mesh::start(1, vec![with_config(trigger("ns", "closer", &url), config)]).await;
    mesh.send("hang-up", "t").await;
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(dead.id(), "hang-up");
    assert_eq!(dead.header("ce-knativeerrordest"), Some(url.as_str()));
    assert_eq!(
        dead.header("ce-knativeerrorcode"),
        None,
        "no answer, no code"
    );
    assert_eq!(closer.requests(), 3, "1 + retry attempts");
}

/// Three misbehaving subscribers, twenty events each: the attempts,
/// retries and dead letters are exactly what the delivery spec gives.
#[tokio::test]
async fn misbehaving_subscribers_get_exactly_the_attempts_the_spec_gives() {
    const N: usize = 20;
    // Every other request fails. Ordered on one partition, so the requests
    // alternate per event: each event fails once, then is delivered.
    let half =
        Subscriber::scripted(|_, n| Answer::status(if n % 2 == 0 { 503 } else { 202 })).await;
    // Answers after the per-attempt timeout: every attempt times out.
    let slow = Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_secs(2))).await;
    let closer = HangUp::start().await;
    let dls = Subscriber::accepting().await;
    let config = |retry, timeout| EgressConfig {
        retry,
        timeout,
        backoff_policy: BackoffPolicy::Linear as i32,
        backoff_delay: 10,
        dead_letter: dls.url(),
        ..Default::default()
    };
    let only = |mut egress: Egress, ty: &str| {
        egress.filter = Some(ferry_proto::Filter {
            attributes: attributes(&[("type", ty)]),
        });
        egress
    };
    let mut halves = with_config(trigger("ns", "half", &half.url()), config(3, 0));
    halves.delivery_order = DeliveryOrder::Ordered as i32;
    let triggers = vec![
        only(halves, "half"),
        only(
            with_config(trigger("ns", "slow", &slow.url()), config(2, 200)),
            "slow",
        ),
        only(
            with_config(trigger("ns", "closer", &closer.url()), config(2, 0)),
            "closer",
        ),
    ];
    let mesh = Mesh::start(1, triggers).await;
    for ty in ["half", "slow", "closer"] {
        for i in 0..N {
            mesh.send(&format!("{ty}-{i}"), ty).await;
        }
    }

    let dead = dls.wait_for(2 * N, WAIT).await;
    let delivered = half.wait_for(2 * N, WAIT).await;
    for i in 0..N {
        let id = format!("half-{i}");
        let attempts = delivered.iter().filter(|r| r.id() == id).count();
        assert_eq!(attempts, 2, "{id}: a 503, then a 202");
    }
    assert_eq!(slow.received().len(), 3 * N, "1 + retry attempts each");
    assert_eq!(closer.requests(), 3 * N, "1 + retry attempts each");
    let dead_ids: std::collections::BTreeSet<&str> = dead.iter().map(|r| r.id()).collect();
    assert_eq!(dead_ids.len(), 2 * N, "every slow and closer event once");
    assert!(dead_ids.iter().all(|id| !id.starts_with("half")));

    let n = N as f64;
    // An event is counted once its last attempt is, after its subscriber
    // saw it.
    let metrics = ferry_harness::eventually("every outcome counted", WAIT, || async {
        let metrics = mesh.metrics().await;
        let outcome = |o| metrics.sum("ferry_dispatch_events_total", &[("outcome", o)]);
        (outcome("delivered") + outcome("dead_lettered") == 3.0 * n).then_some(metrics)
    })
    .await;
    for (trigger, retries, outcome) in [
        ("half", n, "delivered"),
        ("slow", 2.0 * n, "dead_lettered"),
        ("closer", 2.0 * n, "dead_lettered"),
    ] {
        let of = |name, extra: &[(&str, &str)]| {
            let mut labels = vec![("kn_trigger_name", trigger)];
            labels.extend_from_slice(extra);
            metrics.sum(name, &labels)
        };
        assert_eq!(
            (
                of("ferry_dispatch_retries_total", &[]),
                of("ferry_dispatch_events_total", &[("outcome", outcome)])
            ),
            (retries, n),
            "{trigger}:\n{}",
            metrics.text
        );
    }
    // Every attempt took time; those that got an answer were sent events.
    let half = |name, extra: &[(&str, &str)]| {
        let mut labels = vec![("kn_trigger_name", "half")];
        labels.extend_from_slice(extra);
        metrics.sum(name, &labels)
    };
    assert_eq!(half("kn_eventing_dispatch_latency_ms_count", &[]), 2.0 * n);
    assert_eq!(
        half(
            "http_events_sent_total",
            &[("http_response_status_code", "503")]
        ),
        n
    );
    assert_eq!(
        half(
            "http_events_sent_total",
            &[("http_response_status_code", "202")]
        ),
        n
    );
    assert_eq!(
        metrics.sum("http_events_sent_total", &[("kn_trigger_name", "closer")]),
        n,
        "a subscriber that hangs up answers nothing: only the dead-letter sink did"
    );
}

/// A trigger whose subscriber stops answering does not hold back the
/// broker's other triggers: once its window is full it is read for
/// separately, and when it answers again it gets every event.
#[tokio::test]
async fn a_stuck_trigger_does_not_hold_back_the_others() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let stuck = Subscriber::scripted(move |_, _| Answer::status(202).until(gate.clone())).await;
    let fast = Subscriber::accepting().await;
    let stuck_trigger = trigger("ns", "stuck", &stuck.url());
    let mesh = Mesh::start(
        2,
        vec![stuck_trigger.clone(), trigger("ns", "fast", &fast.url())],
    )
    .await;
    // More than the stuck trigger's window (100 in the harness): kept with
    // the reader, it would stop the reader, and the fast trigger with it.
    let ids: Vec<String> = (0..250).map(|i| format!("stuck-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    fast.wait_for_ids(&ids, WAIT).await;
    let held = stuck.received().len();
    assert!(
        held <= 100,
        "the stuck trigger holds at most its window, got {held}"
    );
    let catching_up = |m: &Scrape| m.sum("ferry_dispatch_kafka_consumers", &[("kind", "catch_up")]);
    let metrics = mesh.metrics().await;
    assert_eq!(
        catching_up(&metrics),
        1.0,
        "a consumer of its own:\n{}",
        metrics.text
    );

    open.send_replace(true);
    stuck.wait_for_ids(&ids, WAIT).await;
    let topic = mesh.broker.topics[0].clone();
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), &topic, 2).await;
    let group = stuck_trigger.consumer_group.clone();
    ferry_harness::eventually("the stuck trigger's position at the end", WAIT, || {
        let (topic, group, ends) = (topic.clone(), group.clone(), ends.clone());
        async move {
            let at = ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
            (at == ends.iter().map(|&e| Some(e)).collect::<Vec<_>>()).then_some(())
        }
    })
    .await;
    ferry_harness::eventually("back with the reader", WAIT, || async {
        (catching_up(&mesh.metrics().await) == 0.0).then_some(())
    })
    .await;
}

/// All triggers of a broker share one consumer, and each trigger's
/// position is committed in its own group.
/// A rebalance reads every trigger's position; with more triggers than
/// tokio's cooperative budget (128 awaited replies) the reader once never
/// got its partitions.
#[tokio::test]
async fn a_broker_with_hundreds_of_triggers_gets_its_partitions() {
    const TRIGGERS: usize = 150;
    let subscriber = Subscriber::accepting().await;
    let triggers: Vec<Egress> = (0..TRIGGERS)
        .map(|i| trigger("ns", &format!("t{i}"), &format!("{}t{i}", subscriber.url())))
        .collect();
    let mesh = Mesh::start(2, triggers).await;
    mesh.send("hundreds", "t").await;
    let got = subscriber.wait_for(TRIGGERS, WAIT).await;
    let paths: std::collections::BTreeSet<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), TRIGGERS, "every trigger delivered the event");
    assert!(got.iter().all(|r| r.id() == "hundreds"));
}

#[tokio::test]
async fn a_brokers_triggers_share_one_consumer_and_keep_their_own_positions() {
    let subscribers = futures::future::join_all((0..20).map(|_| Subscriber::accepting())).await;
    let triggers: Vec<Egress> = subscribers
        .iter()
        .enumerate()
        .map(|(i, s)| trigger("ns", &format!("t{i}"), &s.url()))
        .collect();
    let mesh = Mesh::start(2, triggers.clone()).await;
    let ids: Vec<String> = (0..10).map(|i| format!("shared-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    for subscriber in &subscribers {
        let got = subscriber.wait_for_ids(&ids, WAIT).await;
        assert_eq!(got.len(), ids.len(), "each trigger gets each event once");
    }
    let metrics = mesh.metrics().await;
    assert_eq!(
        metrics.sum("ferry_dispatch_kafka_consumers", &[("kind", "reader")]),
        1.0,
        "one consumer for the broker's 20 triggers:\n{}",
        metrics.text
    );
    let topic = &mesh.broker.topics[0];
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), topic, 2).await;
    let ends: Vec<Option<i64>> = ends.into_iter().map(Some).collect();
    for t in &triggers {
        let group = t.consumer_group.clone();
        ferry_harness::eventually(&format!("{group} committed"), WAIT, || {
            let (topic, group, ends) = (topic.clone(), group.clone(), ends.clone());
            async move {
                let at = ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
                (at == ends).then_some(())
            }
        })
        .await;
    }
}

/// After a known workload, both components' `/metrics` hold exactly what
/// happened, under the reference's names and labels: events written and
/// sent by type and code, processing time, requests in flight, lag per
/// partition, discarded records and the contract's generation.
#[tokio::test]
async fn metrics_count_a_known_workload() {
    let ok = Subscriber::accepting().await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let gated = Subscriber::scripted(move |_, _| Answer::status(202).until(gate.clone())).await;
    let only = |mut egress: Egress, ty: &str| {
        egress.filter = Some(ferry_proto::Filter {
            attributes: attributes(&[("type", ty)]),
        });
        egress
    };
    let mut held = only(trigger("ns", "held", &gated.url()), "g");
    held.delivery_order = DeliveryOrder::Ordered as i32;
    let mesh = Mesh::start(1, vec![only(trigger("ns", "ok", &ok.url()), "t"), held]).await;
    let topic = mesh.broker.topics[0].clone();
    // Offsets: 0 is not a CloudEvent, 1-5 are type t, 6-9 type g.
    ferry_harness::kafka::produce_raw(&bootstrap(), &topic, 0, "not an event").await;
    let ids: Vec<String> = (0..5).map(|i| format!("t-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    for i in 0..4 {
        mesh.send(&format!("g-{i}"), "g").await;
    }
    let refused = http::post(
        &mesh.client,
        &mesh.url(),
        &[("ce-specversion", "1.0"), ("ce-id", "x")],
        "",
    )
    .await;
    assert_eq!(refused.status, 400);
    ok.wait_for_ids(&ids, WAIT).await;

    let receiver = Scrape::get(&mesh.receiver.admin_url("")).await;
    let broker = mesh.broker_name().to_owned();
    let written = |ty: &str, code: &str| {
        receiver.sum(
            "kn_eventing_dispatch_latency_ms_count",
            &[
                ("kn_broker_namespace", "ns"),
                ("kn_broker_name", &broker),
                ("cloudevents_type", ty),
                ("http_response_status_code", code),
            ],
        )
    };
    assert_eq!(
        (written("t", "202"), written("g", "202")),
        (5.0, 4.0),
        "{}",
        receiver.text
    );
    assert_eq!(
        receiver.sum(
            "kn_eventing_dispatch_latency_ms_count",
            &[("http_response_status_code", "400")]
        ),
        1.0
    );
    assert_eq!(
        receiver.sum(
            "kn_eventing_kafka_discarded_events_total",
            &[("kn_broker_name", &broker)]
        ),
        1.0
    );
    assert_eq!(
        receiver.sum("ferry_contract_generation", &[("component", "receiver")]),
        1.0
    );
    assert_eq!(
        receiver.count(
            "ferry_kafka_producer_queue_messages",
            &[("component", "receiver")]
        ),
        1
    );

    // The held trigger has its first event in flight and the rest waiting.
    let dispatcher = ferry_harness::eventually("the held trigger's lag", WAIT, || async {
        let m = mesh.metrics().await;
        let lag = m.sum(
            "ferry_dispatch_consumer_lag",
            &[("kn_trigger_name", "held"), ("partition", "0")],
        );
        let ok_done = m.sum(
            "ferry_dispatch_events_total",
            &[("kn_trigger_name", "ok"), ("outcome", "delivered")],
        ) == 5.0;
        let ok_lag = m.sum("ferry_dispatch_consumer_lag", &[("kn_trigger_name", "ok")]);
        (lag == 4.0 && ok_done && ok_lag == 0.0).then_some(m)
    })
    .await;
    let of = |trigger: &str, name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![
            ("kn_trigger_namespace", "ns"),
            ("kn_trigger_name", trigger),
            ("kn_broker_name", &broker),
        ];
        labels.extend_from_slice(extra);
        dispatcher.sum(name, &labels)
    };
    let sent = [
        ("cloudevents_type", "t"),
        ("http_response_status_code", "202"),
    ];
    assert_eq!(
        of("ok", "http_events_sent_total", &sent),
        5.0,
        "{}",
        dispatcher.text
    );
    assert_eq!(
        of("ok", "kn_eventing_dispatch_latency_ms_count", &sent),
        5.0
    );
    assert_eq!(of("ok", "kn_eventing_process_latency_ms_count", &[]), 5.0);
    assert_eq!(
        of(
            "ok",
            "ferry_dispatch_events_total",
            &[("outcome", "filtered")]
        ),
        4.0
    );
    assert_eq!(
        of("held", "kn_eventing_dispatch_in_flight_requests", &[]),
        1.0
    );
    assert_eq!(
        of("ok", "kn_eventing_dispatch_in_flight_requests", &[]),
        0.0
    );
    for trigger in ["ok", "held"] {
        assert_eq!(
            of(trigger, "kn_eventing_kafka_discarded_events_total", &[]),
            1.0
        );
    }
    assert_eq!(
        dispatcher.sum("ferry_contract_generation", &[("component", "dispatcher")]),
        1.0
    );

    // Once it answers, it catches up to the end.
    open.send_replace(true);
    ferry_harness::eventually("the held trigger caught up", WAIT, || async {
        let m = mesh.metrics().await;
        let lag = m.sum(
            "ferry_dispatch_consumer_lag",
            &[("kn_trigger_name", "held")],
        );
        let in_flight = m.sum(
            "kn_eventing_dispatch_in_flight_requests",
            &[("kn_trigger_name", "held")],
        );
        (lag == 0.0 && in_flight == 0.0).then_some(())
    })
    .await;
    assert_eq!(gated.received().len(), 4);
}
