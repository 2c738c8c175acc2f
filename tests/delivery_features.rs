//! Ferry's delivery annotations (`delivery.ferry.dev/`) on the real
//! broker, measured where they matter: at the subscriber.

use std::time::Duration;

use ferry_harness::{
    bootstrap, http, post_event,
    process::{write_resource, Standalone},
    subscriber::{Answer, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Exponential backoff from 100 ms would wait 0.2, 0.4, 0.8, 1.6 and 3.2 s
/// between six attempts; `backoff-max: PT0.3S` holds every wait to 0.3 s.
#[tokio::test]
async fn backoff_max_bounds_the_waits_between_attempts() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let failing = Subscriber::scripted(|_, _| Answer::status(503)).await;
    write_resource(
        dir.path(),
        "capped.yaml",
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {ns}}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
             metadata: {{name: capped, namespace: {ns}, annotations: {{delivery.ferry.dev/backoff-max: PT0.3S}}}}\n\
             spec:\n  broker: b\n  subscriber: {{uri: \"{}\"}}\n  \
             delivery: {{retry: 5, backoffPolicy: exponential, backoffDelay: PT0.1S}}\n",
            failing.url()
        ),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Trigger", "capped", "True").await;
    ferry.ready().await;
    post_event(
        &http::client(),
        &format!("{}/{ns}/b", ferry.ingress),
        "retried",
        "dev.example.t",
        "/tests",
    )
    .await;
    let attempts = failing.wait_for(6, Duration::from_secs(30)).await;
    let waits: Vec<Duration> = attempts
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .collect();
    // Each wait is the cap at most, plus the time an attempt takes here.
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(550)),
        "{waits:?}"
    );
    assert!(
        waits[4] >= Duration::from_millis(300),
        "the last waits reach the cap, and are still waited: {waits:?}"
    );
    // The schedule is in /resources.
    let resources = ferry_harness::process::resources_at(&ferry.admin).await;
    let trigger = resources
        .iter()
        .find(|r| r["kind"] == "Trigger" && r["name"] == "capped")
        .expect("the trigger in /resources");
    assert_eq!(
        trigger["retrySchedule"],
        serde_json::json!([200, 300, 300, 300, 300]),
        "{trigger}"
    );
}

/// A subscriber that takes 500 ms per request sees at most the trigger's
/// `max-in-flight` at once; a trigger without the annotation, on the same
/// broker and events, goes wider.
#[tokio::test]
async fn max_in_flight_bounds_a_triggers_concurrent_requests() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let slow =
        || Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(500)));
    let (limited, free) = (slow().await, slow().await);
    let trigger = |name: &str, annotations: &str, url: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
             metadata: {{name: {name}, namespace: {ns}, annotations: {{kafka.eventing.knative.dev/delivery.order: unordered{annotations}}}}}\n\
             spec: {{broker: b, subscriber: {{uri: \"{url}\"}}}}\n"
        )
    };
    write_resource(
        dir.path(),
        "limited.yaml",
        &[
            format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {ns}}}\n"),
            trigger("limited", ", delivery.ferry.dev/max-in-flight: \"2\"", &limited.url()),
            trigger("free", "", &free.url()),
        ]
        .join("---\n"),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Trigger", "limited", "True").await;
    ferry.wait_for_status("Trigger", "free", "True").await;
    ferry.ready().await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    for i in 0..20 {
        post_event(&client, &url, &format!("e{i}"), "dev.example.t", "/tests").await;
    }
    limited.wait_for(20, Duration::from_secs(30)).await;
    free.wait_for(20, Duration::from_secs(30)).await;
    assert!(
        limited.max_concurrency() <= 2,
        "limited: {}",
        limited.max_concurrency()
    );
    assert!(
        free.max_concurrency() > 2,
        "free: {}",
        free.max_concurrency()
    );
}

/// A trigger made after events were accepted: with `start: earliest` its
/// new group begins at the beginning and gets them; without, at the end.
#[tokio::test]
async fn start_earliest_delivers_the_backlog_to_a_new_trigger() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (replaying, plain) = (Subscriber::accepting().await, Subscriber::accepting().await);
    write_resource(
        dir.path(),
        "broker.yaml",
        &format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {ns}}}\n"),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Broker", "b", "True").await;
    ferry.ready().await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    for i in 0..3 {
        post_event(
            &client,
            &url,
            &format!("before-{i}"),
            "dev.example.t",
            "/tests",
        )
        .await;
    }
    let trigger = |name: &str, annotations: &str, url: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
             metadata: {{name: {name}, namespace: {ns}{annotations}}}\n\
             spec: {{broker: b, subscriber: {{uri: \"{url}\"}}}}\n"
        )
    };
    write_resource(
        dir.path(),
        "triggers.yaml",
        &[
            trigger(
                "replaying",
                ", annotations: {delivery.ferry.dev/start: earliest}",
                &replaying.url(),
            ),
            trigger("plain", "", &plain.url()),
        ]
        .join("---\n"),
    );
    ferry.wait_for_status("Trigger", "replaying", "True").await;
    ferry.wait_for_status("Trigger", "plain", "True").await;
    let backlog = replaying.wait_for(3, Duration::from_secs(30)).await;
    let mut ids: Vec<_> = backlog.iter().filter_map(|r| r.header("ce-id")).collect();
    ids.sort();
    assert_eq!(ids, ["before-0", "before-1", "before-2"]);
    // The plain trigger started at the end: only what comes after.
    ferry_harness::eventually(
        "the plain trigger delivering",
        Duration::from_secs(30),
        || {
            let (client, url) = (client.clone(), url.clone());
            let got = plain.received();
            async move {
                post_event(&client, &url, "after", "dev.example.t", "/tests").await;
                (!got.is_empty()).then_some(())
            }
        },
    )
    .await;
    assert!(plain
        .received()
        .iter()
        .all(|r| r.header("ce-id") == Some("after")));
}
