//! 10. The Kafka world in and out: a KafkaSink's accepted events/s against
//!     a raw producer writing the same records to the same topic, and a
//!     KafkaSource's delivered events/s from a backlog against a raw
//!     consumer posting the same records, in one run.

use crate::{
    baseline,
    event::RunId,
    load,
    process::{loopback, Sampler},
    scenarios::per_event_micros,
    sink::{Behaviour, SinkHandle},
    suite::{Bench, NAMESPACE, READY_TIMEOUT, SIZE},
};

const SINK_TOPIC: &str = "bench-kafka-sink";
/// Made by a second KafkaSink, so that the controller creates it.
const SOURCE_TOPIC: &str = "bench-kafka-source";

impl Bench {
    pub(crate) async fn kafka_world(&mut self) -> anyhow::Result<()> {
        let partitions = self.options.partitions;
        let sinks = format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: archive, namespace: {NAMESPACE}}}\nspec:\n  \
             topic: {SINK_TOPIC}\n  numPartitions: {partitions}\n  replicationFactor: 1\n---\n\
             apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: backlog, namespace: {NAMESPACE}}}\nspec:\n  \
             topic: {SOURCE_TOPIC}\n  numPartitions: {partitions}\n  replicationFactor: 1\n"
        );
        let sink_path = format!("/{NAMESPACE}/archive");
        self.publish(&sinks, "the KafkaSinks", |c| {
            c.resources.iter().filter(|r| r.ingress.is_some()).count() == 2
        })
        .await?;
        self.section(
            "10. Kafka in and out: a KafkaSink's ingress, a KafkaSource's delivery",
            &[
                "target",
                "events/s",
                "lost",
                "dup",
                "non-202",
                "RSS MiB (peak)",
                "CPU µs/event",
                "ratio",
            ],
        );

        // Into Kafka: HTTP → KafkaSink → topic, against the raw producer.
        let run = RunId::fresh();
        let receiver = self.receiver()?;
        receiver.ready(READY_TIMEOUT).await?;
        let url = format!("http://{}{sink_path}", self.ingress).parse()?;
        let sampler = Sampler::start(receiver.pid(), self.kafka_port);
        let sent = load::run(&self.load(url, None), run).await?;
        let footprint = sampler.finish();
        receiver.stop().await;
        let raw = self.raw_producer(SINK_TOPIC, &sent, RunId::fresh()).await?;
        self.baseline_row(&self.raw_producer_label(), raw, 8, "1.00".into());
        let non_202 = sent.rejected.values().sum::<u64>() + sent.errors;
        self.row(&[
            "KafkaSink: ferry receiver (acks=all)".into(),
            format!("{:.0}", sent.rate()),
            "".into(),
            "".into(),
            non_202.to_string(),
            format!("{:.1}", footprint.rss_mib),
            per_event_micros(footprint, sent.accepted_count()),
            format!("{:.2}", sent.rate() / raw),
        ]);

        // Out of Kafka: a backlog → KafkaSource → sink, against a raw
        // consumer posting the same records 100 at once.
        let events = self.options.backlog;
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        baseline::produce(
            &self.options.bootstrap,
            SOURCE_TOPIC,
            run,
            events,
            SIZE,
            1000,
        )
        .await?;
        let source = format!(
            "---\napiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: replay, namespace: {NAMESPACE}}}\nspec:\n  \
             topics: [{SOURCE_TOPIC}]\n  initialOffset: earliest\n  ordering: unordered\n  sink: {{uri: \"{}\"}}\n",
            sink.url("source")
        );
        self.publish(&format!("{sinks}{source}"), "the KafkaSource", |c| {
            c.resources.iter().any(|r| {
                r.reference
                    .as_ref()
                    .is_some_and(|re| re.kind == "KafkaSource")
                    && r.egresses.len() == 1
            })
        })
        .await?;
        let (report, busy) = self.drain(&sink, events, 1).await?;
        sink.reset();
        let relayed = baseline::relay(
            &self.options.bootstrap,
            SOURCE_TOPIC,
            &sink.url("relay"),
            events,
            100,
            baseline::Records::All,
        )
        .await?;
        let label = format!("raw consumer posting 100 at once ({events} backlog)");
        self.baseline_row(&label, relayed, 8, "1.00".into());
        self.row(&[
            "KafkaSource: ferry dispatcher (unordered, commits)".into(),
            format!("{:.0}", report.delivered_rate),
            report.lost.to_string(),
            report.duplicates.to_string(),
            "".into(),
            format!("{:.1}", busy.rss_mib),
            per_event_micros(busy, events),
            format!("{:.2}", report.delivered_rate / relayed),
        ]);
        Ok(())
    }
}
