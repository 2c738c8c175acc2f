//! `ferry bench load`, the instrument of the benchmarks and the fault
//! tests: its counters must be right, or every figure built on them lies.

use std::{process::Output, time::Duration};

use ferry_harness::{
    bootstrap,
    process::{write_resource, FerryProcess, Standalone},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ferry bench load` to completion: its exit status and JSON report.
async fn load(args: &[&str]) -> (Output, serde_json::Value) {
    let output = tokio::process::Command::new(FERRY)
        .args(["bench", "load", "--json"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("ferry bench load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.lines().next().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}"));
    (output, report)
}

async fn wait_listening(port: u16) {
    ferry_harness::eventually("the server listens", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn against_the_noop_server_every_event_is_accepted() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _noop = FerryProcess::spawn(FERRY, &["bench", "noop", "--listen", &listen], &[]);
    wait_listening(port).await;
    let url = format!("http://{listen}/");
    let (output, report) = load(&[&url, "--count", "500", "--connections", "4"]).await;
    assert!(output.status.success());
    assert_eq!(report["sent"], 500);
    assert_eq!(report["accepted"], 500);
    assert_eq!(report["errors"], 0);
    assert!(report["ingress_latency"]["p99"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn counts_what_every_trigger_received_and_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("bench");
    let sink = format!("127.0.0.1:{}", free_port());
    write_resource(
        dir.path(),
        "broker.yaml",
        &format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: {ns}\n"),
    );
    for t in ["one", "two"] {
        write_resource(
            dir.path(),
            &format!("{t}.yaml"),
            &format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {t}\n  namespace: {ns}\n\
                 spec:\n  broker: b\n  subscriber:\n    uri: http://{sink}/{t}\n"
            ),
        );
    }
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Trigger", "two", "True").await;
    ferry.ready().await;
    let url = format!("{}/{ns}/b", ferry.ingress);

    let (output, report) = load(&[
        &url,
        "--count",
        "300",
        "--rate",
        "300",
        "--connections",
        "4",
        "--sink",
        &sink,
        "--copies",
        "2",
        "--fail-on-loss",
    ])
    .await;
    assert!(output.status.success(), "{report}");
    assert_eq!(report["accepted"], 300);
    assert_eq!(report["lost"], 0);
    assert_eq!(
        report["received"].as_u64().unwrap() - report["duplicates"].as_u64().unwrap(),
        600,
        "each trigger got each event"
    );
    assert!(report["end_to_end"]["p50"].as_f64().unwrap() > 0.0);

    // A third trigger that does not exist: everything it should have had is lost.
    let (output, report) = load(&[
        &url,
        "--count",
        "50",
        "--connections",
        "2",
        "--sink",
        &sink,
        "--copies",
        "3",
        "--drain-secs",
        "5",
        "--fail-on-loss",
    ])
    .await;
    assert!(!output.status.success(), "--fail-on-loss fails on loss");
    assert_eq!(report["accepted"], 50);
    assert_eq!(report["lost"], 50);
}
