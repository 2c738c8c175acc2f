//! Sources in `ferry standalone`, on the real broker: a PingSource with a
//! seconds schedule delivers through a broker and a trigger to a sink with
//! Knative's attributes and the overrides; bad specs are reported naming
//! the field; an edit changes the data at the next tick; deletion stops
//! the ticks.

use std::time::Duration;

use ferry_harness::{
    bootstrap, eventually,
    process::{write_resource, Standalone},
    subscriber::{Received, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

fn ping_yaml(ns: &str, name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  \
         schedule: \"{schedule}\"\n{extra}  sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: b\n"
    )
}

fn from(received: &[Received], source: &str) -> Vec<Received> {
    received
        .iter()
        .filter(|r| r.header("ce-source") == Some(source))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_ping_source_ticks_into_a_broker_follows_edits_and_stops_when_deleted() {
    let Setup {
        dir,
        state,
        ns,
        sink,
    } = setup(Some("dev.knative.sources.ping")).await;
    let data = "  contentType: application/json\n  data: '{\"message\": \"hello\"}'\n  ceOverrides:\n    extensions:\n      team: ferry\n";
    write_resource(
        dir.path(),
        "ping.yaml",
        &ping_yaml(&ns, "every-second", "* * * * * *", data),
    );
    write_resource(
        dir.path(),
        "unreachable.yaml",
        &format!(
            "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: unreachable\n  namespace: {ns}\nspec:\n  \
             schedule: \"* * * * * *\"\n  sink:\n    uri: http://127.0.0.1:1/\n"
        ),
    );
    write_resource(
        dir.path(),
        "bad-schedule.yaml",
        &ping_yaml(&ns, "bad-schedule", "@every 1s", ""),
    );
    write_resource(
        dir.path(),
        "bad-zone.yaml",
        &ping_yaml(&ns, "bad-zone", "* * * * *", "  timezone: Mars/Olympus\n"),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;

    let status = ferry
        .wait_for_status("PingSource", "every-second", "True")
        .await;
    let source = format!("/apis/v1/namespaces/{ns}/pingsources/every-second");
    assert_eq!(
        status["sinkUri"],
        format!("{}/{ns}/b", ferry.ingress),
        "{status}"
    );
    assert_eq!(
        status["ceAttributes"],
        serde_json::json!([{"type": "dev.knative.sources.ping", "source": source}]),
        "{status}"
    );
    assert_eq!(status["conditions"][0]["type"], "SinkProvided", "{status}");
    // Not Ready, naming the field.
    for (name, field, says) in [
        ("bad-schedule", "spec.schedule: ", "@every"),
        ("bad-zone", "spec.timezone: ", "Mars/Olympus"),
    ] {
        let bad = ferry.wait_for_status("PingSource", name, "False").await;
        let message = bad["message"].as_str().unwrap();
        assert!(
            message.starts_with(field) && message.contains(says),
            "{bad}"
        );
    }
    ferry.ready().await;

    // Ticks arrive through the broker, with Knative's attributes.
    let got = eventually("two ticks", WAIT, || {
        let got = from(&sink.received(), &source);
        async move { (got.len() >= 2).then_some(got) }
    })
    .await;
    for tick in &got {
        assert_eq!(tick.header("ce-type"), Some("dev.knative.sources.ping"));
        assert_eq!(tick.header("ce-specversion"), Some("1.0"));
        assert_eq!(tick.header("ce-team"), Some("ferry"));
        assert_eq!(tick.header("content-type"), Some("application/json"));
        let time = tick.header("ce-time").unwrap();
        let time = chrono::DateTime::parse_from_rfc3339(time).expect("an RFC 3339 time");
        assert_eq!(
            time.timestamp_subsec_nanos(),
            0,
            "the tick's time, on the second"
        );
        assert_eq!(tick.body.as_ref(), br#"{"message": "hello"}"#);
    }
    let mut ids: Vec<&str> = got.iter().map(|r| r.id()).collect();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "each tick has an id of its own");
    let mut times: Vec<&str> = got.iter().map(|r| r.header("ce-time").unwrap()).collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), got.len(), "no tick fired twice");

    // Counted by outcome: the ticks sent, and those of a source whose sink
    // does not answer, after their retries.
    eventually("ticks counted as sent and as failed", WAIT, || {
        let (admin, ns) = (ferry.admin.clone(), ns.clone());
        async move {
            let metrics = ferry_harness::metrics::Scrape::get(&admin).await;
            let count = |name: &str, outcome: &str| {
                let labels = [
                    ("kind", "PingSource"),
                    ("namespace", ns.as_str()),
                    ("name", name),
                    ("outcome", outcome),
                ];
                metrics.sum("ferry_source_events_total", &labels)
            };
            (count("every-second", "sent") >= 2.0 && count("unreachable", "failed") >= 1.0)
                .then_some(())
        }
    })
    .await;

    // An edit changes the data from the next tick on.
    let edited = "  contentType: text/plain\n  data: edited\n";
    write_resource(
        dir.path(),
        "ping.yaml",
        &ping_yaml(&ns, "every-second", "* * * * * *", edited),
    );
    eventually("an edited tick", WAIT, || {
        let got = from(&sink.received(), &source);
        async move {
            got.iter()
                .any(|r| r.body.as_ref() == b"edited")
                .then_some(())
        }
    })
    .await;

    // Deleted: no tick after the deletion shows in /resources. A second
    // source's two ticks mark time passing on the same scheduler.
    std::fs::remove_file(dir.path().join("ping.yaml")).unwrap();
    eventually("the PingSource gone from /resources", WAIT, || {
        let ferry = &ferry;
        async move {
            (!ferry
                .resources()
                .await
                .iter()
                .any(|r| r["kind"] == "PingSource" && r["name"] == "every-second"))
            .then_some(())
        }
    })
    .await;
    let gone_at = chrono::Utc::now();
    write_resource(
        dir.path(),
        "marker.yaml",
        &ping_yaml(&ns, "marker", "* * * * * *", ""),
    );
    let marker = format!("/apis/v1/namespaces/{ns}/pingsources/marker");
    eventually("two ticks of the marker", WAIT, || {
        let got = from(&sink.received(), &marker);
        async move { (got.len() >= 2).then_some(()) }
    })
    .await;
    let late: Vec<String> = from(&sink.received(), &source)
        .iter()
        .filter_map(|r| r.header("ce-time").map(str::to_owned))
        .filter(|t| {
            chrono::DateTime::parse_from_rfc3339(t).unwrap()
                > gone_at + chrono::Duration::seconds(1)
        })
        .collect();
    assert!(late.is_empty(), "ticks after the deletion: {late:?}");
}

/// A standalone killed and started again fires each tick at most once:
/// every tick time has one event id (a redelivery after the kill repeats
/// an id, never a tick), and ticks go on after the restart.
#[tokio::test]
async fn a_restarted_standalone_fires_no_tick_twice() {
    let Setup {
        dir,
        state,
        ns,
        sink,
    } = setup(None).await;
    write_resource(
        dir.path(),
        "ping.yaml",
        &ping_yaml(&ns, "p", "* * * * * *", ""),
    );
    let source = format!("/apis/v1/namespaces/{ns}/pingsources/p");
    let ticks = |n: usize| {
        let (sink, source) = (&sink, &source);
        eventually("ticks", WAIT, move || {
            let got = from(&sink.received(), source);
            async move { (got.len() >= n).then_some(()) }
        })
    };

    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ticks(2).await;
    drop(ferry); // killed
    let before = from(&sink.received(), &source).len();
    let _ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    ticks(before + 2).await;

    let mut ids_by_time: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for tick in from(&sink.received(), &source) {
        ids_by_time
            .entry(tick.header("ce-time").unwrap().to_owned())
            .or_default()
            .insert(tick.id().to_owned());
    }
    let twice: Vec<_> = ids_by_time
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(twice.is_empty(), "ticks fired twice: {twice:?}");
}

/// A folder of resources and a state folder for a standalone, a fresh
/// namespace, and broker `b` with trigger `all` to a fresh sink, for
/// events of type `only` or all.
struct Setup {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    ns: String,
    sink: Subscriber,
}

async fn setup(only: Option<&str>) -> Setup {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let sink = Subscriber::accepting().await;
    broker_and_trigger(dir.path(), &ns, &sink, only);
    Setup {
        dir,
        state,
        ns,
        sink,
    }
}

fn broker_and_trigger(dir: &std::path::Path, ns: &str, sink: &Subscriber, only: Option<&str>) {
    let filter = only.map_or(String::new(), |ty| {
        format!("  filter:\n    attributes:\n      type: {ty}\n")
    });
    write_resource(
        dir,
        "broker.yaml",
        &format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: {ns}\n"),
    );
    write_resource(
        dir,
        "trigger.yaml",
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: all\n  namespace: {ns}\nspec:\n  broker: b\n\
             {filter}  subscriber:\n    uri: {}\n",
            sink.url()
        ),
    );
}

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A ContainerSource in standalone runs its command with `K_SINK`: here
/// `ferry send "$K_SINK"`, through the broker to the trigger's sink. Killed,
/// it is started again; deleted, it stops.
#[tokio::test]
async fn a_container_source_runs_its_command_is_restarted_and_stops_when_deleted() {
    let work = tempfile::tempdir().unwrap();
    let Setup {
        dir,
        state,
        ns,
        sink,
    } = setup(None).await;
    let pid_file = work.path().join("pid");
    let script = format!(
        "echo $$$$ > {pid}; {FERRY} send \"$K_SINK\" --type dev.ferry.container --source /container --id run-$$$$ \
         --extension team=\"$TEAM\"; sleep 3600",
        pid = pid_file.display()
    );
    let yaml = format!(
        "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata:\n  name: c\n  namespace: {ns}\nspec:\n  \
         template:\n    spec:\n      containers:\n        - name: sender\n          image: example.com/sender:1\n          \
         command: [sh, -c]\n          args: ['{script}']\n          env:\n            - name: TEAM\n              value: ferry\n  \
         sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: b\n"
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    // Once the trigger reads (it starts at the end of the topic), the
    // source: its one event is sent at once.
    ferry.ready().await;
    write_resource(dir.path(), "container.yaml", &yaml);

    let status = ferry.wait_for_status("ContainerSource", "c", "True").await;
    assert_eq!(
        status["sinkUri"],
        format!("{}/{ns}/b", ferry.ingress),
        "{status}"
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("'example.com/sender:1' is not used"),
        "{status}"
    );
    let first = eventually("the command's event", WAIT, || {
        let got = from(&sink.received(), "/container");
        async move { got.first().cloned() }
    })
    .await;
    assert_eq!(first.header("ce-team"), Some("ferry"), "the template's env");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(first.id(), format!("run-{pid}"));

    // Killed (with what it started): started again, with a new process.
    std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    let again = eventually("the restarted command's event", WAIT, || {
        let (got, old) = (from(&sink.received(), "/container"), format!("run-{pid}"));
        async move { got.into_iter().find(|r| r.id() != old) }
    })
    .await;
    let new_pid = again.id().strip_prefix("run-").unwrap().to_owned();
    assert!(alive(&new_pid));

    // Deleted: the process goes.
    std::fs::remove_file(dir.path().join("container.yaml")).unwrap();
    eventually("the process stopped", WAIT, || {
        let gone = !alive(&new_pid);
        async move { gone.then_some(()) }
    })
    .await;
}

/// `ferry run --binding` runs a command with the binding's `K_SINK`,
/// `K_CE_OVERRIDES` and `K_CA_CERTS`; an unknown binding is an error.
#[tokio::test]
async fn ferry_run_passes_a_sink_bindings_environment() {
    let Setup { dir, state, ns, .. } = setup(None).await;
    let pem = ferry_harness::certs::self_signed("ingress.test");
    let binding = serde_json::json!({"apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding",
        "metadata": {"name": "bind", "namespace": ns},
        "spec": {"subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                 "ceOverrides": {"extensions": {"team": "ferry"}},
                 "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"},
                          "CACerts": pem}}});
    // JSON is YAML.
    write_resource(dir.path(), "binding.yaml", &binding.to_string());
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let status = ferry.wait_for_status("SinkBinding", "bind", "True").await;
    assert_eq!(
        status["sinkUri"],
        format!("{}/{ns}/b", ferry.ingress),
        "{status}"
    );

    let run = |binding: String| {
        std::process::Command::new(FERRY)
            .args(["run", "--binding", &binding, "--admin", &ferry.admin, "--"])
            .args([
                "sh",
                "-c",
                "printf '%s|%s|%s' \"$K_SINK\" \"$K_CE_OVERRIDES\" \"$K_CA_CERTS\"",
            ])
            .output()
            .unwrap()
    };
    let out = run(format!("{ns}/bind"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{}/{ns}/b|{{\"extensions\":{{\"team\":\"ferry\"}}}}|{pem}",
            ferry.ingress
        )
    );
    let missing = run(format!("{ns}/nope"));
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("there is no SinkBinding"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
