//! Traces: `ferry standalone` with OTLP export on (the standard OTEL_*
//! variables) continues the producer's trace through Kafka to the
//! subscriber, exports its own spans to the collector, and starts a trace
//! at the ingress when the producer sent none.

use std::time::Duration;

use ferry_harness::{
    bootstrap, eventually, http,
    process::{write_resource, Standalone},
    send_event,
    subscriber::{Answer, Received, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

/// A span as the collector got it (OTLP/JSON: ids in hex).
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

fn spans(requests: &[Received]) -> Vec<Span> {
    let mut spans = Vec::new();
    for request in requests.iter().filter(|r| r.path == "/v1/traces") {
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("OTLP JSON");
        let resource_spans = body["resourceSpans"].as_array().into_iter().flatten();
        for scope in resource_spans.flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten()) {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |field: &str| span[field].as_str().unwrap_or_default().to_lowercase();
                spans.push(Span {
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent: text("parentSpanId"),
                });
            }
        }
    }
    spans
}

/// `00-<trace>-<parent>-<flags>` split into (trace, parent).
fn traceparent(received: &Received) -> (String, String) {
    let value = received.header("traceparent").expect("a traceparent");
    let parts: Vec<&str> = value.split('-').collect();
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn traces_go_from_the_producer_through_kafka_to_the_subscriber_and_the_collector() {
    let collector = Subscriber::scripted(|_, _| {
        Answer::status(200)
            .with_header("content-type", "application/json")
            .with_body("{}")
    })
    .await;
    let subscriber = Subscriber::accepting().await;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    write_resource(
        dir.path(),
        "broker.yaml",
        &format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: {ns}\n"),
    );
    write_resource(
        dir.path(),
        "trigger.yaml",
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: {ns}\n\
             spec:\n  broker: b\n  subscriber:\n    uri: {}\n",
            subscriber.url()
        ),
    );
    let endpoint = collector.url();
    let ferry = Standalone::start_with_env(
        FERRY,
        dir.path(),
        state.path(),
        &bootstrap(),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                endpoint.trim_end_matches('/'),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "ferry-under-test"),
        ],
    )
    .await;
    let broker = ferry.wait_for_status("Broker", "b", "True").await;
    let address = broker["address"].as_str().unwrap().to_owned();
    ferry.wait_for_status("Trigger", "t", "True").await;
    ferry.ready().await;

    let client = http::client();
    let incoming = format!("00-{TRACE}-{PRODUCER_SPAN}-01");
    send_event(
        &client,
        &address,
        "traced",
        "t",
        &[("traceparent", &incoming), ("tracestate", "vendor=1")],
    )
    .await;
    send_event(&client, &address, "untraced", "t", &[]).await;
    let got = subscriber
        .wait_for_ids(&["traced".into(), "untraced".into()], WAIT)
        .await;
    let traced = got.iter().find(|r| r.id() == "traced").unwrap();
    let (trace, parent) = traceparent(traced);
    assert_eq!(trace, TRACE, "the producer's trace reaches the subscriber");
    assert_ne!(parent, PRODUCER_SPAN, "the dispatcher's span is the parent");
    assert_eq!(traced.header("tracestate"), Some("vendor=1"));
    let untraced = got.iter().find(|r| r.id() == "untraced").unwrap();
    let (new_trace, _) = traceparent(untraced);
    assert_ne!(new_trace, TRACE, "a trace is started at the ingress");

    // ingress (child of the producer) → dispatch (child of ingress), whose
    // id is what the subscriber got as its parent.
    let (ingress, dispatch) = eventually("both spans at the collector", WAIT, || {
        let spans = spans(&collector.received());
        let find = |name: &str, trace: &str| {
            spans
                .iter()
                .find(|s| s.name == name && s.trace_id == trace)
                .map(|s| (s.span_id.clone(), s.parent.clone()))
        };
        let found = find("ferry.ingress", TRACE)
            .zip(find("ferry.dispatch", TRACE))
            .filter(|_| find("ferry.dispatch", &new_trace).is_some());
        async move { found }
    })
    .await;
    assert_eq!(ingress.1, PRODUCER_SPAN, "{ingress:?}");
    assert_eq!(dispatch.1, ingress.0, "{dispatch:?}");
    assert_eq!(
        dispatch.0, parent,
        "the subscriber's parent is the dispatch span"
    );
    let service = collector
        .received()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains("ferry-under-test"));
    assert!(service, "OTEL_SERVICE_NAME names the service");
}
