//! The admin port's page in a real browser: headless Chromium loads it
//! from a running standalone with a broker, two triggers (one stuck, so
//! its lag grows), a source and a trigger that is not Ready, and the test
//! reads the DOM after the page's script ran. A screenshot is kept in
//! `target/test-artifacts/mesh.png`.

use std::{path::PathBuf, process::Command, time::Duration};

use ferry_harness::{
    bootstrap, eventually,
    http::{self, HttpClient},
    process::{resources_at, write_resource, Standalone},
    subscriber::{Answer, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

/// Chromium, headless, on `url`: `--dump-dom` or `--screenshot=...`.
fn chromium(url: &str, output: &str) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1100",
            // Long enough for the script's first fetches and a refresh.
            "--virtual-time-budget=5000",
            output,
            url,
        ])
        .output()
        .expect("chromium runs (scripts/setup installs it)")
}

async fn post(client: &HttpClient, url: &str, id: &str) {
    ferry_harness::post_event(client, url, id, "dev.example.order", "/shop").await
}

#[tokio::test]
async fn the_page_pictures_the_mesh_in_a_browser() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let fast = Subscriber::accepting().await;
    // Never answers while the test runs: its trigger falls behind.
    let (_hold, gate) = tokio::sync::watch::channel(false);
    let stuck = Subscriber::scripted(move |_, _| Answer::status(202).until(gate.clone())).await;
    let archive = unique("archive");
    let yaml = format!(
        r#"apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: shop, namespace: {ns}, annotations: {{ferry.dev/eventtype-auto-create: enabled}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: fast, namespace: {ns}}}
spec: {{broker: shop, filter: {{attributes: {{type: dev.example.order}}}}, subscriber: {{uri: "{fast}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: stuck, namespace: {ns}}}
spec: {{broker: shop, subscriber: {{uri: "{stuck}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: broken, namespace: {ns}}}
spec: {{broker: nowhere, subscriber: {{uri: "{fast}"}}}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: beat, namespace: {ns}}}
spec:
  schedule: "* * * * * *"
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: shop}}}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {{name: archive, namespace: {ns}}}
spec: {{topic: {archive}, numPartitions: 1, replicationFactor: 1}}
---
apiVersion: sources.knative.dev/v1
kind: KafkaSource
metadata: {{name: replay, namespace: {ns}}}
spec:
  topics: [{archive}]
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: shop}}}}
"#,
        archive = archive,
        fast = fast.url(),
        stuck = stuck.url()
    );
    write_resource(dir.path(), "mesh.yaml", &yaml);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Trigger", "stuck", "True").await;
    let client = http::client();
    let url = format!("{}/{ns}/shop", ferry.ingress);
    // Until the triggers read the topic, an event may come before their
    // groups start: send until the fast one gets one, then a batch.
    let mut sent = 0;
    eventually("the fast trigger delivering", WAIT, || {
        sent += 1;
        let (client, url, id) = (client.clone(), url.clone(), format!("warm-{sent}"));
        let got = !fast.received().is_empty();
        async move {
            post(&client, &url, &id).await;
            got.then_some(())
        }
    })
    .await;
    let before = fast.received().len();
    for i in 0..20 {
        post(&client, &url, &format!("order-{i}")).await;
    }
    fast.wait_for(before + 20, WAIT).await;
    eventually("the stuck trigger behind", WAIT, || async {
        let resources = resources_at(&ferry.admin).await;
        resources
            .iter()
            .any(|r| r["name"] == "stuck" && r["lag"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    })
    .await;

    // The page shows what /resources says when it loads: wait until that
    // has the fast trigger caught up (its lag is measured every 200 ms, and
    // a loaded machine can be a few measurements late).
    eventually("the fast trigger caught up", WAIT, || async {
        let resources = resources_at(&ferry.admin).await;
        resources
            .iter()
            .any(|r| r["name"] == "fast" && r["lag"].as_u64().is_some_and(|lag| lag < 5))
            .then_some(())
    })
    .await;

    let page = format!("{}/", ferry.admin);
    let out = chromium(&page, "--dump-dom");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    assert!(
        dom.contains(r#"data-loaded="true""#),
        "the script ran:\n{dom}"
    );
    let broker = format!(r#"data-name="{ns}/shop" data-kind="Broker""#);
    assert!(dom.contains(&broker), "the broker's card:\n{dom}");
    assert!(dom.contains(&url), "the broker's address:\n{dom}");
    let row = |name: &str| {
        let start = dom
            .find(&format!(r#"<tr class="egress" data-name="{name}">"#))
            .unwrap_or_else(|| panic!("a row for trigger {name}:\n{dom}"));
        let end = dom[start..].find("</tr>").unwrap() + start;
        dom[start..end].to_owned()
    };
    let lag = |row: &str| -> (u64, bool) {
        let cell = row
            .split(r#"<td class="lag"#)
            .nth(1)
            .unwrap_or_else(|| panic!("a lag cell: {row}"));
        let behind = cell.starts_with(" behind");
        let n = cell.split('>').nth(1).and_then(|r| r.split('<').next());
        (n.and_then(|n| n.parse().ok()).expect("a number"), behind)
    };
    let fast_row = row("fast");
    assert!(
        fast_row.contains("type=dev.example.order"),
        "its filter: {fast_row}"
    );
    assert!(
        fast_row.contains("delivered"),
        "its last outcome: {fast_row}"
    );
    let stuck_row = row("stuck");
    let (stuck_lag, stands_out) = lag(&stuck_row);
    assert!(
        stuck_lag >= 20 && stands_out,
        "the stuck trigger's lag stands out: {stuck_row}"
    );
    // The fast one took the batch; its lag as the page read it can be a
    // commit or two behind what /resources said a moment before.
    let (fast_lag, _) = lag(&fast_row);
    assert!(fast_lag < 20 && fast_lag < stuck_lag, "{fast_row}");
    assert!(stuck_row.contains("everything"), "no filter: {stuck_row}");
    assert!(dom.contains(r#"data-name="beat""#), "the source:\n{dom}");
    let fed = dom
        .split("fed by ")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("the broker is fed:\n{dom}"));
    for source in ["PingSource beat", "KafkaSource replay"] {
        assert!(fed.contains(source), "{source} feeds the broker: {fed}");
    }
    let sink = format!(r#"data-name="{ns}/archive" data-kind="KafkaSink""#);
    assert!(dom.contains(&sink), "the KafkaSink's card:\n{dom}");
    assert!(
        dom.contains(&format!("writes to topic {archive}")),
        "the KafkaSink's topic:\n{dom}"
    );
    assert!(
        dom.contains(&format!("<strong>Trigger {ns}/broken</strong>")),
        "the broken trigger stands out:\n{dom}"
    );
    assert!(
        dom.contains("BrokerDoesNotExist"),
        "with its reason:\n{dom}"
    );
    assert!(
        dom.contains("dev.example.order from /shop"),
        "the broker's EventTypes:\n{dom}"
    );

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("mesh.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&page, &format!("--screenshot={}", shot.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
}

/// `/events?broker=ns/name` streams the broker's events as server-sent
/// events, for `curl` as for the page; without a broker it is a 400.
#[tokio::test]
async fn the_live_tail_streams_a_brokers_events() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: shop, namespace: {ns}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: other, namespace: {ns}}}\n"
    );
    write_resource(dir.path(), "brokers.yaml", &yaml);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ferry.wait_for_status("Broker", "shop", "True").await;
    ferry.wait_for_status("Broker", "other", "True").await;
    ferry.ready().await;
    let client = http::client();
    let refused = http::request(
        &client,
        ::http::Method::GET,
        &format!("{}/events", ferry.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(
        refused.status,
        ::http::StatusCode::BAD_REQUEST,
        "{}",
        refused.body
    );

    let admin = ferry.admin.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&admin).await.unwrap();
    let request = format!("GET /events?broker={ns}/shop HTTP/1.1\r\nHost: {admin}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let lines = BufReader::new(stream).lines();
    let (head, lines) = tokio::time::timeout(WAIT, lines_until(lines, |l| l == ": watching"))
        .await
        .expect("connected");
    assert!(
        head.iter()
            .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream")),
        "{head:?}"
    );
    let other = format!("{}/{ns}/other", ferry.ingress);
    post(&client, &other, "elsewhere").await;
    post(&client, &format!("{}/{ns}/shop", ferry.ingress), "here").await;
    let (got, _) = tokio::time::timeout(WAIT, lines_until(lines, |l| l.starts_with("data: ")))
        .await
        .expect("an event");
    let data = got.last().unwrap().trim_start_matches("data: ").to_owned();
    let event: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        event["id"], "here",
        "only the watched broker's events: {event}"
    );
    assert_eq!(event["type"], "dev.example.order");
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>;

/// Reads lines until one passes `done`; those read, and the rest.
async fn lines_until(mut lines: Lines, done: impl Fn(&str) -> bool) -> (Vec<String>, Lines) {
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the stream goes on");
        let last = done(&line);
        seen.push(line);
        if last {
            return (seen, lines);
        }
    }
}
