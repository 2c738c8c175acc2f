//! The controller's metrics: reconcile passes and how long they took,
//! resources by kind and readiness, and whether this replica leads; and
//! its readiness for `/readyz`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::plan::{Ready, Status};

type ResourceLabels = [(&'static str, String); 2];

#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    reconciles: Counter,
    duration: Histogram,
    resources: Family<ResourceLabels, Gauge>,
    leader: Gauge,
    /// What the sources the controller runs (PingSources) sent.
    pub sources: ferry_sources::sink::SourceMetrics,
    /// A pass has completed with every topic answered for, or this replica
    /// stands by for another.
    ready: Arc<AtomicBool>,
}

impl ControllerMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = ControllerMetrics {
            reconciles: Counter::default(),
            duration: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            resources: Family::default(),
            leader: Gauge::default(),
            sources: ferry_sources::sink::SourceMetrics::register(registry),
            ready: Arc::default(),
        };
        registry.register(
            "ferry_controller_reconciles",
            "Reconcile passes (plan, contract, statuses, Kafka work handed out)",
            m.reconciles.clone(),
        );
        registry.register(
            "ferry_controller_reconcile_duration_seconds",
            "How long a reconcile pass took; Kafka's work is not part of it",
            m.duration.clone(),
        );
        registry.register(
            "ferry_controller_resources",
            "Resources by kind and readiness (True, False, Unknown)",
            m.resources.clone(),
        );
        registry.register(
            "ferry_controller_leader",
            "1 while this replica holds the lease (always 1 with a folder)",
            m.leader.clone(),
        );
        m
    }

    /// Metrics that go nowhere.
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    /// One pass done; `settled` when Kafka has answered (yes or no) for
    /// every topic the plan names, which is when this replica is ready.
    pub fn reconciled(&self, took: Duration, statuses: &[Status], settled: bool) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        for status in statuses {
            let ready = match status.ready {
                Ready::True => "True",
                Ready::False => "False",
                Ready::Unknown => "Unknown",
            };
            *counts.entry((status.kind.clone(), ready)).or_default() += 1;
        }
        if settled {
            self.ready.store(true, Ordering::Release);
        }
        // A kind and readiness with nothing left has no series.
        self.resources.clear();
        for ((kind, ready), n) in counts {
            self.resources
                .get_or_create(&[("kind", kind), ("ready", ready.to_owned())])
                .set(n);
        }
    }

    /// A standby replica is ready too: it is doing what it should.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if !leading {
            self.ready.store(true, Ordering::Release);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
