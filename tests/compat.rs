//! Compatibility with the reference Kafka broker's data plane, under
//! Knative's own control plane: contracts shaped as its Go control plane
//! writes them (protobuf JSON, fields this Ferry does not know, every field
//! of `contract.proto` set somewhere), run through the real receiver and
//! dispatcher on Kafka. Each check names the reference behaviour it pins.

use std::time::Duration;

use base64::Engine;
use ferry_harness::{
    bootstrap, http,
    kafka::{create_topic, header, produce_record, TopicReader},
    metrics::Scrape,
    stack::Stack,
    subscriber::{Answer, Received, Subscriber},
    unique,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn event<'a>(id: &'a str, ty: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/compat"),
        ("ce-type", ty),
    ]
}

fn reference(kind: &str, ns: &str, name: &str) -> Value {
    json!({
        "uuid": unique("uuid"), "namespace": ns, "name": name, "kind": kind,
        "groupVersion": "eventing.knative.dev/v1", "version": "v1",
        "futureReferenceField": "ignored",
    })
}

/// One trigger egress as Knative's trigger reconciler writes it: no
/// `replyStrategy`, a `reference`, and fields Ferry does not use yet.
fn trigger(ns: &str, name: &str, destination: &str, filter: Value) -> Value {
    json!({
        "consumerGroup": format!("knative-trigger-{ns}-{name}"),
        "destination": destination,
        "destinationCACerts": "",
        "destinationAudience": "",
        "uid": unique("uid"),
        "filter": filter,
        "deliveryOrder": "UNORDERED",
        "keyType": "String",
        "reference": reference("Trigger", ns, name),
        "vReplicas": 1,
        "featureFlags": {"enableRateLimiter": false, "enableOrderedExecutorMetrics": false},
        "oidcServiceAccountName": "",
        "futureEgressField": {"anything": [1, 2, 3]},
    })
}

/// A broker resource with its topic, a default egress config and
/// `cloudEventOverrides`, plus fields from a newer control plane.
fn broker(ns: &str, name: &str, topic: &str, egresses: Vec<Value>) -> Value {
    json!({
        "uid": unique("uid"),
        "topics": [topic],
        "bootstrapServers": bootstrap(),
        "ingress": {"path": format!("/{ns}/{name}"), "contentMode": "BINARY", "futureIngressField": 7},
        "egressConfig": {
            "retry": 0, "backoffPolicy": "Exponential", "backoffDelay": "200", "timeout": "5000",
            "deadLetter": "", "deadLetterCACerts": "", "deadLetterAudience": "", "format": "binary",
        },
        "egresses": egresses,
        "absentAuth": {},
        "cloudEventOverrides": {"extensions": {"cluster": "east"}},
        "reference": reference("Broker", ns, name),
        "featureFlags": {"enableEventTypeAutocreate": false},
        "futureResourceField": true,
    })
}

fn contract(generation: u64, resources: Vec<Value>) -> Value {
    json!({
        "generation": generation.to_string(),
        "resources": resources,
        "trustBundles": [],
        "futureContractField": {"nested": {"deeper": "x"}},
    })
}

/// A subscriber that answers every event with a reply event.
async fn replying(reply_type: &'static str) -> Subscriber {
    Subscriber::scripted(move |r: &Received, _| {
        Answer::status(200)
            .with_header("ce-specversion", "1.0")
            .with_header("ce-id", &format!("reply-to-{}", r.id()))
            .with_header("ce-source", "/replier")
            .with_header("ce-type", reply_type)
            // The reference accepts a relative dataschema in replies.
            .with_header("ce-dataschema", "schemas/reply.json")
            .with_header("content-type", "application/json")
            .with_body("{\"ok\":true}")
    })
    .await
}

/// Knative's trigger reconciler never sets a reply strategy; the reference
/// then writes replies to the broker's topic. Unknown fields at every level
/// are skipped (protojson DiscardUnknown), not a reason to refuse the
/// contract. Every delivered event carries the record's place
/// (`knativekafkapartition`, `knativekafkaoffset`), `Kn-Namespace`, and the
/// broker's `cloudEventOverrides`, set by the dispatcher.
#[tokio::test]
async fn a_trigger_without_a_reply_strategy_replies_to_the_broker() {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let orders = replying("order.replied").await;
    let replies = Subscriber::accepting().await;
    let c = contract(
        1,
        vec![broker(
            &ns,
            "b",
            &topic,
            vec![
                trigger(
                    &ns,
                    "orders",
                    &orders.url(),
                    json!({"attributes": {"type": "order.created"}}),
                ),
                trigger(
                    &ns,
                    "replies",
                    &replies.url(),
                    json!({"attributes": {"type": "order.replied"}}),
                ),
            ],
        )],
    );
    let groups = [
        format!("knative-trigger-{ns}-orders"),
        format!("knative-trigger-{ns}-replies"),
    ];
    let stack = Stack::start(&c, &topic, &[&groups[0], &groups[1]]).await;

    // A relative dataschema is accepted at ingress, as by the reference.
    let mut sent = event("o-1", "order.created");
    sent.push(("ce-dataschema", "schemas/order.json"));
    let answer = stack.post(&format!("/{ns}/b"), &sent, "{}").await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let got = &orders.wait_for(1, WAIT).await[0];
    assert_eq!(got.header("ce-knativekafkapartition"), Some("0"));
    assert_eq!(got.header("ce-knativekafkaoffset"), Some("0"));
    assert_eq!(got.header("kn-namespace"), Some(ns.as_str()));
    assert_eq!(
        got.header("ce-cluster"),
        Some("east"),
        "the broker's override"
    );
    assert_eq!(got.header("ce-dataschema"), Some("schemas/order.json"));

    let reply = &replies.wait_for(1, WAIT).await[0];
    assert_eq!(
        reply.id(),
        "reply-to-o-1",
        "the reply went back to the broker"
    );
    assert_eq!(reply.header("ce-dataschema"), Some("schemas/reply.json"));
    assert_eq!(reply.header("ce-knativekafkaoffset"), Some("1"));
}

/// The reference retries at once when `backoffDelay` is zero (a user's
/// `PT0S`), and turns a subscriber's `Kne-*` answer headers into
/// extensions of the dead-lettered event.
#[tokio::test]
async fn zero_backoff_retries_and_kne_headers_on_dead_letters() {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let flaky = Subscriber::scripted(|_, n| Answer::status(if n < 2 { 503 } else { 202 })).await;
    let refusing = Subscriber::scripted(|_, _| {
        Answer::status(422)
            .with_header("Kne-Reason", "bad-order")
            .with_header("Kne-Not-An-Extension", "dropped")
            .with_body("no")
    })
    .await;
    let dls = Subscriber::accepting().await;
    let mut retrying = trigger(&ns, "flaky", &flaky.url(), json!({}));
    retrying["egressConfig"] = json!({"retry": 2, "backoffDelay": "0", "timeout": "5000"});
    let mut dead_lettering = trigger(&ns, "refusing", &refusing.url(), json!({}));
    dead_lettering["egressConfig"] = json!({"deadLetter": dls.url(), "timeout": "5000"});
    let c = contract(
        1,
        vec![broker(&ns, "b", &topic, vec![retrying, dead_lettering])],
    );
    let groups = [
        format!("knative-trigger-{ns}-flaky"),
        format!("knative-trigger-{ns}-refusing"),
    ];
    let stack = Stack::start(&c, &topic, &[&groups[0], &groups[1]]).await;
    let answer = stack
        .post(&format!("/{ns}/b"), &event("z-1", "t"), "")
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let attempts = flaky.wait_for(3, WAIT).await;
    assert!(attempts.iter().all(|a| a.id() == "z-1"));
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(dead.id(), "z-1");
    assert_eq!(dead.header("ce-reason"), Some("bad-order"));
    assert_eq!(dead.header("ce-knativeerrorcode"), Some("422"));
    assert_eq!(
        dead.header("ce-knativeerrordata"),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode("no")
                .as_str()
        )
    );
    assert_eq!(dead.header("ce-not-an-extension"), None);
    assert_eq!(refusing.received().len(), 1, "422 is not retried");
}

/// Knative's prober marks a Broker or KafkaChannel Ready only once a GET
/// with `K-Network-Probe: probe` answers 200 with its hash. A resource with
/// the path `/` (or none) is routed by its host alone, so several can share
/// it, as in the reference.
#[tokio::test]
async fn probes_and_host_routing() {
    let ns = unique("ns");
    let (t1, t2) = (
        unique("knative-messaging-kafka"),
        unique("knative-messaging-kafka"),
    );
    create_topic(&bootstrap(), &t1, 1).await;
    create_topic(&bootstrap(), &t2, 1).await;
    let channel = |name: &str, topic: &str, path: &str| {
        json!({
            "uid": unique("uid"), "topics": [topic], "bootstrapServers": bootstrap(),
            "ingress": {"path": path, "host": format!("{name}-kn-channel.{ns}.svc.cluster.local")},
            "reference": reference("KafkaChannel", &ns, name),
        })
    };
    let c = contract(1, vec![channel("c1", &t1, "/"), channel("c2", &t2, "")]);
    let stack = Stack::start(&c, &t1, &[]).await;
    let probe = |host: String, path: &'static str| {
        let (client, url) = (stack.client.clone(), stack.receiver.url(path));
        async move {
            http::request(
                &client,
                ::http::Method::GET,
                &url,
                &[
                    ("host", &host),
                    ("k-network-probe", "probe"),
                    ("k-network-hash", "h-123"),
                ],
                "",
            )
            .await
        }
    };
    for name in ["c1", "c2"] {
        let answer = probe(format!("{name}-kn-channel.{ns}.svc.cluster.local"), "/").await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(answer.headers["k-network-hash"], "h-123");
    }
    let answer = probe("nobody.example".into(), "/nowhere").await;
    assert_eq!(answer.status, 404);

    for (name, id) in [("c1", "h-1"), ("c2", "h-2")] {
        let host = format!("{name}-kn-channel.{ns}.svc.cluster.local");
        let mut headers = event(id, "t");
        headers.push(("host", &host));
        let answer = stack.post("/", &headers, "").await;
        assert_eq!(answer.status, 202, "{name}: {}", answer.body);
    }
    for (topic, id) in [(&t1, "h-1"), (&t2, "h-2")] {
        let record = &TopicReader::new(&bootstrap(), topic, 1).read(1, WAIT).await[0];
        assert_eq!(header(record, "ce_id").as_deref(), Some(id), "{topic}");
    }
}

/// Until tokens are verified, a resource whose ingress has an `audience`
/// (OIDC on) refuses every request with 401 and writes nothing: never
/// accept what could not be verified.
#[tokio::test]
async fn a_resource_with_an_audience_refuses_what_it_cannot_verify() {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let mut guarded = broker(&ns, "guarded", &topic, vec![]);
    guarded["ingress"]["audience"] = json!(format!("eventing.knative.dev/broker/{ns}/guarded"));
    guarded["ingress"]["eventPolicies"] = json!([{
        "tokenMatchers": [{"exact": {"attributes": {"sub": "system:serviceaccount:ns:sender"}}},
                          {"prefix": {"attributes": {"sub": "system:serviceaccount:"}}}],
        "filters": [{"exact": {"attributes": {"type": "allowed"}}}],
    }]);
    guarded.as_object_mut().unwrap().remove("absentAuth");
    guarded["multiAuthSecret"] = json!({
        "protocol": "SASL_SSL",
        "references": [{"reference": reference("Secret", &ns, "kafka"),
                        "keyFieldReferences": [{"secretKey": "password", "field": "PASSWORD"}]}],
    });
    // Credentials from Secrets are `tests/kafka_credentials.rs`'s.
    let open = broker(&ns, "open", &topic, vec![]);
    let stack = Stack::start(&contract(1, vec![guarded, open]), &topic, &[]).await;

    for token in [None, Some("Bearer not-a-jwt"), Some("Basic dXNlcjpwYXNz")] {
        let mut headers = event("refused", "allowed");
        if let Some(token) = token {
            headers.push(("authorization", token));
        }
        let answer = stack.post(&format!("/{ns}/guarded"), &headers, "").await;
        assert_eq!(answer.status, 401, "{token:?}: {}", answer.body);
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert!(answer.body.contains("requires a token"), "{}", answer.body);
    }
    let answer = stack
        .post(&format!("/{ns}/open"), &event("taken", "t"), "")
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    // The two share the topic: what is first in it is the one accepted.
    let record = &TopicReader::new(&bootstrap(), &topic, 1)
        .read(1, WAIT)
        .await[0];
    assert_eq!(header(record, "ce_id").as_deref(), Some("taken"));
}

/// Filters as the reference evaluates them: an empty expected value is no
/// condition (it matches an absent attribute too), `any` of nothing
/// matches nothing, and a CESQL String result `'true'` is cast to Boolean.
#[tokio::test]
async fn filters_as_the_reference_evaluates_them() {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let subs = [
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
    ];
    let mut egresses = vec![
        trigger(
            &ns,
            "empty-legacy",
            &subs[0].url(),
            json!({"attributes": {"region": ""}}),
        ),
        trigger(&ns, "empty-exact", &subs[1].url(), json!({})),
        trigger(&ns, "empty-any", &subs[2].url(), json!({})),
        trigger(&ns, "cesql-string", &subs[3].url(), json!({})),
    ];
    egresses[1]["dialectedFilter"] =
        json!([{"exact": {"attributes": {"region": "", "type": "t"}}}]);
    egresses[2]["dialectedFilter"] = json!([{"any": {"filters": []}}]);
    egresses[3]["dialectedFilter"] = json!([{"cesql": {"expression": "CONCAT('tr', 'ue')"}}, {"not": {"filter": {"suffix": {"attributes": {"type": "x"}}}}}]);
    let names = ["empty-legacy", "empty-exact", "empty-any", "cesql-string"];
    let groups: Vec<String> = names
        .iter()
        .map(|n| format!("knative-trigger-{ns}-{n}"))
        .collect();
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let stack = Stack::start(
        &contract(1, vec![broker(&ns, "b", &topic, egresses)]),
        &topic,
        &group_refs,
    )
    .await;
    // No `region` attribute at all.
    for id in ["f-1", "f-2"] {
        let answer = stack.post(&format!("/{ns}/b"), &event(id, "t"), "").await;
        assert_eq!(answer.status, 202);
    }
    let both = ["f-1".to_string(), "f-2".to_string()];
    subs[0].wait_for_ids(&both, WAIT).await;
    subs[1].wait_for_ids(&both, WAIT).await;
    subs[3].wait_for_ids(&both, WAIT).await;
    // One reader hands every record to every trigger: by the time the
    // others have both, the empty `any` has been offered both too.
    assert!(
        subs[2].received().is_empty(),
        "any of nothing matches nothing"
    );
}

/// A broker with one trigger without a filter, on a topic of its own.
async fn one_trigger_taking_everything() -> (Stack, Subscriber, String, String) {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let sub = Subscriber::accepting().await;
    let group = format!("knative-trigger-{ns}-all");
    let egresses = vec![trigger(&ns, "all", &sub.url(), json!({}))];
    let stack = Stack::start(
        &contract(1, vec![broker(&ns, "b", &topic, egresses)]),
        &topic,
        &[&group],
    )
    .await;
    (stack, sub, ns, topic)
}

/// Records written by any Kafka producer are delivered: the JavaScript
/// SDK's Kafka binding writes both `content-type` and `ce_datacontenttype`
/// (accepted when they agree; when they differ `content-type` wins and the
/// disagreement is counted), and the dispatcher sets the broker's
/// overrides on records that never went through Ferry's receiver.
#[tokio::test]
async fn records_from_other_producers_get_overrides_and_one_content_type() {
    let (stack, sub, _, topic) = one_trigger_taking_everything().await;
    let base: [(&str, &[u8]); 4] = [
        ("ce_specversion", b"1.0"),
        ("ce_source", b"/js-sdk"),
        ("ce_type", b"t"),
        ("ce_id", b""),
    ];
    for (id, content_type, datacontenttype) in [
        ("js-same", "application/json", "application/json"),
        ("js-differ", "text/plain", "application/json"),
    ] {
        let mut headers: Vec<(&str, &[u8])> = base[..3].to_vec();
        headers.push(("ce_id", id.as_bytes()));
        headers.push(("content-type", content_type.as_bytes()));
        headers.push(("ce_datacontenttype", datacontenttype.as_bytes()));
        produce_record(
            &bootstrap(),
            &topic,
            Some(id.as_bytes()),
            &headers,
            b"{\"a\":1}",
        )
        .await;
    }
    let got = sub
        .wait_for_ids(&["js-same".into(), "js-differ".into()], WAIT)
        .await;
    let by_id = |id: &str| got.iter().find(|r| r.id() == id).unwrap();
    assert_eq!(
        by_id("js-same").header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        by_id("js-differ").header("content-type"),
        Some("text/plain")
    );
    for r in &got {
        assert_eq!(r.header("ce-cluster"), Some("east"), "{}", r.id());
        assert_eq!(r.header("ce-datacontenttype"), None, "{}", r.id());
    }
    let metrics = stack.dispatcher_metrics().await;
    assert_eq!(
        metrics.sum(
            "ferry_dispatch_content_type_conflicts_total",
            &[("topic", &topic)]
        ),
        1.0
    );
}

/// The JSON format implies `application/json` for `data` without a
/// `datacontenttype`, and SHOULD set it when re-serialised: a structured
/// event goes out in binary mode with that `Content-Type`. A 0.3 event
/// whose base64 data is sent as raw bytes no longer says it is base64.
#[tokio::test]
async fn structured_events_reach_binary_subscribers_with_their_content_type() {
    let (stack, sub, ns, _) = one_trigger_taking_everything().await;
    let structured = [("content-type", "application/cloudevents+json")];
    let implied = r#"{"specversion":"1.0","id":"s-1","source":"/s","type":"t","data":{"n":1}}"#;
    let old = r#"{"specversion":"0.3","id":"s-2","source":"/s","type":"t","datacontenttype":"application/octet-stream","datacontentencoding":"base64","data":"AAEC"}"#;
    for body in [implied, old] {
        let answer = stack.post(&format!("/{ns}/b"), &structured, body).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let got = sub.wait_for_ids(&["s-1".into(), "s-2".into()], WAIT).await;
    let by_id = |id: &str| got.iter().find(|r| r.id() == id).unwrap();
    assert_eq!(
        by_id("s-1").header("content-type"),
        Some("application/json")
    );
    assert_eq!(by_id("s-1").body.as_ref(), br#"{"n":1}"#);
    assert_eq!(by_id("s-2").body.as_ref(), &[0, 1, 2]);
    assert_eq!(by_id("s-2").header("ce-datacontentencoding"), None);
}

/// The reference's OpenTelemetry-era names: discarded events as
/// `kn_eventing_kafka_discarded_events`, and a request with no readable
/// event labelled `cloudevents_type="unknown"`.
#[tokio::test]
async fn refused_requests_are_counted_under_the_references_names() {
    let ns = unique("ns");
    let topic = unique("knative-broker-compat");
    create_topic(&bootstrap(), &topic, 1).await;
    let stack = Stack::start(
        &contract(1, vec![broker(&ns, "b", &topic, vec![])]),
        &topic,
        &[],
    )
    .await;
    let mut bad = event("bad", "t");
    bad.retain(|(n, _)| *n != "ce-source");
    // Percent-encoded, as the binding says; decoded, it has a space.
    bad.push(("ce-source", "/has%20a%20space"));
    let answer = stack.post(&format!("/{ns}/b"), &bad, "").await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("not a URI-reference"),
        "{}",
        answer.body
    );
    let metrics = Scrape::get(&stack.receiver.admin_url("")).await;
    assert_eq!(
        metrics.sum(
            "kn_eventing_kafka_discarded_events_total",
            &[("kn_broker_name", "b"), ("kn_broker_namespace", &ns)]
        ),
        1.0
    );
    assert_eq!(
        metrics.sum(
            "kn_eventing_dispatch_latency_ms_count",
            &[
                ("kn_broker_name", "b"),
                ("cloudevents_type", "unknown"),
                ("http_response_status_code", "400")
            ]
        ),
        1.0
    );
}
