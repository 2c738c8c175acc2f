//! The benchmark suite of BENCHMARKS.md: separate Ferry processes
//! (controller, receiver, dispatcher) and the baselines on one Kafka
//! cluster, what every scenario shares (starting processes, applying
//! resources, warming up, the tables); the scenarios themselves are in
//! `scenarios`.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use ferry_common::contract;
use tokio::process::Command;

use crate::{
    event::RunId,
    load::{self, Load},
    process::{free_addr, Process},
    sink::SinkHandle,
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
    /// PingSources of the sources scenario (7).
    pub pings: usize,
}

pub(crate) const NAMESPACE: &str = "bench";
pub(crate) const SIZE: usize = 1024;
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(300);

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
            7 => bench.pings().await?,
            8 => bench.autocreate().await?,
            9 => bench.sequence().await?,
            10 => bench.kafka_world().await?,
            11 => bench.security().await?,
            other => bail!("there is no scenario {other}"),
        }
    }
    Ok(bench.out)
}

pub(crate) struct Bench {
    pub(crate) options: Options,
    /// The receiver's address (the same every scenario: brokers' addresses
    /// in the contract name it).
    pub(crate) ingress: SocketAddr,
    pub(crate) kafka_port: u16,
    pub(crate) controller: Option<Process>,
    pub(crate) out: String,
}

impl Bench {
    pub(crate) fn controller_args(&self) -> Vec<String> {
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
            // No cluster DNS here: channels by path on the ingress.
            "--channel-addresses".into(),
            "path".into(),
        ]
    }

    pub(crate) fn contract(&self) -> PathBuf {
        self.options.work_dir.join("contract.json")
    }

    /// Starts `ferry ARGS`, logging to `<name>.log` in the work folder
    /// (appended to, so a restarted process's log follows its
    /// predecessor's).
    pub(crate) fn spawn(
        &self,
        name: &str,
        args: &[String],
        admin: Option<SocketAddr>,
    ) -> anyhow::Result<Process> {
        self.spawn_from(&self.options.ferry, name, args, admin)
    }

    /// Starts a baseline as a process of its own, from the suite's own
    /// binary whichever build's data plane is measured, so that both
    /// sides of a comparison measure the same baseline.
    pub(crate) fn spawn_baseline(&self, name: &str, args: &[String]) -> anyhow::Result<Process> {
        let own = std::env::current_exe().context("where is ferry?")?;
        self.spawn_from(&own, name, args, None)
    }

    fn spawn_from(
        &self,
        binary: &std::path::Path,
        name: &str,
        args: &[String],
        admin: Option<SocketAddr>,
    ) -> anyhow::Result<Process> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.options.work_dir.join(format!("{name}.log")))?;
        let mut command = Command::new(binary);
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
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Process { child, admin })
    }

    pub(crate) fn receiver(&self) -> anyhow::Result<Process> {
        self.receiver_with(&[])
    }

    /// A receiver with more flags.
    pub(crate) fn receiver_with(&self, extra: &[String]) -> anyhow::Result<Process> {
        self.receiver_on(&self.contract(), extra)
    }

    /// A receiver of another contract file, with more flags.
    pub(crate) fn receiver_on(
        &self,
        contract: &std::path::Path,
        extra: &[String],
    ) -> anyhow::Result<Process> {
        let contract = contract.display().to_string();
        let listen = self.ingress.to_string();
        let mut args = vec![
            "receiver".into(),
            "--contract".into(),
            contract,
            "--listen".into(),
            listen,
        ];
        args.extend_from_slice(extra);
        self.spawn("receiver", &args, Some(free_addr()?))
    }

    pub(crate) fn dispatcher(&self) -> anyhow::Result<Process> {
        let contract = self.contract().display().to_string();
        self.spawn(
            "dispatcher",
            &["dispatcher".into(), "--contract".into(), contract],
            Some(free_addr()?),
        )
    }

    /// Replaces the resources with a broker and `triggers` triggers to
    /// `sink` (paths /t0, /t1, ...), and waits for the contract to have them.
    pub(crate) async fn apply(
        &self,
        broker: &str,
        triggers: usize,
        order: Order,
        sink: &SinkHandle,
    ) -> anyhow::Result<()> {
        self.apply_to(broker, triggers, order, &|t| sink.url(&format!("t{t}")))
            .await
    }

    /// [`Self::apply`] with trigger `t`'s subscriber at `subscriber(t)`.
    pub(crate) async fn apply_to(
        &self,
        broker: &str,
        triggers: usize,
        order: Order,
        subscriber: &dyn Fn(usize) -> String,
    ) -> anyhow::Result<()> {
        self.apply_annotated(broker, &[], triggers, order, subscriber)
            .await
    }

    /// [`Self::apply_to`] with more annotations on the broker.
    pub(crate) async fn apply_annotated(
        &self,
        broker: &str,
        annotations: &[(&str, &str)],
        triggers: usize,
        order: Order,
        subscriber: &dyn Fn(usize) -> String,
    ) -> anyhow::Result<()> {
        let yaml = broker_yaml(broker, annotations, triggers, order, subscriber);
        let what = format!("{broker} with {triggers} triggers");
        self.publish(&yaml, &what, |c| has_broker(c, broker, triggers))
            .await
    }

    /// Replaces the resources with `yaml`, and waits until the contract is
    /// as `published` wants it.
    pub(crate) async fn publish(
        &self,
        yaml: &str,
        what: &str,
        published: impl Fn(&ferry_proto::Contract) -> bool,
    ) -> anyhow::Result<()> {
        let dir = self.options.work_dir.join("resources");
        let staged = self.options.work_dir.join("bench.yaml.new");
        std::fs::write(&staged, yaml)?;
        std::fs::rename(&staged, dir.join("bench.yaml"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if contract::read(&self.contract()).is_ok_and(|c| published(&c)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the controller did not publish {what} (see {})",
                    self.options.work_dir.join("controller.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends single events until one arrives, so measurements start in the
    /// steady state (the dispatcher's groups have joined, connections are
    /// open). Warm-up events belong to another run: the sink ignores them.
    pub(crate) async fn warm_up(&self, broker: &str, sink: &SinkHandle) -> anyhow::Result<()> {
        self.warm_up_at(self.broker_url(broker), sink).await
    }

    /// [`Self::warm_up`] through any address.
    pub(crate) async fn warm_up_at(&self, url: http::Uri, sink: &SinkHandle) -> anyhow::Result<()> {
        let sink_run = sink.run();
        let warm_up = loop {
            let run = RunId::fresh();
            if run != sink_run {
                break run;
            }
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut load = self.load(url.clone(), None);
        load.count = 1;
        load.connections = 1;
        while sink.foreign() == 0 {
            if Instant::now() >= deadline {
                bail!("no event reached the sink through {url}");
            }
            load::run(&load, warm_up).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sink.reset();
        Ok(())
    }

    pub(crate) fn broker_url(&self, broker: &str) -> http::Uri {
        format!("http://{}/{NAMESPACE}/{broker}", self.ingress)
            .parse()
            .expect("valid url")
    }

    pub(crate) fn topic(broker: &str) -> String {
        format!("knative-broker-{NAMESPACE}-{broker}")
    }

    pub(crate) fn load(&self, url: http::Uri, rate: Option<f64>) -> Load {
        Load {
            url,
            connections: self.options.connections,
            rate,
            count: u64::MAX,
            duration: self.options.duration,
            size: SIZE,
            tls: None,
            bearer: None,
            keys: None,
        }
    }

    pub(crate) fn section(&mut self, title: &str, header: &[&str]) {
        let _ = writeln!(self.out, "\n### {title}\n");
        let _ = writeln!(self.out, "| {} |", header.join(" | "));
        let _ = writeln!(self.out, "|{}", "---|".repeat(header.len()));
        eprintln!("bench: {title}");
    }

    pub(crate) fn row(&mut self, cells: &[String]) {
        let line = format!("| {} |", cells.join(" | "));
        eprintln!("bench: {line}");
        let _ = writeln!(self.out, "{line}");
    }
}

/// A trigger's delivery order (`kafka.eventing.knative.dev/delivery.order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    Unordered,
    Ordered,
    ByKey,
}

impl Order {
    fn annotation(self) -> &'static str {
        match self {
            Order::Unordered => "unordered",
            Order::Ordered => "ordered",
            Order::ByKey => "ordered-by-key",
        }
    }
}

/// A broker with `triggers` triggers, trigger `t`'s subscriber at
/// `subscriber(t)`, as YAML documents.
pub(crate) fn broker_yaml(
    broker: &str,
    annotations: &[(&str, &str)],
    triggers: usize,
    order: Order,
    subscriber: &dyn Fn(usize) -> String,
) -> String {
    let mut yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  namespace: {NAMESPACE}\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\n"
    );
    for (name, value) in annotations {
        let _ = writeln!(yaml, "    {name}: {value}");
    }
    let order = order.annotation();
    for t in 0..triggers {
        let _ = write!(
            yaml,
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {broker}-t{t}\n  namespace: {NAMESPACE}\n  annotations:\n    kafka.eventing.knative.dev/delivery.order: {order}\nspec:\n  broker: {broker}\n  subscriber:\n    uri: {}\n",
            subscriber(t)
        );
    }
    yaml
}

/// Whether `contract` serves `broker` with `triggers` triggers.
pub(crate) fn has_broker(contract: &ferry_proto::Contract, broker: &str, triggers: usize) -> bool {
    let path = format!("/{NAMESPACE}/{broker}");
    contract
        .resources
        .iter()
        .any(|r| r.ingress.as_ref().is_some_and(|i| i.path == path) && r.egresses.len() == triggers)
}
