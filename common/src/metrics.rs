//! The metrics the receiver and the dispatcher share, under the names and
//! labels of the Knative Kafka broker's data plane (Knative 1.21, after its
//! move to OpenTelemetry), so that dashboards built for the reference work:
//!
//! - `kn_eventing_dispatch_latency_ms` (histogram, milliseconds): the
//!   receiver's write of an event to Kafka, the dispatcher's attempt to
//!   deliver one; labelled with the resource (`kn_broker_*`,
//!   `kn_kafkachannel_*`, `kn_trigger_*`, `kn_subscription_*`),
//!   `cloudevents_type` and `http_response_status_code`.
//! - `kn_eventing_kafka_discarded_events_total`: requests and records that are not
//!   CloudEvents.
//!
//! `ferry standalone` runs both components in one process and serves one
//! `/metrics`, so a process registers these once and hands them to each.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, RwLock, Weak},
};

use ferry_proto::Reference;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::producer::ProducerPool;

/// A series' labels, in the order they are printed.
pub type Labels = Vec<(&'static str, String)>;

/// Bucket bounds of the latency histograms, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// One resource's series by answer (a status code, or none) and event type
/// (see [`Shared::type_key`]), each made once: making a series' labels
/// clones them and finding it hashes them all, which per event costs more
/// than the rest of the bookkeeping.
pub struct ByAnswer<T> {
    made: RwLock<HashMap<Option<u16>, ByType<T>>>,
}

type ByType<T> = HashMap<Box<str>, T>;

impl<T> Default for ByAnswer<T> {
    fn default() -> Self {
        ByAnswer {
            made: RwLock::default(),
        }
    }
}

impl<T: Clone> ByAnswer<T> {
    /// The series for `code` and `ty`, made by `make` the first time.
    pub fn get(&self, code: Option<u16>, ty: &str, make: impl FnOnce() -> T) -> T {
        let made = self.made.read().expect("series by answer");
        if let Some(series) = made.get(&code).and_then(|by_type| by_type.get(ty)) {
            return series.clone();
        }
        drop(made);
        let series = make();
        self.made
            .write()
            .expect("series by answer")
            .entry(code)
            .or_default()
            .insert(ty.into(), series.clone());
        series
    }
}

/// A cache: two are alike whatever they have made so far.
impl<T> PartialEq for ByAnswer<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> fmt::Debug for ByAnswer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByAnswer")
    }
}

/// Which component a series is from, where both report the same thing.
type ComponentLabels = [(&'static str, &'static str); 1];

/// What the process's components report under shared names.
#[derive(Clone)]
pub struct Shared {
    /// Whether series carry `cloudevents_type`: off bounds cardinality when
    /// producers send many types.
    event_type: bool,
    dispatch_latency: Family<Labels, Histogram>,
    discarded: Family<Labels, Counter>,
    contract_generation: Family<ComponentLabels, Gauge>,
    contract_errors: Family<ComponentLabels, Counter>,
    producers: Arc<ProducerQueues>,
}

impl Shared {
    pub fn register(registry: &mut Registry, event_type: bool) -> Self {
        let shared = Shared {
            event_type,
            dispatch_latency: Family::new_with_constructor(latency_histogram),
            discarded: Family::default(),
            contract_generation: Family::default(),
            contract_errors: Family::default(),
            producers: Arc::default(),
        };
        registry.register(
            "kn_eventing_dispatch_latency_ms",
            "Time to write an event to Kafka (receiver) or to deliver it once (dispatcher), in milliseconds",
            shared.dispatch_latency.clone(),
        );
        registry.register(
            "kn_eventing_kafka_discarded_events",
            "Requests and records discarded because they are not valid CloudEvents",
            shared.discarded.clone(),
        );
        registry.register(
            "ferry_contract_generation",
            "Generation of the contract in force",
            shared.contract_generation.clone(),
        );
        registry.register(
            "ferry_contract_reload_errors",
            "Contract files that could not be read or parsed (the previous contract stayed in force)",
            shared.contract_errors.clone(),
        );
        registry.register_collector(Box::new(shared.producers.clone()));
        shared
    }

    /// Metrics that go nowhere, for code run outside a component.
    pub fn unregistered() -> Self {
        Shared::register(&mut Registry::default(), true)
    }

    /// The event type as series tell it apart: none when the operator
    /// turned `cloudevents_type` off.
    pub fn type_key<'a>(&self, ty: &'a str) -> &'a str {
        if self.event_type {
            ty
        } else {
            ""
        }
    }

    /// Adds `cloudevents_type`, unless the operator turned it off.
    pub fn with_event_type(&self, labels: &mut Labels, ty: &str) {
        if self.event_type {
            labels.push(("cloudevents_type", ty.to_owned()));
        }
    }

    pub fn dispatch_latency(&self, labels: &Labels) -> Histogram {
        self.dispatch_latency.get_or_create(labels).clone()
    }

    pub fn discarded(&self, labels: &Labels) {
        self.discarded.get_or_create(labels).inc();
    }

    /// The contract gauges of one component.
    pub fn contract(&self, component: &'static str) -> ContractMetrics {
        let labels = [("component", component)];
        ContractMetrics {
            generation: self.contract_generation.get_or_create(&labels).clone(),
            errors: self.contract_errors.get_or_create(&labels).clone(),
        }
    }

    /// Reports the depth of `pool`'s producer queues while it lives.
    pub fn watch_producers(&self, component: &'static str, pool: &Arc<ProducerPool>) {
        self.producers
            .pools
            .lock()
            .expect("producer queue list")
            .push((component, Arc::downgrade(pool)));
    }
}

/// What a contract follower reports.
#[derive(Clone, Debug, Default)]
pub struct ContractMetrics {
    pub generation: Gauge,
    pub errors: Counter,
}

/// `ferry_kafka_producer_queue_messages`, read from librdkafka at scrape
/// time rather than kept up to date on the write path.
#[derive(Default)]
struct ProducerQueues {
    pools: Mutex<Vec<(&'static str, Weak<ProducerPool>)>>,
}

impl fmt::Debug for ProducerQueues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProducerQueues")
    }
}

impl Collector for ProducerQueues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut depths: Vec<(&'static str, i64)> = Vec::new();
        {
            let mut pools = self.pools.lock().expect("producer queue list");
            pools.retain(|(_, pool)| pool.strong_count() > 0);
            for (component, pool) in pools.iter() {
                let Some(pool) = pool.upgrade() else { continue };
                match depths.iter_mut().find(|(c, _)| c == component) {
                    Some((_, depth)) => *depth += pool.queued(),
                    None => depths.push((component, pool.queued())),
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "ferry_kafka_producer_queue_messages",
            "Records handed to librdkafka and not yet acknowledged by Kafka",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (component, depth) in depths {
            let labels = [("component", component)];
            ConstGauge::new(depth).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The labels of a broker or channel, as the reference's receiver puts
/// them; a resource the contract does not name gets its uid.
pub fn resource_labels(reference: Option<&Reference>, uid: &str) -> Labels {
    match reference {
        Some(r) if r.kind == "Broker" => vec![
            ("kn_broker_namespace", r.namespace.clone()),
            ("kn_broker_name", r.name.clone()),
        ],
        Some(r) if r.kind == "KafkaChannel" || r.kind == "Channel" => vec![
            ("kn_kafkachannel_namespace", r.namespace.clone()),
            ("kn_kafkachannel_name", r.name.clone()),
        ],
        // The reference's `kn.<kind>.name` tags.
        Some(r) if r.kind == "KafkaSink" => vec![
            ("kn_kafkasink_namespace", r.namespace.clone()),
            ("kn_kafkasink_name", r.name.clone()),
        ],
        _ => vec![("kn_resource_uid", uid.to_owned())],
    }
}

/// The labels of a trigger or subscription, with the name of the broker or
/// channel it reads (the reference's dispatcher uses `kn_trigger_*`).
pub fn egress_labels(
    egress: Option<&Reference>,
    resource: Option<&Reference>,
    key: &str,
) -> Labels {
    let mut labels = match egress {
        Some(r) if r.kind == "Subscription" => vec![
            ("kn_subscription_namespace", r.namespace.clone()),
            ("kn_subscription_name", r.name.clone()),
        ],
        Some(r) if r.kind == "KafkaSource" => vec![
            ("kn_kafkasource_namespace", r.namespace.clone()),
            ("kn_kafkasource_name", r.name.clone()),
        ],
        Some(r) if !r.name.is_empty() => vec![
            ("kn_trigger_namespace", r.namespace.clone()),
            ("kn_trigger_name", r.name.clone()),
        ],
        _ => vec![("kn_egress_uid", key.to_owned())],
    };
    match resource {
        Some(r) if r.kind == "Broker" => labels.push(("kn_broker_name", r.name.clone())),
        Some(r) if r.kind == "KafkaChannel" || r.kind == "Channel" => {
            labels.push(("kn_kafkachannel_name", r.name.clone()))
        }
        _ => {}
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: &str, name: &str) -> Reference {
        Reference {
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn labels_name_the_knative_objects() {
        let broker = reference("Broker", "b");
        let channel = reference("KafkaChannel", "c");
        assert_eq!(
            resource_labels(Some(&broker), "u"),
            [
                ("kn_broker_namespace", "ns".into()),
                ("kn_broker_name", "b".into())
            ]
        );
        assert_eq!(
            resource_labels(None, "u"),
            [("kn_resource_uid", "u".to_owned())]
        );
        assert_eq!(
            egress_labels(Some(&reference("Trigger", "t")), Some(&broker), "k"),
            [
                ("kn_trigger_namespace", "ns".into()),
                ("kn_trigger_name", "t".into()),
                ("kn_broker_name", "b".into())
            ]
        );
        assert_eq!(
            egress_labels(Some(&reference("Subscription", "s")), Some(&channel), "k"),
            [
                ("kn_subscription_namespace", "ns".into()),
                ("kn_subscription_name", "s".into()),
                ("kn_kafkachannel_name", "c".into())
            ]
        );
        assert_eq!(
            egress_labels(None, None, "k"),
            [("kn_egress_uid", "k".to_owned())]
        );
        let source = reference("KafkaSource", "src");
        assert_eq!(
            egress_labels(Some(&source), Some(&source), "k"),
            [
                ("kn_kafkasource_namespace", "ns".into()),
                ("kn_kafkasource_name", "src".into())
            ]
        );
        assert_eq!(
            resource_labels(Some(&reference("KafkaSink", "s")), "u"),
            [
                ("kn_kafkasink_namespace", "ns".into()),
                ("kn_kafkasink_name", "s".into())
            ]
        );
    }

    #[test]
    fn the_event_type_label_can_be_switched_off() {
        let (on, off) = (Shared::unregistered(), {
            Shared::register(&mut Registry::default(), false)
        });
        let (mut a, mut b) = (Labels::new(), Labels::new());
        on.with_event_type(&mut a, "t");
        off.with_event_type(&mut b, "t");
        assert_eq!((a.len(), b.len()), (1, 0));
    }

    #[test]
    fn shared_series_are_encoded_once_per_registry() {
        let mut registry = Registry::default();
        let shared = Shared::register(&mut registry, true);
        shared.contract("receiver").generation.set(7);
        shared.contract("dispatcher").errors.inc();
        shared.discarded(&vec![("kn_broker_name", "b".into())]);
        // The receiver's and the dispatcher's series share one family.
        shared
            .dispatch_latency(&vec![("kn_broker_name", "b".into())])
            .observe(1.0);
        shared
            .dispatch_latency(&vec![("kn_trigger_name", "t".into())])
            .observe(1.0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("ferry_contract_generation{component=\"receiver\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("ferry_contract_reload_errors_total{component=\"dispatcher\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kn_eventing_kafka_discarded_events_total{kn_broker_name=\"b\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE kn_eventing_dispatch_latency_ms histogram")
                .count(),
            1
        );
    }

    #[test]
    fn series_by_answer_are_made_once_each() {
        let by_answer = ByAnswer::<u32>::default();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            made.get()
        };
        assert_eq!(by_answer.get(Some(202), "a", make), 1);
        assert_eq!(by_answer.get(Some(202), "a", make), 1, "found, not made");
        assert_eq!(by_answer.get(Some(202), "b", make), 2, "another type");
        assert_eq!(by_answer.get(Some(500), "a", make), 3, "another answer");
        assert_eq!(by_answer.get(None, "a", make), 4, "no answer");
        assert_eq!(made.get(), 4);
    }

    #[test]
    fn without_type_labels_every_type_is_one_series() {
        let shared = Shared::register(&mut Registry::default(), false);
        assert_eq!(shared.type_key("dev.example.a"), "");
        let shared = Shared::unregistered();
        assert_eq!(shared.type_key("dev.example.a"), "dev.example.a");
    }
}
