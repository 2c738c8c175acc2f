//! 9. A three-step Sequence at 1,000 events/s: each hop a KafkaChannel
//!    (receiver → Kafka → dispatcher → an echoing step → its reply written
//!    to the next channel), against three raw produce → consume hops
//!    chained by raw relays in the same run.

use std::time::{Duration, Instant};

use ferry_common::shutdown::Shutdown;

use crate::{
    baseline,
    event::RunId,
    load,
    process::{loopback, Sampler},
    report::{Percentiles, Report},
    sink::{Behaviour, SinkHandle},
    suite::{Bench, NAMESPACE, READY_TIMEOUT},
};

const STEPS: usize = 3;

impl Bench {
    pub(crate) async fn sequence(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        let stop = Shutdown::new();
        let mut steps = Vec::new();
        for _ in 0..STEPS {
            let listener = ferry_common::server::bind(loopback()).await?;
            steps.push(format!("http://{}/", listener.local_addr()?));
            tokio::spawn(baseline::echo_server(listener, stop.clone()));
        }
        let channels: Vec<String> = (0..STEPS)
            .map(|i| format!("flow-kn-sequence-{i}"))
            .collect();
        self.apply_sequence(&steps, &sink.url("reply")).await?;
        let topics: Vec<String> = channels
            .iter()
            .map(|c| format!("knative-messaging-kafka.{NAMESPACE}.{c}"))
            .collect();
        // Before the dispatcher starts: its new groups begin after these.
        let floor = Percentiles::of(
            &baseline::kafka_latency(
                &self.options.bootstrap,
                &topics,
                1000.0,
                self.options.duration,
            )
            .await?,
        );
        let (receiver, dispatcher) = (self.receiver()?, self.dispatcher()?);
        receiver.ready(READY_TIMEOUT).await?;
        dispatcher.ready(READY_TIMEOUT).await?;
        self.section(
            "9. A three-step Sequence at 1,000 events/s (steps echo the event)",
            &[
                "path",
                "sent",
                "lost",
                "dup",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "dispatcher MiB",
            ],
        );
        let row = |path: &str, p: &Percentiles| {
            [
                path.to_owned(),
                "".into(),
                "".into(),
                "".into(),
                format!("{:.2}", p.p50),
                format!("{:.2}", p.p90),
                format!("{:.2}", p.p99),
                format!("{:.2}", p.p999),
                format!("{:.2}", p.max),
                "".into(),
            ]
        };
        self.row(&row(
            "raw: produce → consume, relayed twice (3 hops)",
            &floor,
        ));
        let address: http::Uri = format!(
            "http://{}/channels/{NAMESPACE}/{}",
            self.ingress, channels[0]
        )
        .parse()?;
        self.warm_up_at(address.clone(), &sink).await?;
        let sampler = Sampler::start(dispatcher.pid(), self.kafka_port);
        let sent = load::run(&self.load(address, Some(1000.0)), run).await?;
        sink.wait_for(
            &sent.accepted,
            1,
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await;
        let footprint = sampler.finish();
        let report = Report::new(&sent, &sink.received(), 1);
        let mut cells = row(
            "HTTP → 3 × (channel → step → reply) → HTTP",
            &report.end_to_end,
        );
        cells[1] = report.sent.to_string();
        cells[2] = report.lost.to_string();
        cells[3] = report.duplicates.to_string();
        cells[9] = format!("{:.1}", footprint.rss_mib);
        self.row(&cells);
        receiver.stop().await;
        dispatcher.stop().await;
        stop.cancel();
        Ok(())
    }

    /// A Sequence `flow` of `steps` replying to `reply`, once the contract
    /// has its channels, each with its subscription.
    async fn apply_sequence(&self, steps: &[String], reply: &str) -> anyhow::Result<()> {
        let steps: String = steps.iter().map(|s| format!("    - uri: {s}\n")).collect();
        let yaml = format!(
            "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: flow\n  namespace: {NAMESPACE}\nspec:\n  \
             channelTemplate:\n    apiVersion: messaging.knative.dev/v1beta1\n    kind: KafkaChannel\n    spec:\n      numPartitions: {}\n  \
             steps:\n{steps}  reply:\n    uri: {reply}\n",
            self.options.partitions
        );
        self.publish(&yaml, "the Sequence's channels", |c| {
            c.resources
                .iter()
                .filter(|r| r.topics.iter().any(|t| t.contains(".flow-kn-sequence-")))
                .filter(|r| r.egresses.len() == 1)
                .count()
                == STEPS
        })
        .await
    }
}
