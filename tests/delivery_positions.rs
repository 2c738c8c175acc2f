//! Ferry's ordering and position annotations on the real broker: per-key
//! order (`ordered-by-key`), pause and resume, start times and replays,
//! each checked at the subscriber.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_harness::{
    bootstrap, eventually, http, kafka, post_event,
    process::{resources_at, write_resource, Standalone},
    send_event,
    subscriber::{Answer, Received, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const DEADLINE: Duration = Duration::from_secs(30);

fn broker(ns: &str) -> String {
    format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {ns}}}\n")
}

fn trigger(ns: &str, name: &str, annotations: &str, url: &str, delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {{name: {name}, namespace: {ns}, annotations: {{{annotations}}}}}\n\
         spec: {{broker: b, subscriber: {{uri: \"{url}\"}}{delivery}}}\n"
    )
}

fn ids(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.id().to_owned()).collect()
}

/// How many times each id arrived.
fn counts(received: &[Received]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids(received) {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// One trigger's entry in `/resources`, once `accept` holds for it.
async fn wait_for_entry(
    admin: &str,
    name: &str,
    what: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(what, DEADLINE, || async {
        resources_at(admin)
            .await
            .into_iter()
            .find(|r| r["kind"] == "Trigger" && r["name"] == name)
            .filter(|r| accept(r))
    })
    .await
}

async fn standalone(dir: &Path, state: &Path) -> Standalone {
    let ferry = Standalone::start(FERRY, dir, state, &bootstrap()).await;
    ferry.ready().await;
    ferry
}

/// Four keys of ten events each, interleaved; the subscriber refuses key
/// k0's first three attempts. Each key's events arrive in the order they
/// were accepted, k0's included; the other keys keep flowing while k0
/// waits for its retries; and keys go at once.
#[tokio::test]
async fn ordered_by_key_keeps_each_keys_order_and_a_retry_blocks_only_its_key() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let refused = Arc::new(AtomicUsize::new(0));
    let subscriber = {
        let refused = refused.clone();
        Subscriber::scripted(move |request, _| {
            if request.header("ce-partitionkey") == Some("k0")
                && refused.fetch_add(1, Ordering::SeqCst) < 3
            {
                return Answer::status(503);
            }
            Answer::status(202).after(Duration::from_millis(50))
        })
        .await
    };
    write_resource(
        dir.path(),
        "by-key.yaml",
        &[
            broker(&ns),
            trigger(
                &ns,
                "by-key",
                // From the beginning: a trigger is Ready before the
                // dispatcher pins its group at the end, and the first
                // events must not fall into that gap on a loaded machine.
                "kafka.eventing.knative.dev/delivery.order: ordered-by-key, \
                 delivery.ferry.dev/start: earliest",
                &subscriber.url(),
                ", delivery: {retry: 5, backoffPolicy: linear, backoffDelay: PT0.3S}",
            ),
        ]
        .join("---\n"),
    );
    let ferry = standalone(dir.path(), state.path()).await;
    ferry.wait_for_status("Trigger", "by-key", "True").await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    for i in 0..40 {
        let key = format!("k{}", i % 4);
        let id = format!("{key}-{:02}", i / 4);
        let answer = send_event(
            &client,
            &url,
            &id,
            "dev.example.t",
            &[("ce-partitionkey", &key)],
        )
        .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let received = subscriber.wait_for(43, DEADLINE).await;
    for key in ["k0", "k1", "k2", "k3"] {
        let mut order: Vec<String> = ids(&received)
            .into_iter()
            .filter(|id| id.starts_with(key))
            .collect();
        order.dedup(); // a refused attempt and its retry
        let expected: Vec<String> = (0..10).map(|i| format!("{key}-{i:02}")).collect();
        assert_eq!(order, expected, "key {key} in order, each once");
    }
    let first_refusal = received.iter().position(|r| r.id() == "k0-00").unwrap();
    let k0_through = received.iter().rposition(|r| r.id() == "k0-00").unwrap();
    let others_meanwhile = received[first_refusal..k0_through]
        .iter()
        .filter(|r| !r.id().starts_with("k0"))
        .count();
    assert!(
        others_meanwhile > 0,
        "other keys waited for k0's retries: {:?}",
        ids(&received)
    );
    assert!(
        received[first_refusal..k0_through]
            .iter()
            .all(|r| r.id() == "k0-00" || !r.id().starts_with("k0")),
        "nothing of k0 passed its refused event"
    );
    assert!(subscriber.max_concurrency() > 1, "keys went one at a time");
}

/// A paused trigger takes nothing while its neighbour delivers; its lag
/// shows what waits; resumed, it delivers all of it.
#[tokio::test]
async fn a_paused_trigger_keeps_its_position_and_resumes_from_it() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (held, live) = (Subscriber::accepting().await, Subscriber::accepting().await);
    let yaml = |paused: bool| {
        [
            broker(&ns),
            trigger(
                &ns,
                "held",
                &format!("delivery.ferry.dev/paused: '{paused}'"),
                &held.url(),
                "",
            ),
            trigger(&ns, "live", "", &live.url(), ""),
        ]
        .join("---\n")
    };
    write_resource(dir.path(), "paused.yaml", &yaml(true));
    let ferry = standalone(dir.path(), state.path()).await;
    ferry.wait_for_status("Trigger", "held", "True").await;
    ferry.wait_for_status("Trigger", "live", "True").await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    let sent: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
    for id in &sent {
        post_event(&client, &url, id, "dev.example.t", "/tests").await;
    }
    live.wait_for_ids(&sent, DEADLINE).await;
    wait_for_entry(
        &ferry.admin,
        "held",
        "the paused trigger's lag to show 5",
        |r| r["lag"] == 5,
    )
    .await;
    assert!(
        held.received().is_empty(),
        "paused, yet delivered: {:?}",
        ids(&held.received())
    );

    write_resource(dir.path(), "paused.yaml", &yaml(false));
    let resumed = held.wait_for_ids(&sent, DEADLINE).await;
    assert_eq!(
        counts(&resumed).values().max(),
        Some(&1),
        "{:?}",
        ids(&resumed)
    );
    wait_for_entry(&ferry.admin, "held", "the lag back to 0", |r| r["lag"] == 0).await;
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Events e0..e2, a moment, e3..e5. Replaying a trigger to the moment
/// delivers e3..e5 to it again, and to no other trigger; a trigger made
/// with `start` at the moment begins there; after a restart the replay
/// is not done again.
#[tokio::test]
async fn replay_to_a_time_redelivers_from_then_to_that_trigger_only() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (replayed, bystander, late) = (
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
    );
    let triggers = |replay: &str| {
        [
            broker(&ns),
            trigger(&ns, "replayed", replay, &replayed.url(), ""),
            trigger(&ns, "bystander", "", &bystander.url(), ""),
        ]
        .join("---\n")
    };
    write_resource(dir.path(), "replay.yaml", &triggers(""));
    let ferry = standalone(dir.path(), state.path()).await;
    ferry.wait_for_status("Trigger", "replayed", "True").await;
    ferry.wait_for_status("Trigger", "bystander", "True").await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    let post_all = |ids: Vec<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            for id in &ids {
                post_event(&client, &url, id, "dev.example.t", "/tests").await;
            }
            ids
        }
    };
    let before = post_all((0..3).map(|i| format!("e{i}")).collect()).await;
    replayed.wait_for_ids(&before, DEADLINE).await;
    let moment = kafka::a_moment_later().await;
    let after = post_all((3..6).map(|i| format!("e{i}")).collect()).await;
    replayed.wait_for_ids(&after, DEADLINE).await;
    bystander.wait_for(6, DEADLINE).await;

    let at = rfc3339(moment);
    write_resource(
        dir.path(),
        "late.yaml",
        &trigger(
            &ns,
            "late",
            &format!("delivery.ferry.dev/start: '{at}'"),
            &late.url(),
            "",
        ),
    );
    write_resource(
        dir.path(),
        "replay.yaml",
        &triggers(&format!("delivery.ferry.dev/replay: '{at}'")),
    );
    replayed.wait_for(9, DEADLINE).await;
    late.wait_for(3, DEADLINE).await;
    let status = wait_for_entry(&ferry.admin, "replayed", "the replay in the status", |r| {
        r["annotations"]["delivery.ferry.dev/replay"] == at.as_str()
    })
    .await;
    assert_eq!(status["ready"], "True", "{status}");
    // Whatever is delivered next comes after anything the replay moved.
    post_all(vec!["next".into()]).await;
    for subscriber in [&replayed, &bystander, &late] {
        subscriber.wait_for_ids(&["next".into()], DEADLINE).await;
    }
    let twice: BTreeMap<String, usize> = ["e3", "e4", "e5"].map(|id| (id.to_owned(), 2)).into();
    let replayed_counts = counts(&replayed.received());
    for (id, n) in &replayed_counts {
        let expected = twice.get(id).copied().unwrap_or(1);
        assert_eq!(*n, expected, "{id} in {replayed_counts:?}");
    }
    assert_eq!(replayed_counts.len(), 7, "{replayed_counts:?}");
    assert!(
        counts(&bystander.received()).values().all(|n| *n == 1),
        "the bystander got nothing again"
    );
    let mut late_ids = ids(&late.received());
    late_ids.sort();
    assert_eq!(late_ids, ["e3", "e4", "e5", "next"], "began at the moment");

    // Restarted with the annotation still there, the replay is not done again.
    ferry.terminate(DEADLINE).await;
    let ferry = standalone(dir.path(), state.path()).await;
    let url = format!("{}/{ns}/b", ferry.ingress);
    post_event(&client, &url, "after-restart", "dev.example.t", "/tests").await;
    replayed
        .wait_for_ids(&["after-restart".into()], DEADLINE)
        .await;
    assert_eq!(counts(&replayed.received())["e3"], 2, "replayed once only");
}

/// `ferry replay --to-offset earliest` on a standalone's trigger: it gets
/// every event again, its neighbour nothing; asked again, it replays again.
#[tokio::test]
async fn ferry_replay_moves_a_standalone_trigger_to_the_beginning() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let (replayed, bystander) = (Subscriber::accepting().await, Subscriber::accepting().await);
    write_resource(
        dir.path(),
        "triggers.yaml",
        &[
            broker(&ns),
            trigger(&ns, "replayed", "", &replayed.url(), ""),
            trigger(&ns, "bystander", "", &bystander.url(), ""),
        ]
        .join("---\n"),
    );
    let ferry = standalone(dir.path(), state.path()).await;
    ferry.wait_for_status("Trigger", "replayed", "True").await;
    ferry.wait_for_status("Trigger", "bystander", "True").await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    let sent: Vec<String> = (0..3).map(|i| format!("e{i}")).collect();
    for id in &sent {
        post_event(&client, &url, id, "dev.example.t", "/tests").await;
    }
    replayed.wait_for_ids(&sent, DEADLINE).await;
    bystander.wait_for_ids(&sent, DEADLINE).await;

    let object = format!("{ns}/replayed");
    let state_dir = state.path().to_str().unwrap();
    let replay = || {
        ferry_harness::process::ferry_output(
            FERRY,
            &[
                "replay",
                "trigger",
                &object,
                "--to-offset",
                "earliest",
                "--state-dir",
                state_dir,
            ],
            &[],
        )
    };
    replay();
    replayed.wait_for(6, DEADLINE).await;
    replay();
    replayed.wait_for(9, DEADLINE).await;
    post_event(&client, &url, "next", "dev.example.t", "/tests").await;
    replayed.wait_for_ids(&["next".into()], DEADLINE).await;
    bystander.wait_for_ids(&["next".into()], DEADLINE).await;
    assert!(counts(&replayed.received())
        .iter()
        .all(|(id, n)| *n == if id == "next" { 1 } else { 3 }));
    assert_eq!(
        bystander.received().len(),
        4,
        "{:?}",
        ids(&bystander.received())
    );

    let refused = std::process::Command::new(FERRY)
        .args([
            "replay",
            "broker",
            &format!("{ns}/b"),
            "--to-offset",
            "earliest",
            "--state-dir",
            state_dir,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be replayed"));
    let refused = std::process::Command::new(FERRY)
        .args([
            "replay",
            "trigger",
            &object,
            "--to-time",
            "yesterday",
            "--state-dir",
            state_dir,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an RFC 3339 time"));
}
