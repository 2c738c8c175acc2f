//! `ferry send` and `ferry event-display` as a user runs them.

use std::{process::Command, time::Duration};

use ferry_harness::{
    eventually,
    subscriber::{Answer, Subscriber},
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn send(args: &[&str]) -> (bool, String) {
    let out = Command::new(FERRY)
        .arg("send")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ferry runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn send_posts_binary_or_structured_and_fails_on_refusal() {
    let sink = Subscriber::scripted(|r, _| {
        if r.id() == "refuse-me" {
            Answer::status(400).with_body("no thanks")
        } else {
            Answer::status(202)
        }
    })
    .await;
    let url = sink.url();
    let (ok, out) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            send(&[
                &url,
                "--type",
                "t.one",
                "--source",
                "/cli",
                "--id",
                "s-1",
                "--data",
                r#"{"a":1}"#,
                "--extension",
                "region=eu",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("202 Accepted (id s-1)"), "{out}");
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("ce-type"), Some("t.one"));
    assert_eq!(got[0].header("ce-region"), Some("eu"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].body.as_ref(), br#"{"a":1}"#);

    let (ok, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            send(&[
                &url,
                "--type",
                "t",
                "--source",
                "/cli",
                "--id",
                "s-2",
                "--structured",
                "--data",
                "plain",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok);
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        got[1].header("content-type"),
        Some("application/cloudevents+json")
    );
    let event: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(
        (event["id"].as_str(), event["datacontenttype"].as_str()),
        (Some("s-2"), Some("application/octet-stream"))
    );

    let (ok, out) = tokio::task::spawn_blocking(move || {
        send(&[&url, "--type", "t", "--source", "/cli", "--id", "refuse-me"])
    })
    .await
    .unwrap();
    assert!(!ok, "a refusal is a failure");
    assert!(
        out.contains("400 Bad Request") && out.contains("no thanks"),
        "{out}"
    );
}

#[tokio::test]
async fn event_display_prints_what_it_receives() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut display = Command::new(FERRY)
        .args(["event-display", "--listen", &listen])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = ferry_harness::http::client();
    let url = format!("http://{listen}/");
    eventually("event-display listening", Duration::from_secs(10), || {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let answer = ferry_harness::send_event(
        &client,
        &url,
        "shown-1",
        "t.display",
        &[("ce-greeting", "Euro%20%E2%82%AC")],
    )
    .await;
    assert_eq!(answer.status, 202);
    let answer = ferry_harness::http::post(
        &client,
        &url,
        &[("content-type", "text/plain")],
        "not an event",
    )
    .await;
    assert_eq!(answer.status, 400);
    let _ = display.kill();
    let output = display.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    for line in [
        "☁️  cloudevents.Event",
        "  type: t.display",
        "  id: shown-1",
        "  greeting: Euro €",
        "Data,",
    ] {
        assert!(printed.contains(line), "'{line}' not in:\n{printed}");
    }
}

#[tokio::test]
async fn topic_create_and_tail() {
    let bootstrap = ferry_harness::bootstrap();
    let topic = ferry_harness::unique("ferry-topic-tool");
    let ferry = |args: Vec<String>| {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(FERRY)
                .arg("topic")
                .args(args)
                .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    let (ok, out) = ferry(vec![
        "create".into(),
        topic.clone(),
        "--partitions".into(),
        "2".into(),
    ])
    .await
    .unwrap();
    assert!(ok && out.contains("created topic"), "{out}");
    assert!(ferry_harness::kafka::topic_exists(&bootstrap, &topic));
    let (ok, out) = ferry(vec!["create".into(), topic.clone()]).await.unwrap();
    assert!(
        ok && out.contains("exists"),
        "creating again is fine: {out}"
    );

    // Write one event with the Kafka binding, then tail until it shows.
    let producer = ferry_common::producer::ClusterProducer::new(
        &ferry_common::kafka::Cluster::plain(bootstrap.as_str()),
        &ferry_common::kafka::ProducerSettings {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
            overrides: Default::default(),
        },
    )
    .unwrap();
    let mut event = ferry_event::Event::new("tail-1", "/tools", "t.tail");
    event.set("region", "eu".into());
    let record = ferry_event::kafka::encode(&event, ferry_event::kafka::ContentMode::Binary);
    producer.send(&topic, &record).await.unwrap();
    let (ok, out) = ferry(vec![
        "tail".into(),
        topic.clone(),
        "--until-id".into(),
        "tail-1".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("  id: tail-1") && out.contains("  region: eu"),
        "{out}"
    );

    let (ok, out) = ferry(vec![
        "tail".into(),
        "no-such-topic-here".into(),
        "--count".into(),
        "1".into(),
    ])
    .await
    .unwrap();
    assert!(!ok && out.contains("does not exist"), "{out}");
}

/// A zero window or delivery budget would deliver nothing, ever: refused
/// at start with the flag's name.
#[test]
fn the_dispatcher_refuses_a_zero_window_or_budget() {
    for flag in ["--max-in-flight", "--max-deliveries-per-topic"] {
        let out = Command::new(FERRY)
            .args([
                "dispatcher",
                "--contract",
                "/nonexistent/contract.json",
                flag,
                "0",
            ])
            .output()
            .expect("ferry runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '0' for '{flag}")),
            "{stderr}"
        );
    }
}

/// Trace export asked for over a protocol Ferry does not build in is
/// refused at start with the reason, not silently left off.
#[test]
fn an_unsupported_otlp_protocol_is_refused_at_start() {
    let out = Command::new(FERRY)
        .args(["receiver", "--contract", "/nonexistent/contract.json"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .expect("ferry runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("OTLP protocol 'grpc' is not supported"),
        "{stderr}"
    );
}
