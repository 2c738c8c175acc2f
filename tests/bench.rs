//! `ferry bench load`, the instrument of the benchmarks and the fault
//! tests: its counters must be right, or every figure built on them lies.

use std::{process::Output, time::Duration};

use ferry_harness::{
    bootstrap, free_port,
    process::{write_resource, FerryProcess, Standalone},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

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

#[tokio::test]
async fn the_raw_producer_writes_every_record_as_the_receiver_would() {
    let topic = unique("bench-produce");
    ferry_harness::kafka::create_topic(&bootstrap(), &topic, 3).await;
    let output = tokio::process::Command::new(FERRY)
        .args([
            "bench", "produce", "--topic", &topic, "--count", "300", "--size", "64",
        ])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // Read back rather than summing high watermarks: Tansu 0.6 reports a
    // batched partition's end short of its last record.
    let reader = ferry_harness::kafka::TopicReader::new(&bootstrap(), &topic, 3);
    let records = reader.read(300, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 300);
    let record = &records[0];
    assert_eq!(
        ferry_harness::kafka::header(record, "ce_type").as_deref(),
        Some("dev.ferry.bench")
    );
    assert_eq!(ferry_harness::kafka::value(record).len(), 64);
}

/// The suite against separate controller, receiver and dispatcher
/// processes, shortened: every scenario that moves events reports 0 lost,
/// Ferry's processes and the baselines alike.
#[tokio::test]
async fn the_suite_runs_ingress_latency_dispatch_and_fanout_without_loss() {
    let work = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(FERRY)
        .args([
            "bench",
            "suite",
            "--scenarios",
            "1,2,3,4",
            "--duration-secs",
            "1",
        ])
        .args(["--connections", "4", "--backlog", "300", "--fanout", "1,4"])
        .arg("--work-dir")
        .arg(work.path())
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let tables = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{tables}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = |first: &str| -> Vec<String> {
        tables
            .lines()
            .map(|l| {
                l.split('|')
                    .map(|c| c.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .find(|cells| cells.get(1).is_some_and(|c| c == first))
            .unwrap_or_else(|| panic!("no row '{first}' in\n{tables}"))
    };
    let receiver = row("ferry receiver (acks=all)");
    assert!(receiver[2].parse::<f64>().unwrap() > 0.0, "events/s");
    assert_eq!(receiver[5], "0", "no request failed");
    let gateway = row("raw HTTP → Kafka gateway (hyper + rdkafka, acks=all)");
    assert!(gateway[2].parse::<f64>().unwrap() > 0.0, "events/s");
    assert_eq!(gateway[5], "0", "the gateway stored every event");
    // Scenario 2: the floor of the HTTP hops (gateway → relay, the relay
    // from each partition's end), each of Ferry's hops beside the other's
    // least, and Ferry's path, each on a topic of its own, lose nothing.
    for path in [
        "HTTP → raw gateway → Kafka → raw relay → HTTP (floor with the HTTP hops)",
        "HTTP → receiver → Kafka → raw relay → HTTP (the receiver's share)",
        "HTTP → raw gateway → Kafka → dispatcher → HTTP (the dispatcher's share)",
        "HTTP → receiver → Kafka → dispatcher → HTTP",
    ] {
        let cells = row(path);
        assert!(cells[2].parse::<u64>().unwrap() > 0, "sent through {path}");
        assert_eq!(cells[3], "0", "lost through {path}");
    }
    let dispatch = row("ferry dispatcher (unordered, commits)");
    assert_eq!(dispatch[3], "0", "lost");
    let (one, four) = (row("1"), row("4"));
    assert_eq!(
        four[2], "100 × 4",
        "the backlog shared out over the triggers"
    );
    assert_eq!(one[5], "0", "lost");
    assert_eq!(four[5], "0", "lost");
    // Kafka connections do not grow with the triggers. The peak is sampled
    // from /proc while clients come and go (a stopping reader's sockets
    // can still be open), so one client's worth (3 here) of noise either
    // way is allowed; a consumer per trigger would cost 2 per trigger.
    let (one, four): (usize, usize) = (one[10].parse().unwrap(), four[10].parse().unwrap());
    assert!(
        four <= one.max(3) + 3 && four < 2 * 4,
        "Kafka connections grew with the triggers: {one} for one, {four} for four"
    );
}
