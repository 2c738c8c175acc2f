//! How an event is sent: content mode, attempts, backoff, timeouts,
//! Retry-After, and the dead-letter sink when it all fails.

use super::*;

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
