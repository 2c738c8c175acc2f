//! The dispatcher's metrics, registered in the process registry.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{deliver::Report, egress::EgressSpec};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EgressLabels {
    egress: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    egress: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    egress: String,
    /// 0 when there was no answer.
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    /// `reader` (one per topic) or `catch_up` (one per egress behind).
    kind: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    consumers: Family<ConsumerLabels, Gauge>,
    events: Family<OutcomeLabels, Counter>,
    attempts: Family<CodeLabels, Counter>,
    retries: Family<EgressLabels, Counter>,
    latency: Family<EgressLabels, Histogram>,
    invalid: Family<EgressLabels, Counter>,
}

/// Counts a Kafka consumer while it lives.
pub struct ConsumerGauge(Gauge);

impl Drop for ConsumerGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn consumer_opened(&self, kind: &'static str) -> ConsumerGauge {
        let gauge = self
            .consumers
            .get_or_create(&ConsumerLabels { kind })
            .clone();
        gauge.inc();
        ConsumerGauge(gauge)
    }

    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            consumers: Family::default(),
            events: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            invalid: Family::default(),
        };
        registry.register(
            "ferry_dispatch_kafka_consumers",
            "Kafka consumers open: one reader per topic, and one per egress catching up",
            m.consumers.clone(),
        );
        registry.register(
            "ferry_dispatch_events",
            "Events by what became of them",
            m.events.clone(),
        );
        registry.register(
            "ferry_dispatch_attempts",
            "Delivery attempts by response code",
            m.attempts.clone(),
        );
        registry.register(
            "ferry_dispatch_retries",
            "Delivery retries",
            m.retries.clone(),
        );
        registry.register(
            "ferry_dispatch_latency_seconds",
            "Time of one delivery attempt",
            m.latency.clone(),
        );
        registry.register(
            "ferry_dispatch_invalid_records",
            "Records that are not CloudEvents",
            m.invalid.clone(),
        );
        m
    }

    pub fn report(&self, spec: &EgressSpec, report: Report) {
        self.events
            .get_or_create(&OutcomeLabels {
                egress: spec.name.clone(),
                outcome: report.as_str(),
            })
            .inc();
    }

    pub fn attempt(&self, spec: &EgressSpec, code: Option<u16>, took: Duration) {
        self.attempts
            .get_or_create(&CodeLabels {
                egress: spec.name.clone(),
                code: code.unwrap_or(0),
            })
            .inc();
        self.latency
            .get_or_create(&EgressLabels {
                egress: spec.name.clone(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn retry(&self, spec: &EgressSpec) {
        self.retries
            .get_or_create(&EgressLabels {
                egress: spec.name.clone(),
            })
            .inc();
    }

    pub fn invalid(&self, spec: &EgressSpec) {
        self.invalid
            .get_or_create(&EgressLabels {
                egress: spec.name.clone(),
            })
            .inc();
    }
}
