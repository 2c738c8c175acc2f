//! Scenario 2: end-to-end latency at 1,000 events/s through a broker and
//! one trigger, beside the Kafka floor, the floor with the HTTP hops, and
//! each of Ferry's hops paired with the other's least.
//!
//! Every path writes into a topic of its own. Tansu's in-memory topics
//! cost more to serve the longer they get while a consumer reads them: at
//! a steady 1,000 events/s its CPU rose from 0.25 to 0.9 of a core over
//! 60,000 records, and the end-to-end p99 from 26 to 48 ms. Paths measured
//! one after the other on one topic would be ranked by their turn.
//!
//! The brokers are all made before the first measurement and deleted after
//! the last: a topic deleted while a consumer fetches from it gets an answer
//! from Tansu that crashes librdkafka 2.12 (a leader-change tag without a
//! topic id; see the README's Known problems).

use crate::{
    event::RunId,
    load,
    process::{loopback, Sampler},
    procstat::Footprint,
    report::{Percentiles, Report},
    scenarios::received_report,
    sink::{Behaviour, SinkHandle},
    suite::{broker_yaml, has_broker, Bench, Order, READY_TIMEOUT},
};

/// Scenario 2's rate.
const RATE: f64 = 1000.0;

impl Bench {
    /// 2. End to end at 1,000 events/s: broker → one trigger → sink.
    pub(crate) async fn end_to_end(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        // A broker (a topic) per path, and per run: a repeat on the same
        // Tansu (`--scenarios 2,2`, `--compare`) must not meet the previous
        // run's topic and trigger group either.
        let broker = |path: &str| format!("e2e-{:08x}-{path}", run.0);
        // Triggers only where Ferry's dispatcher is measured.
        let paths = [
            ("kafka", 0),
            ("hops", 0),
            ("receiver", 0),
            ("dispatcher", 1),
            ("ferry", 1),
        ];
        let subscriber = |_| sink.url("t0");
        let yaml: Vec<String> = paths
            .iter()
            .map(|&(path, triggers)| {
                broker_yaml(&broker(path), &[], triggers, Order::Unordered, &subscriber)
            })
            .collect();
        self.publish(&yaml.join("---\n"), "scenario 2's brokers", |c| {
            paths
                .iter()
                .all(|&(path, triggers)| has_broker(c, &broker(path), triggers))
        })
        .await?;

        let kafka = broker("kafka");
        let floor = Percentiles::of(
            &crate::baseline::kafka_latency(
                &self.options.bootstrap,
                &[Self::topic(&kafka)],
                RATE,
                self.options.duration,
            )
            .await?,
        );

        let hops = broker("hops");
        let http_floor = {
            let (gateway, url) = self.gateway(&hops).await?;
            let report = self.through_relay(&hops, url).await;
            gateway.stop().await;
            report?
        };

        // Each of Ferry's hops beside the other's least, to tell whose the
        // time above the floor is.
        let receiver = self.receiver()?;
        receiver.ready(READY_TIMEOUT).await?;
        let ingress = broker("receiver");
        let receiver_relay = self
            .through_relay(&ingress, self.broker_url(&ingress))
            .await?;

        let dispatcher = self.dispatcher()?;
        dispatcher.ready(READY_TIMEOUT).await?;
        let egress = broker("dispatcher");
        let gateway_dispatcher = {
            let (gateway, url) = self.gateway(&egress).await?;
            let report = self.at_rate(url, &sink).await;
            gateway.stop().await;
            report?
        };

        let ferry = broker("ferry");
        let samplers = (
            Sampler::memory(receiver.pid()),
            Sampler::memory(dispatcher.pid()),
        );
        let report = self.at_rate(self.broker_url(&ferry), &sink).await?;
        let footprints = (samplers.0.finish(), samplers.1.finish());
        receiver.stop().await;
        dispatcher.stop().await;

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
                "e2e p99.9 ms",
                "e2e max ms",
                "receiver MiB",
                "dispatcher MiB",
            ],
        );
        let mut row = vec![String::new(); 12];
        row[0] = "raw producer → raw consumer (Kafka floor)".into();
        for (cell, value) in row[5..10]
            .iter_mut()
            .zip([floor.p50, floor.p90, floor.p99, floor.p999, floor.max])
        {
            *cell = format!("{value:.2}");
        }
        self.row(&row);
        for (path, report) in [
            (
                "HTTP → raw gateway → Kafka → raw relay → HTTP (floor with the HTTP hops)",
                &http_floor,
            ),
            (
                "HTTP → receiver → Kafka → raw relay → HTTP (the receiver's share)",
                &receiver_relay,
            ),
            (
                "HTTP → raw gateway → Kafka → dispatcher → HTTP (the dispatcher's share)",
                &gateway_dispatcher,
            ),
        ] {
            self.e2e_row(path, report, None);
        }
        self.e2e_row(
            "HTTP → receiver → Kafka → dispatcher → HTTP",
            &report,
            Some(footprints),
        );
        Ok(())
    }

    /// Load at scenario 2's rate through `url` once an event went through
    /// to `sink`; what reached it.
    async fn at_rate(&self, url: http::Uri, sink: &SinkHandle) -> anyhow::Result<Report> {
        self.warm_up_at(url.clone(), sink).await?;
        let run = RunId::fresh();
        sink.begin(run);
        let sent = load::run(&self.load(url, Some(RATE)), run).await?;
        Ok(received_report(sink, &sent).await)
    }

    /// [`Self::at_rate`] through the ingress at `url`, which writes into
    /// `broker`'s topic, relayed by the raw relay to a sink of its own.
    async fn through_relay(&self, broker: &str, url: http::Uri) -> anyhow::Result<Report> {
        let sink = SinkHandle::start(loopback(), RunId::fresh(), Behaviour::default()).await?;
        let relay = self.spawn_baseline(
            "relay",
            &[
                "bench".into(),
                "relay".into(),
                "--topic".into(),
                Self::topic(broker),
                "--url".into(),
                sink.url("floor"),
                "--count".into(),
                u64::MAX.to_string(),
                "--new".into(),
            ],
        )?;
        let report = self.at_rate(url, &sink).await;
        relay.stop().await;
        report
    }

    fn e2e_row(&mut self, path: &str, report: &Report, footprints: Option<(Footprint, Footprint)>) {
        let mib = |f: Option<Footprint>| f.map_or(String::new(), |f| format!("{:.1}", f.rss_mib));
        self.row(&[
            path.into(),
            report.sent.to_string(),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.2}", report.ingress_latency.p99),
            format!("{:.2}", report.end_to_end.p50),
            format!("{:.2}", report.end_to_end.p90),
            format!("{:.2}", report.end_to_end.p99),
            format!("{:.2}", report.end_to_end.p999),
            format!("{:.2}", report.end_to_end.max),
            mib(footprints.map(|f| f.0)),
            mib(footprints.map(|f| f.1)),
        ]);
    }
}
