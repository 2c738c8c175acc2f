//! The benchmark scenarios of BENCHMARKS.md, run against separate Ferry
//! processes (controller, receiver, dispatcher) and the baselines, on one
//! Kafka cluster, printing a table per scenario.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use ferry_common::{contract, shutdown::Shutdown};
use fixedbitset::FixedBitSet;
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::process::{Child, Command};

use crate::{
    baseline,
    event::RunId,
    load::{self, Load, Sent},
    procstat::{self, Footprint},
    report::{Percentiles, Report},
    sink::{new_histogram, Behaviour, SinkHandle},
};

#[derive(Clone, Debug)]
pub struct Options {
    /// The `ferry` binary the data plane runs from.
    pub ferry: PathBuf,
    pub bootstrap: String,
    /// Logs, resources and the contract go here.
    pub work_dir: PathBuf,
    pub scenarios: Vec<u8>,
    /// How long each measurement sends.
    pub duration: Duration,
    /// Load-generator connections.
    pub connections: usize,
    pub partitions: usize,
    /// Trigger counts of the fan-out scenario.
    pub fanout: Vec<usize>,
    /// Events in the dispatch scenario's backlog.
    pub backlog: u64,
    /// Length of the soak (scenario 6), in minutes.
    pub soak_minutes: u64,
}

const NAMESPACE: &str = "bench";
const SIZE: usize = 1024;
const READY_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(options: Options) -> anyhow::Result<String> {
    std::fs::create_dir_all(options.work_dir.join("resources"))?;
    let kafka_port: u16 = options
        .bootstrap
        .split(',')
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .context("KAFKA_BOOTSTRAP_SERVERS must be host:port")?;
    let mut bench = Bench {
        ingress: free_addr()?,
        controller: None,
        kafka_port,
        options,
        out: String::new(),
    };
    bench.controller = Some(bench.spawn("controller", &bench.controller_args(), None)?);
    for scenario in bench.options.scenarios.clone() {
        match scenario {
            1 => bench.ingress().await?,
            2 => bench.end_to_end().await?,
            3 => bench.dispatch().await?,
            4 => bench.fanout().await?,
            5 => bench.ordering().await?,
            6 => bench.soak().await?,
            other => bail!("there is no scenario {other}"),
        }
    }
    Ok(bench.out)
}

struct Bench {
    options: Options,
    /// The receiver's address (the same every scenario: brokers' addresses
    /// in the contract name it).
    ingress: SocketAddr,
    kafka_port: u16,
    controller: Option<Process>,
    out: String,
}

/// A child process: `stop` ends it with SIGTERM; one left behind by an
/// error is killed when dropped.
struct Process {
    child: Child,
    /// Where /readyz is served (receiver, dispatcher).
    admin: Option<SocketAddr>,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let admin = self.admin.context("this process serves no /readyz")?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let url: http::Uri = format!("http://{admin}/readyz").parse()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(response) = client.get(url.clone()).await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{admin} not ready after {timeout:?}")
    }

    /// SIGTERM, then wait for the exit (deliveries drain, offsets commit).
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.wait().await;
    }
}

/// Samples a process's footprint while a measurement runs; keeps the peak.
struct Sampler {
    peak: Arc<Mutex<Footprint>>,
    task: tokio::task::JoinHandle<()>,
    pid: u32,
    cpu_at_start: f64,
}

impl Sampler {
    fn start(pid: u32, kafka_port: u16) -> Self {
        let cpu_at_start = procstat::cpu_seconds(pid);
        let peak = Arc::new(Mutex::new(Footprint::default()));
        let task = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    let now = procstat::footprint(pid, kafka_port);
                    {
                        let mut peak = peak.lock().expect("peak lock");
                        peak.rss_mib = peak.rss_mib.max(now.rss_mib);
                        peak.threads = peak.threads.max(now.threads);
                        peak.connections = peak.connections.max(now.connections);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Sampler {
            peak,
            task,
            pid,
            cpu_at_start,
        }
    }

    /// The peaks, and the CPU time used while sampling.
    fn finish(self) -> Footprint {
        self.task.abort();
        let mut footprint = *self.peak.lock().expect("peak lock");
        footprint.cpu_seconds = procstat::cpu_seconds(self.pid) - self.cpu_at_start;
        footprint
    }
}

impl Bench {
    fn controller_args(&self) -> Vec<String> {
        let dir = &self.options.work_dir;
        vec![
            "controller".into(),
            "--resources".into(),
            dir.join("resources").display().to_string(),
            "--contract".into(),
            self.contract().display().to_string(),
            "--ingress-url".into(),
            format!("http://{}", self.ingress),
            "--default-replication-factor".into(),
            "1".into(),
            "--default-partitions".into(),
            self.options.partitions.to_string(),
            "--resync-ms".into(),
            "1000".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
        ]
    }

    fn contract(&self) -> PathBuf {
        self.options.work_dir.join("contract.json")
    }

    /// Starts `ferry ARGS`, logging to `<name>.log` in the work folder
    /// (appended to, so a restarted process's log follows its
    /// predecessor's).
    fn spawn(
        &self,
        name: &str,
        args: &[String],
        admin: Option<SocketAddr>,
    ) -> anyhow::Result<Process> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.options.work_dir.join(format!("{name}.log")))?;
        let mut command = Command::new(&self.options.ferry);
        command.args(args);
        if let Some(admin) = admin {
            command.arg("--admin").arg(admin.to_string());
        }
        let child = command
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.options.bootstrap)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.options.ferry.display()))?;
        Ok(Process { child, admin })
    }

    fn receiver(&self) -> anyhow::Result<Process> {
        let contract = self.contract().display().to_string();
        let listen = self.ingress.to_string();
        self.spawn(
            "receiver",
            &[
                "receiver".into(),
                "--contract".into(),
                contract,
                "--listen".into(),
                listen,
            ],
            Some(free_addr()?),
        )
    }

    fn dispatcher(&self) -> anyhow::Result<Process> {
        let contract = self.contract().display().to_string();
        self.spawn(
            "dispatcher",
            &["dispatcher".into(), "--contract".into(), contract],
            Some(free_addr()?),
        )
    }

    /// Replaces the resources with a broker and `triggers` triggers to
    /// `sink` (paths /t0, /t1, ...), and waits for the contract to have them.
    async fn apply(
        &self,
        broker: &str,
        triggers: usize,
        ordered: bool,
        sink: &SinkHandle,
    ) -> anyhow::Result<()> {
        let mut yaml = format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  namespace: {NAMESPACE}\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\n"
        );
        let order = if ordered { "ordered" } else { "unordered" };
        for t in 0..triggers {
            let _ = write!(
                yaml,
                "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {broker}-t{t}\n  namespace: {NAMESPACE}\n  annotations:\n    kafka.eventing.knative.dev/delivery.order: {order}\nspec:\n  broker: {broker}\n  subscriber:\n    uri: {}\n",
                sink.url(&format!("t{t}"))
            );
        }
        let dir = self.options.work_dir.join("resources");
        let staged = self.options.work_dir.join("bench.yaml.new");
        std::fs::write(&staged, yaml)?;
        std::fs::rename(&staged, dir.join("bench.yaml"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let path = format!("/{NAMESPACE}/{broker}");
            let published = contract::read(&self.contract()).is_ok_and(|c| {
                c.resources.iter().any(|r| {
                    r.ingress.as_ref().is_some_and(|i| i.path == path)
                        && r.egresses.len() == triggers
                })
            });
            if published {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the controller did not publish {broker} with {triggers} triggers (see {})",
                    self.options.work_dir.join("controller.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends single events until one arrives, so measurements start in the
    /// steady state (the dispatcher's groups have joined, connections are
    /// open). Warm-up events belong to another run: the sink ignores them.
    async fn warm_up(&self, broker: &str, sink: &SinkHandle) -> anyhow::Result<()> {
        let sink_run = sink.run();
        let warm_up = loop {
            let run = RunId::fresh();
            if run != sink_run {
                break run;
            }
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut load = self.load(self.broker_url(broker), None);
        load.count = 1;
        load.connections = 1;
        while sink.foreign() == 0 {
            if Instant::now() >= deadline {
                bail!("no event reached the sink through {broker}");
            }
            load::run(&load, warm_up).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sink.reset();
        Ok(())
    }

    fn broker_url(&self, broker: &str) -> http::Uri {
        format!("http://{}/{NAMESPACE}/{broker}", self.ingress)
            .parse()
            .expect("valid url")
    }

    fn topic(broker: &str) -> String {
        format!("knative-broker-{NAMESPACE}-{broker}")
    }

    fn load(&self, url: http::Uri, rate: Option<f64>) -> Load {
        Load {
            url,
            connections: self.options.connections,
            rate,
            count: u64::MAX,
            duration: self.options.duration,
            size: SIZE,
        }
    }

    fn section(&mut self, title: &str, header: &[&str]) {
        let _ = writeln!(self.out, "\n### {title}\n");
        let _ = writeln!(self.out, "| {} |", header.join(" | "));
        let _ = writeln!(self.out, "|{}", "---|".repeat(header.len()));
        eprintln!("bench: {title}");
    }

    fn row(&mut self, cells: &[String]) {
        let line = format!("| {} |", cells.join(" | "));
        eprintln!("bench: {line}");
        let _ = writeln!(self.out, "{line}");
    }

    /// 1. Ingress: the most 1 KiB binary events per second, against a no-op
    ///    HTTP server and a raw producer.
    async fn ingress(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply("ingress", 0, false, &sink).await?;
        let header = [
            "target",
            "events/s",
            "p50 ms",
            "p99 ms",
            "non-202",
            "RSS MiB (peak)",
            "CPU µs/event",
            "ratio",
        ];
        self.section(
            &format!(
                "1. Ingress: 1 KiB binary events, {} connections, as fast as possible",
                self.options.connections
            ),
            &header,
        );

        let noop_addr = free_addr()?;
        let noop = self.spawn(
            "noop",
            &[
                "bench".into(),
                "noop".into(),
                "--listen".into(),
                noop_addr.to_string(),
            ],
            None,
        )?;
        wait_listening(noop_addr).await?;
        let sampler = Sampler::start(noop.pid(), self.kafka_port);
        let ceiling = load::run(
            &self.load(format!("http://{noop_addr}/").parse()?, None),
            run,
        )
        .await?;
        let noop_footprint = sampler.finish();
        noop.stop().await;
        self.ingress_row(
            "no-op hyper server (HTTP ceiling)",
            &ceiling,
            noop_footprint,
            None,
        );

        let receiver = self.receiver()?;
        receiver.ready(READY_TIMEOUT).await?;
        let sampler = Sampler::start(receiver.pid(), self.kafka_port);
        let sent = load::run(&self.load(self.broker_url("ingress"), None), run).await?;
        let footprint = sampler.finish();
        receiver.stop().await;
        let ratio = sent.rate() / ceiling.rate();
        self.ingress_row("ferry receiver (acks=all)", &sent, footprint, Some(ratio));

        let count = (sent.rate() * self.options.duration.as_secs_f64()).max(10_000.0) as u64;
        let raw = baseline::produce(
            &self.options.bootstrap,
            &Self::topic("ingress"),
            run,
            count,
            SIZE,
            self.options.connections,
        )
        .await?;
        self.row(&[
            format!(
                "raw rdkafka producer (acks=all, {} in flight)",
                self.options.connections
            ),
            format!("{raw:.0}"),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            format!("receiver/raw {:.2}", sent.rate() / raw),
        ]);
        Ok(())
    }

    fn ingress_row(&mut self, target: &str, sent: &Sent, footprint: Footprint, ratio: Option<f64>) {
        let latency = Percentiles::of(&sent.latency);
        let non_202 = sent.rejected.values().sum::<u64>() + sent.errors;
        self.row(&[
            target.into(),
            format!("{:.0}", sent.rate()),
            format!("{:.2}", latency.p50),
            format!("{:.2}", latency.p99),
            non_202.to_string(),
            format!("{:.1}", footprint.rss_mib),
            per_event_micros(footprint, sent.accepted_count()),
            ratio.map_or("1.00".into(), |r| format!("{r:.2}")),
        ]);
    }

    /// 2. End to end at 1,000 events/s: broker → one trigger → sink.
    async fn end_to_end(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply("e2e", 1, false, &sink).await?;
        // Before the dispatcher starts: its new group begins after these.
        let floor = Percentiles::of(
            &baseline::kafka_latency(
                &self.options.bootstrap,
                &Self::topic("e2e"),
                1000.0,
                self.options.duration,
            )
            .await?,
        );
        let (receiver, dispatcher) = (self.receiver()?, self.dispatcher()?);
        receiver.ready(READY_TIMEOUT).await?;
        dispatcher.ready(READY_TIMEOUT).await?;
        self.section(
            "2. End to end at 1,000 events/s: broker → one trigger → sink",
            &[
                "path",
                "sent",
                "lost",
                "dup",
                "ingress p99 ms",
                "e2e p50 ms",
                "e2e p90 ms",
                "e2e p99 ms",
                "e2e max ms",
                "receiver MiB",
                "dispatcher MiB",
            ],
        );
        self.row(&[
            "raw producer → raw consumer (Kafka floor)".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            format!("{:.2}", floor.p50),
            format!("{:.2}", floor.p90),
            format!("{:.2}", floor.p99),
            format!("{:.2}", floor.max),
            "".into(),
            "".into(),
        ]);
        self.warm_up("e2e", &sink).await?;
        let receiver_sampler = Sampler::start(receiver.pid(), self.kafka_port);
        let dispatcher_sampler = Sampler::start(dispatcher.pid(), self.kafka_port);
        let sent = load::run(&self.load(self.broker_url("e2e"), Some(1000.0)), run).await?;
        sink.wait_for(
            &sent.accepted,
            1,
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await;
        let (rf, df) = (receiver_sampler.finish(), dispatcher_sampler.finish());
        let report = Report::new(&sent, &sink.received(), 1);
        self.row(&[
            "HTTP → receiver → Kafka → dispatcher → HTTP".into(),
            report.sent.to_string(),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.2}", report.ingress_latency.p99),
            format!("{:.2}", report.end_to_end.p50),
            format!("{:.2}", report.end_to_end.p90),
            format!("{:.2}", report.end_to_end.p99),
            format!("{:.2}", report.end_to_end.max),
            format!("{:.1}", rf.rss_mib),
            format!("{:.1}", df.rss_mib),
        ]);
        receiver.stop().await;
        dispatcher.stop().await;
        Ok(())
    }

    /// Drains a backlog of `events` through `triggers` triggers: the
    /// dispatcher starts once (its groups' positions are pinned), stops,
    /// the backlog is written, and it starts again.
    async fn drain_backlog(
        &mut self,
        broker: &str,
        triggers: usize,
        events: u64,
        sink: &SinkHandle,
        run: RunId,
    ) -> anyhow::Result<(Report, Footprint, Footprint, Duration)> {
        self.apply(broker, triggers, false, sink).await?;
        let started = Instant::now();
        let dispatcher = self.dispatcher()?;
        dispatcher.ready(READY_TIMEOUT).await?;
        let startup = started.elapsed();
        let idle = procstat::footprint(dispatcher.pid(), self.kafka_port);
        dispatcher.stop().await;
        baseline::produce(
            &self.options.bootstrap,
            &Self::topic(broker),
            run,
            events,
            SIZE,
            1000,
        )
        .await?;
        sink.reset();
        let dispatcher = self.dispatcher()?;
        let sampler = Sampler::start(dispatcher.pid(), self.kafka_port);
        let mut accepted = FixedBitSet::with_capacity(events as usize);
        accepted.insert_range(..);
        sink.wait_for(
            &accepted,
            triggers,
            Instant::now() + READY_TIMEOUT,
            Duration::from_secs(30),
        )
        .await;
        let busy = sampler.finish();
        dispatcher.stop().await;
        let sent = Sent {
            sent: events,
            accepted,
            rejected: Default::default(),
            errors: 0,
            latency: new_histogram(),
            elapsed: Duration::ZERO,
        };
        Ok((
            Report::new(&sent, &sink.received(), triggers),
            idle,
            busy,
            startup,
        ))
    }

    /// 3. Dispatch: a backlog delivered to a fast sink, against a raw
    ///    consumer posting the same records.
    async fn dispatch(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        let events = self.options.backlog;
        let (report, _, busy, _) = self
            .drain_backlog("dispatch", 1, events, &sink, run)
            .await?;
        sink.reset();
        let raw = baseline::relay(
            &self.options.bootstrap,
            &Self::topic("dispatch"),
            &sink.url("relay"),
            events,
            100,
        )
        .await?;
        self.section(
            &format!("3. Dispatch: a backlog of {events} events to a fast sink"),
            &[
                "target",
                "events/s",
                "lost",
                "dup",
                "RSS MiB (peak)",
                "CPU µs/event",
                "ratio",
            ],
        );
        self.row(&[
            "raw consumer posting 100 at once (ceiling)".into(),
            format!("{raw:.0}"),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "1.00".into(),
        ]);
        self.row(&[
            "ferry dispatcher (unordered, commits)".into(),
            format!("{:.0}", report.delivered_rate),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.1}", busy.rss_mib),
            per_event_micros(busy, events),
            format!("{:.2}", report.delivered_rate / raw),
        ]);
        Ok(())
    }

    /// 4. Fan-out: many triggers on one broker.
    async fn fanout(&mut self) -> anyhow::Result<()> {
        self.section(
            "4. Fan-out: N triggers on one broker, a backlog delivered to each",
            &[
                "triggers",
                "events × triggers",
                "start s",
                "deliveries/s",
                "lost",
                "dup",
                "idle MiB",
                "peak MiB",
                "threads",
                "Kafka connections",
            ],
        );
        for triggers in self.options.fanout.clone() {
            let run = RunId::fresh();
            let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
            let events = (self.options.backlog / triggers as u64).max(100);
            let broker = format!("fanout{triggers}");
            let (report, idle, busy, startup) = self
                .drain_backlog(&broker, triggers, events, &sink, run)
                .await?;
            self.row(&[
                triggers.to_string(),
                format!("{events} × {triggers}"),
                format!("{:.1}", startup.as_secs_f64()),
                format!("{:.0}", report.delivered_rate),
                report.lost.to_string(),
                report.duplicates.to_string(),
                format!("{:.1}", idle.rss_mib),
                format!("{:.1}", busy.rss_mib),
                busy.threads.to_string(),
                busy.connections.to_string(),
            ]);
        }
        Ok(())
    }

    /// 5. Ordered against unordered delivery to a subscriber that takes
    ///    10 ms per event.
    async fn ordering(&mut self) -> anyhow::Result<()> {
        self.section(
            "5. Ordered vs unordered: a subscriber taking 10 ms, 500 events/s offered",
            &[
                "delivery",
                "sent",
                "lost",
                "delivered/s",
                "e2e p50 ms",
                "e2e p99 ms",
                "e2e max ms",
            ],
        );
        for ordered in [true, false] {
            let run = RunId::fresh();
            let sink = SinkHandle::start(
                loopback(),
                run,
                Behaviour {
                    delay: Duration::from_millis(10),
                },
            )
            .await?;
            let broker = if ordered { "ordered" } else { "unordered" };
            self.apply(broker, 1, ordered, &sink).await?;
            let (receiver, dispatcher) = (self.receiver()?, self.dispatcher()?);
            receiver.ready(READY_TIMEOUT).await?;
            dispatcher.ready(READY_TIMEOUT).await?;
            self.warm_up(broker, &sink).await?;
            let sent = load::run(&self.load(self.broker_url(broker), Some(500.0)), run).await?;
            sink.wait_for(
                &sent.accepted,
                1,
                Instant::now() + Duration::from_secs(120),
                Duration::from_secs(15),
            )
            .await;
            let report = Report::new(&sent, &sink.received(), 1);
            self.row(&[
                broker.into(),
                report.sent.to_string(),
                report.lost.to_string(),
                format!("{:.0}", report.delivered_rate),
                format!("{:.2}", report.end_to_end.p50),
                format!("{:.2}", report.end_to_end.p99),
                format!("{:.2}", report.end_to_end.max),
            ]);
            receiver.stop().await;
            dispatcher.stop().await;
        }
        Ok(())
    }

    /// 6. Soak: 1,000 events/s through a broker with 10 triggers for
    ///    `soak_minutes`, the dispatcher restarted (SIGTERM, as a rolling
    ///    update does) at every minute; memory sampled at each minute.
    async fn soak(&mut self) -> anyhow::Result<()> {
        const TRIGGERS: usize = 10;
        let minutes = self.options.soak_minutes;
        self.section(
            "6. Soak: 1,000 events/s, 10 triggers, the dispatcher restarted every minute",
            &[
                "minute",
                "deliveries so far",
                "receiver MiB",
                "dispatcher MiB",
            ],
        );
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply("soak", TRIGGERS, false, &sink).await?;
        let (receiver, mut dispatcher) = (self.receiver()?, self.dispatcher()?);
        receiver.ready(READY_TIMEOUT).await?;
        dispatcher.ready(READY_TIMEOUT).await?;
        self.warm_up("soak", &sink).await?;

        let stop = Shutdown::new();
        let mut load = self.load(self.broker_url("soak"), Some(1000.0));
        load.duration = Duration::from_secs(minutes * 60 + 60);
        let sending = tokio::spawn({
            let stop = stop.clone();
            async move { load::run_until(&load, run, stop).await }
        });
        let started = Instant::now();
        for minute in 1..=minutes {
            // Pacing a benchmark, not waiting for a result.
            tokio::time::sleep_until((started + Duration::from_secs(minute * 60)).into()).await;
            let rss = |pid| procstat::footprint(pid, self.kafka_port).rss_mib;
            let (r, d) = (rss(receiver.pid()), rss(dispatcher.pid()));
            self.row(&[
                minute.to_string(),
                sink.arrivals().to_string(),
                format!("{r:.1}"),
                format!("{d:.1}"),
            ]);
            if minute < minutes {
                dispatcher.stop().await;
                dispatcher = self.dispatcher()?;
            }
        }
        stop.cancel();
        let sent = sending.await??;
        sink.wait_for(
            &sent.accepted,
            TRIGGERS,
            Instant::now() + Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .await;
        let report = Report::new(&sent, &sink.received(), TRIGGERS);
        let duplicates =
            report.duplicates as f64 / (report.accepted * TRIGGERS as u64).max(1) as f64;
        self.section(
            "6. Soak: totals",
            &[
                "sent",
                "accepted",
                "non-202",
                "deliveries",
                "lost",
                "duplicates",
                "duplicate %",
            ],
        );
        self.row(&[
            report.sent.to_string(),
            report.accepted.to_string(),
            (report.sent - report.accepted).to_string(),
            report.received.to_string(),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.3}", duplicates * 100.0),
        ]);
        report_lost(&report, run);
        receiver.stop().await;
        dispatcher.stop().await;
        Ok(())
    }
}

/// Names the first lost events, to look for in the topic.
fn report_lost(report: &Report, run: RunId) {
    if report.lost_examples.is_empty() {
        return;
    }
    let examples: Vec<String> = report
        .lost_examples
        .iter()
        .map(|&(seq, paths)| format!("{} ({paths} paths)", run.event_id(seq)))
        .collect();
    eprintln!("bench: lost events: {}", examples.join(", "));
}

/// CPU time per event, in microseconds.
fn per_event_micros(footprint: Footprint, events: u64) -> String {
    format!("{:.1}", footprint.cpu_seconds * 1e6 / events.max(1) as f64)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A port free right now (the process given it binds it soon after).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind(loopback())?.local_addr()?)
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() >= deadline {
            bail!("nothing listens on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
