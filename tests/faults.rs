//! Fault injection: Ferry's receiver and dispatcher run as separate OS
//! processes and are killed while `ferry bench`'s load generator and sink
//! count every event. An event that got a 202 must reach the sink, whatever
//! was killed.

use std::time::{Duration, Instant};

use ferry_bench::{
    event::RunId,
    load::{self, Load, Sent},
    report::Report,
    sink::{Behaviour, SinkHandle},
};
use ferry_common::shutdown::Shutdown;
use ferry_harness::{
    bootstrap, broker, eventually, free_port,
    http::{self, client},
    kafka::{create_topic, group_offsets, high_watermarks, topic_exists},
    process::{write_resource, FerryProcess},
    trigger, unique, wait_ready, ContractFile, Tansu,
};
use ferry_proto::Contract;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Deliveries one trigger has in flight at most (`--max-in-flight`).
const WINDOW: u64 = 20;

/// The receiver's default.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(5);

/// One broker with one trigger to a bench sink; the receiver as a process.
struct Plane {
    bootstrap: String,
    topic: String,
    partitions: i32,
    /// The trigger's consumer group.
    group: String,
    contract: ContractFile,
    sink: SinkHandle,
    port: u16,
    produce_timeout: Duration,
    receiver: Option<FerryProcess>,
}

impl Plane {
    async fn start(bootstrap: &str, partitions: i32, produce_timeout: Duration) -> Plane {
        let topic = unique("knative-broker-ns-faults");
        create_topic(bootstrap, &topic, partitions).await;
        let sink = SinkHandle::start(
            "127.0.0.1:0".parse().unwrap(),
            RunId::fresh(),
            Behaviour {
                delay: Duration::from_millis(2),
            },
        )
        .await
        .unwrap();
        let mut b = broker("ns", "faults", &topic, "");
        let t = trigger("ns", "t", &sink.url("t"));
        let group = t.consumer_group.clone();
        b.egresses = vec![t];
        let contract = ContractFile::new(&Contract {
            generation: 1,
            resources: vec![b],
            ..Default::default()
        });
        let mut plane = Plane {
            bootstrap: bootstrap.to_owned(),
            topic,
            partitions,
            group,
            contract,
            sink,
            port: free_port(),
            produce_timeout,
            receiver: None,
        };
        plane.start_receiver().await;
        plane
    }

    async fn start_receiver(&mut self) {
        self.receiver = Some(FerryProcess::receiver(
            FERRY,
            &self.contract.path(),
            &self.bootstrap,
            self.port,
            self.produce_timeout,
        ));
        wait_ready(&format!("http://127.0.0.1:{}/readyz", self.port)).await;
    }

    /// A dispatcher process, its admin server on `admin`.
    fn dispatcher(&self, admin: u16) -> FerryProcess {
        let window = WINDOW.to_string();
        FerryProcess::dispatcher_with(
            FERRY,
            &self.contract.path(),
            &self.bootstrap,
            admin,
            &["--max-in-flight", &window],
        )
    }

    /// The first dispatcher: a new trigger starts at the end of its topic,
    /// so the stream may start only once it has.
    async fn first_dispatcher(&self) -> (FerryProcess, u16) {
        let admin = free_port();
        let dispatcher = self.dispatcher(admin);
        wait_ready(&format!("http://127.0.0.1:{admin}/readyz")).await;
        (dispatcher, admin)
    }

    fn stream(&self, rate: f64) -> Stream {
        let load = Load {
            url: format!("http://127.0.0.1:{}/ns/faults", self.port)
                .parse()
                .unwrap(),
            connections: 8,
            rate: Some(rate),
            count: u64::MAX,
            duration: Duration::from_secs(300),
            size: 256,
            tls: None,
            bearer: None,
            keys: None,
        };
        let stop = Shutdown::new();
        let run = self.sink.run();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { load::run_until(&load, run, stop).await }
        });
        Stream { stop, task }
    }

    /// The trigger's committed positions, per partition.
    async fn committed(&self) -> Vec<i64> {
        let committed =
            group_offsets(&self.bootstrap, &self.group, &self.topic, self.partitions).await;
        committed.into_iter().map(|c| c.unwrap_or(0)).collect()
    }

    /// Distinct events the sink received.
    fn delivered(&self) -> u64 {
        let received = self.sink.received();
        received.paths.values().map(|p| p.distinct()).sum()
    }

    /// Waits until `more` events arrived at the sink beyond what it has now.
    async fn deliveries(&self, more: u64, what: &str) {
        let until = self.sink.arrivals() + more;
        eventually(what, Duration::from_secs(60), || async {
            (self.sink.arrivals() >= until).then_some(())
        })
        .await;
    }

    /// Stops the stream and waits until every accepted event arrived (or
    /// the deadline passed); the counts of the whole run.
    async fn finish(&self, stream: Stream) -> Report {
        let sent = stream.finish().await;
        let deadline = Instant::now() + Duration::from_secs(90);
        self.sink
            .wait_for(&sent.accepted, 1, deadline, Duration::from_secs(90))
            .await;
        let report = Report::new(&sent, &self.sink.received(), 1);
        eprintln!("{report}");
        report
    }
}

/// The load generator, streaming at a fixed rate until told to stop.
struct Stream {
    stop: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<Sent>>,
}

impl Stream {
    async fn finish(self) -> Sent {
        self.stop.cancel();
        self.task.await.unwrap().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_killed_five_times_loses_nothing() {
    let plane = Plane::start(&bootstrap(), 3, PRODUCE_TIMEOUT).await;
    let (mut dispatcher, _) = plane.first_dispatcher().await;
    let stream = plane.stream(200.0);
    const KILLS: u64 = 5;
    let start: i64 = plane.committed().await.iter().sum();
    let mut exposed = 0;
    for kill in 1..=KILLS {
        plane.deliveries(100, "deliveries before the kill").await;
        dispatcher.kill();
        // Nothing commits between the kill and the next start. Every event
        // below the committed positions was delivered, so the rest of those
        // delivered lie past them: what the next dispatcher delivers again,
        // with the window in flight at the kill (its requests may reach the
        // sink after this count).
        let now = plane.committed().await;
        let below = (now.iter().sum::<i64>() - start) as u64;
        let past = plane.delivered().saturating_sub(below);
        exposed += past + WINDOW;
        eprintln!(
            "kill {kill}: {} arrivals, {past} delivered past the committed positions {now:?}",
            plane.sink.arrivals()
        );
        dispatcher = plane.dispatcher(0);
    }
    plane
        .deliveries(100, "deliveries after the last restart")
        .await;
    let report = plane.finish(stream).await;
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.errors, 0, "{report}");
    // A kill redelivers only what was delivered past the committed
    // positions: what finished since the last completed commit, and what was
    // in flight. How much finished meanwhile depends on how fast commits
    // reach Kafka on a loaded machine, so it is measured at each kill, not
    // assumed.
    assert!(
        report.duplicates <= exposed,
        "{} duplicates after {KILLS} kills, but only {exposed} were delivered past the committed positions or in flight",
        report.duplicates
    );
    drop(dispatcher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_receiver_never_gave_a_false_202() {
    let mut plane = Plane::start(&bootstrap(), 3, PRODUCE_TIMEOUT).await;
    let _dispatcher = plane.first_dispatcher().await;
    let stream = plane.stream(300.0);
    for _ in 0..3 {
        plane.deliveries(150, "deliveries before the kill").await;
        plane.receiver.take().unwrap().kill();
        plane.start_receiver().await;
    }
    plane
        .deliveries(150, "deliveries after the last restart")
        .await;
    let report = plane.finish(stream).await;
    // Requests in flight at a kill and those sent while nothing listened
    // failed; every one that got a 202 was written.
    assert!(report.errors > 0, "the kills were not felt: {report}");
    assert_eq!(report.lost, 0, "{report}");
}

// One of two dispatchers goes away; the other takes over its partitions.
// It stops with SIGTERM here (it leaves the group): after a SIGKILL, Tansu
// 0.6's coordinator drops the dead member on the survivor's heartbeat but
// keeps the old generation and its assignment, so the survivor rejoins
// into the same two partitions and the dead one's are read by nobody
// (README, "Known limits of the test broker"). Kafka and Redpanda expire the
// member and rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dispatcher_takes_over_the_partitions_of_a_stopped_one() {
    let plane = Plane::start(&bootstrap(), 4, PRODUCE_TIMEOUT).await;
    let (a, a_port) = plane.first_dispatcher().await;
    let b_port = free_port();
    let _b = plane.dispatcher(b_port);
    let stream = plane.stream(200.0);
    // Both deliver: the group split the partitions between them.
    for port in [a_port, b_port] {
        eventually(
            "both dispatchers deliver",
            Duration::from_secs(60),
            || async move { (delivered(port).await > 0.0).then_some(()) },
        )
        .await;
    }
    let status = a.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    plane.deliveries(400, "deliveries after the stop").await;
    let report = plane.finish(stream).await;
    // Events on the stopped one's partitions arrive only if the other took
    // them over.
    assert_eq!(report.lost, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_paused_gives_503s_and_the_dispatcher_resumes_by_itself() {
    let tansu = Tansu::start();
    let plane = Plane::start(&tansu.bootstrap(), 2, Duration::from_secs(1)).await;
    let _dispatcher = plane.first_dispatcher().await;
    let stream = plane.stream(100.0);
    plane.deliveries(100, "deliveries before the pause").await;

    tansu.pause();
    let ingress = format!("http://127.0.0.1:{}/ns/faults", plane.port);
    // Three probes in a row (the receiver's produce timeout is 1 s): the
    // stream's requests sent before the last one have met the timeout too.
    // The pause stays within the dispatcher's session timeout (6 s): after
    // a longer one Tansu 0.6 keeps the expired member as the group's leader
    // and the group never forms again (Kafka expires it).
    for _ in 0..3 {
        eventually(
            "a 503 while Kafka is paused",
            Duration::from_secs(30),
            || probe(&ingress, 503),
        )
        .await;
    }
    tansu.unpause();
    eventually("a 202 once Kafka is back", Duration::from_secs(60), || {
        probe(&ingress, 202)
    })
    .await;
    plane.deliveries(100, "deliveries after the pause").await;
    let report = plane.finish(stream).await;
    assert!(
        report.rejected.get(&503).copied().unwrap_or(0) > 0,
        "the stream saw no 503: {report}"
    );
    assert_eq!(report.lost, 0, "{report}");
}

/// Posts one event; `Some` when the answer has this status.
async fn probe(url: &str, status: u16) -> Option<()> {
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "probe"),
        ("ce-source", "/faults"),
        ("ce-type", "probe"),
    ];
    let answer = http::try_request(&client(), ::http::Method::POST, url, &headers, "").await;
    answer
        .ok()
        .filter(|a| a.status.as_u16() == status)
        .map(|_| ())
}

/// Events a dispatcher process delivered, from its `/metrics`.
async fn delivered(admin: u16) -> f64 {
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let Ok(answer) = http::try_request(&client(), ::http::Method::GET, &url, &[], "").await else {
        return 0.0; // not listening yet
    };
    answer
        .body
        .lines()
        .filter(|l| {
            l.starts_with("ferry_dispatch_events_total{") && l.contains("outcome=\"delivered\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The contract the controller wrote, if it is there yet.
fn contract(path: &std::path::Path) -> Option<Contract> {
    ferry_common::contract::read(path).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_keeps_topics_groups_and_the_generation() {
    let bootstrap = bootstrap();
    let (resources, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let contract_path = state.path().join("contract.json");
    let ns = unique("restart");
    let yaml = |kind: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n{spec}"
        )
    };
    let trigger_spec = "spec:\n  broker: b\n  subscriber:\n    uri: http://127.0.0.1:9/\n";
    write_resource(resources.path(), "b.yaml", &yaml("Broker", "b", ""));
    write_resource(
        resources.path(),
        "t1.yaml",
        &yaml("Trigger", "t1", trigger_spec),
    );
    let controller = || {
        FerryProcess::spawn(
            FERRY,
            &[
                "controller",
                "--admin",
                "127.0.0.1:0",
                "--resources",
                resources.path().to_str().unwrap(),
                "--contract",
                contract_path.to_str().unwrap(),
                "--bootstrap-servers",
                &bootstrap,
                "--default-replication-factor",
                "1",
                "--default-partitions",
                "2",
                "--resync-ms",
                "200",
            ],
            &[],
        )
    };
    let first = controller();
    let before = eventually("the first contract", Duration::from_secs(60), || async {
        contract(&contract_path)
            .filter(|c| c.resources.first().is_some_and(|b| b.egresses.len() == 1))
    })
    .await;
    let topic = before.resources[0].topics[0].clone();
    let group = before.resources[0].egresses[0].consumer_group.clone();
    assert!(topic_exists(&bootstrap, &topic));

    // State the restart must not lose: a record in the topic (a recreated
    // topic is empty) and the trigger's committed position.
    ferry_harness::kafka::produce_raw(&bootstrap, &topic, 0, "kept").await;
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let offsets = ferry_common::group_offsets::GroupOffsets::new(&config).unwrap();
    offsets.alter(&group, &topic, &[(0, 1)]).await.unwrap();

    first.kill();
    let _second = controller();
    write_resource(
        resources.path(),
        "t2.yaml",
        &yaml("Trigger", "t2", trigger_spec),
    );
    let after = eventually("the contract with t2", Duration::from_secs(60), || async {
        let now = contract(&contract_path)?;
        assert!(
            now.generation >= before.generation,
            "generation went back from {} to {}",
            before.generation,
            now.generation
        );
        now.resources
            .first()
            .is_some_and(|b| b.egresses.len() == 2)
            .then_some(now)
    })
    .await;
    assert!(after.generation > before.generation);
    let b = &after.resources[0];
    assert_eq!(b.uid, before.resources[0].uid, "the same broker");
    assert_eq!(b.topics, before.resources[0].topics);
    let t1 = b
        .egresses
        .iter()
        .find(|e| e.consumer_group == group)
        .expect("t1 kept");
    assert_eq!(
        t1.uid, before.resources[0].egresses[0].uid,
        "t1 not recreated"
    );
    assert_eq!(
        high_watermarks(&bootstrap, &topic, 2).await[0],
        1,
        "the topic kept its record"
    );
    assert_eq!(
        group_offsets(&bootstrap, &group, &topic, 2).await[0],
        Some(1),
        "t1's group kept its position"
    );
}
