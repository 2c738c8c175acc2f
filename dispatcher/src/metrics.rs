//! The dispatcher's metrics. The reference's names (see
//! `ferry_common::metrics`) for attempts, processing time, requests in
//! flight and events sent; Ferry's own for what the reference does not
//! report: outcomes (delivered, dead-lettered, dropped, filtered), retries,
//! lag per partition and Kafka consumers. Every series of an egress carries
//! its labels (`kn_trigger_namespace`, `kn_trigger_name`, `kn_broker_name`,
//! or a subscription's and channel's).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use ferry_common::metrics::{self, ByAnswer, Labels, Shared};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{egress::EgressSpec, report::Report};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    /// `reader` (one per topic) or `catch_up` (one per egress behind).
    kind: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    shared: Shared,
    consumers: Family<ConsumerLabels, Gauge>,
    events: Family<Labels, Counter>,
    sent: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    in_flight: Family<Labels, Gauge>,
    process_latency: Family<Labels, Histogram>,
    lag: Family<Labels, Gauge>,
    gaps: Family<[(&'static str, String); 1], Counter>,
    content_type_conflicts: Family<[(&'static str, String); 1], Counter>,
    skipped_headers: Family<Labels, Counter>,
    /// Each egress's series that do not change from event to event, by
    /// egress key: building and hashing a label set for every event cost
    /// about 7 µs a delivery (BENCHMARKS.md).
    series: Arc<RwLock<HashMap<String, Arc<EgressSeries>>>>,
}

struct EgressSeries {
    labels: Labels,
    /// Each attempt's answered count (none without an answer) and time.
    attempts: ByAnswer<(Option<Counter>, Histogram)>,
    in_flight: Gauge,
    processing: Histogram,
    retries: Counter,
    /// By `Report as usize`.
    outcomes: [Counter; 4],
}

/// Counts something (a Kafka consumer, a request in flight) while it
/// lives.
pub struct Held(Gauge);

impl Held {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new(registry: &mut Registry, shared: &Shared) -> Self {
        let m = Metrics {
            shared: shared.clone(),
            consumers: Family::default(),
            events: Family::default(),
            sent: Family::default(),
            retries: Family::default(),
            in_flight: Family::default(),
            process_latency: Family::new_with_constructor(metrics::latency_histogram),
            lag: Family::default(),
            gaps: Family::default(),
            content_type_conflicts: Family::default(),
            skipped_headers: Family::default(),
            series: Arc::default(),
        };
        registry.register(
            "http_events_sent",
            "Delivery attempts that got an answer, by response code",
            m.sent.clone(),
        );
        registry.register(
            "kn_eventing_dispatch_in_flight_requests",
            "Delivery requests waiting for an answer",
            m.in_flight.clone(),
        );
        registry.register(
            "kn_eventing_process_latency_ms",
            "Time from an event's write to Kafka to the start of its delivery, in milliseconds",
            m.process_latency.clone(),
        );
        registry.register(
            "ferry_dispatch_events",
            "Events by what became of them: delivered, dead_lettered, dropped, filtered",
            m.events.clone(),
        );
        registry.register(
            "ferry_dispatch_retries",
            "Delivery attempts after the first",
            m.retries.clone(),
        );
        registry.register(
            "ferry_dispatch_consumer_lag",
            "Events on a partition after the egress's position (the high watermark minus what it will commit)",
            m.lag.clone(),
        );
        registry.register(
            "ferry_dispatch_offset_gaps",
            "Times a topic's records skipped ahead of the offset expected and were read again",
            m.gaps.clone(),
        );
        registry.register(
            "ferry_dispatch_content_type_conflicts",
            "Records whose content-type and ce_datacontenttype headers differed (content-type was used)",
            m.content_type_conflicts.clone(),
        );
        registry.register(
            "ferry_dispatch_skipped_headers",
            "Headers of a KafkaSource's plain records left out of their events: values that are not UTF-8",
            m.skipped_headers.clone(),
        );
        registry.register(
            "ferry_dispatch_kafka_consumers",
            "Kafka consumers open: one reader per topic, and one per egress catching up",
            m.consumers.clone(),
        );
        m
    }

    pub fn consumer_opened(&self, kind: &'static str) -> Held {
        Held::new(
            self.consumers
                .get_or_create(&ConsumerLabels { kind })
                .clone(),
        )
    }

    /// The egress's series, found once per egress (and again when its
    /// labels change).
    fn series(&self, spec: &EgressSpec) -> Arc<EgressSeries> {
        let cached = self
            .series
            .read()
            .expect("series cache")
            .get(&spec.key)
            .filter(|s| s.labels == spec.labels)
            .cloned();
        if let Some(series) = cached {
            return series;
        }
        let outcome = |report: Report| {
            let mut labels = spec.labels.clone();
            labels.push(("outcome", report.as_str().to_owned()));
            self.events.get_or_create(&labels).clone()
        };
        let series = Arc::new(EgressSeries {
            labels: spec.labels.clone(),
            attempts: ByAnswer::default(),
            in_flight: self.in_flight.get_or_create(&spec.labels).clone(),
            processing: self.process_latency.get_or_create(&spec.labels).clone(),
            retries: self.retries.get_or_create(&spec.labels).clone(),
            outcomes: [
                Report::Filtered,
                Report::Delivered,
                Report::DeadLettered,
                Report::Dropped,
            ]
            .map(outcome),
        });
        self.series
            .write()
            .expect("series cache")
            .insert(spec.key.clone(), series.clone());
        series
    }

    /// Forgets the cached series of an egress that no longer runs here.
    pub fn forget(&self, spec: &EgressSpec) {
        self.series.write().expect("series cache").remove(&spec.key);
    }

    pub fn report(&self, spec: &EgressSpec, report: Report) {
        self.series(spec).outcomes[report as usize].inc();
    }

    /// An attempt starts; the guard counts it until it ends.
    pub fn attempt_started(&self, spec: &EgressSpec) -> Held {
        Held::new(self.series(spec).in_flight.clone())
    }

    /// An attempt ended: with an answer's status code, or none.
    pub fn attempt(&self, spec: &EgressSpec, ty: &str, code: Option<u16>, took: Duration) {
        let series = self.series(spec);
        let (sent, latency) = series.attempts.get(code, self.shared.type_key(ty), || {
            let mut labels = spec.labels.clone();
            self.shared.with_event_type(&mut labels, ty);
            let sent = code.map(|code| {
                labels.push(("http_response_status_code", code.to_string()));
                self.sent.get_or_create(&labels).clone()
            });
            (sent, self.shared.dispatch_latency(&labels))
        });
        if let Some(sent) = sent {
            sent.inc();
        }
        latency.observe(took.as_secs_f64() * 1e3);
    }

    /// How long after it was written to Kafka an event's delivery began.
    pub fn processing(&self, spec: &EgressSpec, written_ms: i64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.series(spec)
            .processing
            .observe(now_ms.saturating_sub(written_ms).max(0) as f64);
    }

    pub fn retry(&self, spec: &EgressSpec) {
        self.series(spec).retries.inc();
    }

    pub fn invalid(&self, spec: &EgressSpec) {
        self.shared.discarded(&spec.labels);
    }

    pub fn offset_gap(&self, topic: &str) {
        self.gaps
            .get_or_create(&[("topic", topic.to_owned())])
            .inc();
    }

    pub fn skipped_headers(&self, spec: &EgressSpec, count: usize) {
        self.skipped_headers
            .get_or_create(&spec.labels)
            .inc_by(count as u64);
    }

    pub fn content_type_conflict(&self, topic: &str) {
        self.content_type_conflicts
            .get_or_create(&[("topic", topic.to_owned())])
            .inc();
    }

    pub fn lag(&self, spec: &EgressSpec, partition: i32, lag: u64) {
        self.lag
            .get_or_create(&lag_labels(spec, partition))
            .set(lag as i64);
    }

    /// Drops an egress's lag series once it no longer runs here.
    pub fn forget_lag(&self, spec: &EgressSpec, partitions: impl IntoIterator<Item = i32>) {
        for partition in partitions {
            self.lag.remove(&lag_labels(spec, partition));
        }
    }
}

/// An egress's labels with the partition's, and its topic's: a
/// KafkaSource reads several topics under one egress.
fn lag_labels(spec: &EgressSpec, partition: i32) -> Labels {
    let mut labels = spec.labels.clone();
    labels.push(("topic", spec.topic.clone()));
    labels.push(("partition", partition.to_string()));
    labels
}
