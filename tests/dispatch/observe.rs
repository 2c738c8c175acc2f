//! What operators see: the trace context and the metrics of a known
//! workload.

use super::*;

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
