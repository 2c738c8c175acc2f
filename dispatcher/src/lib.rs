//! Ferry's dispatcher: delivers each broker's (or channel's) events to every
//! egress (Trigger or Subscription) whose filter matches, and a
//! KafkaSource's records to its sink, at least once, with Knative's
//! delivery semantics.
//!
//! - [`egress`]: the contract → what each egress does (pure).
//! - [`reader`]: the delivery loop, one per topic for all of its egresses:
//!   fetch → offer to each egress → filter → send with retries → reply or
//!   dead letter → finish → commit each egress's position to its own group.
//! - The steps it calls: [`deliver`] (send, reply, dead letter over
//!   [`send`]), [`positions`] (read, pin and commit group positions),
//!   [`rebalance`] (assignment and revocation), [`laggards`] and
//!   [`catch_up`] (an egress that fell behind reads for itself), `lag`.
//! - The pure decisions underneath, with no consumer, metrics or I/O:
//!   [`lanes`], [`filter`], [`retry`], [`offsets`], [`gap`], and [`plain`]
//!   (a KafkaSource's record that is not a CloudEvent, made into one).

pub mod catch_up;
pub mod deliver;
pub mod egress;
/// Trigger filters live in `ferry-filter`, shared with EventPolicies.
pub use ferry_filter as filter;
pub mod gap;
mod lag;
pub mod laggards;
pub mod lanes;
mod metrics;
pub mod observed;
pub mod offsets;
pub mod plain;
pub mod positions;
pub mod reader;
pub mod rebalance;
mod record;
pub mod report;
pub mod retry;
pub mod send;
mod state;
pub mod tokens;
pub mod trust;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_common::{
    admin::OwnAdmin,
    contract::{self, ContractRx},
    group_offsets::GroupOffsets,
    kafka::{Cluster, ProducerSettings},
    metrics::Shared,
    producer::ProducerPool,
    secrets::Secrets,
    shutdown::Shutdown,
    StartError,
};
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    deliver::Deliverer, egress::EgressSpec, metrics::Metrics, observed::ObservedEgresses,
    reader::Wanted,
};

/// Everything the dispatcher needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub admin: SocketAddr,
    pub contract: PathBuf,
    pub contract_poll: Duration,
    pub defaults: egress::Defaults,
    /// Where the Secrets that resources name for their Kafka credentials
    /// are read.
    pub secrets: Secrets,
    /// Where tokens for destinations that require one come from.
    pub tokens: tokens::Source,
    pub consumers: reader::Settings,
    /// For replies written back to a broker's topic.
    pub producer: ProducerSettings,
    /// Whether metrics carry the `cloudevents_type` label.
    pub metrics_event_type: bool,
    /// Records the pairs of replies written to resources that make
    /// EventTypes.
    pub event_types: Option<Arc<ferry_registry::Recorder>>,
}

pub use ferry_common::admin::Running;

pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), StartError> {
    start(config, shutdown).await?.join().await;
    Ok(())
}

/// Starts dispatching with an admin server of its own.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    let mut own = OwnAdmin::bind(config.admin, config.metrics_event_type).await?;
    let embedded = start_embedded(config, shutdown.clone(), &mut own.registry, &own.shared)?;
    let ready = embedded.ready.clone();
    Ok(own.serve(embedded.task, Arc::new(move || ready.is_ready()), shutdown))
}

/// A dispatcher inside a larger process: its metrics go to the process's
/// registry and the process serves the admin port.
pub struct Embedded {
    pub ready: Arc<Readiness>,
    /// Each egress's lag and last delivery.
    pub observed: Arc<ObservedEgresses>,
    pub task: JoinHandle<()>,
}

/// Starts dispatching without an admin server of its own; `shared` are the
/// process's metrics both data-plane components report into.
pub fn start_embedded(
    config: Config,
    shutdown: Shutdown,
    registry: &mut Registry,
    shared: &Shared,
) -> Result<Embedded, StartError> {
    let producers = Arc::new(ProducerPool::new(config.producer.clone()));
    shared.watch_producers("dispatcher", &producers);
    let observed = Arc::new(ObservedEgresses::default());
    let deliverer = Arc::new(Deliverer {
        clients: trust::Clients::new(),
        tokens: tokens::Tokens::new(config.tokens.clone()),
        producers,
        metrics: Metrics::new(registry, shared),
        observed: observed.clone(),
        event_types: config.event_types.clone(),
    });
    let contracts = contract::follow(
        config.contract.clone(),
        config.contract_poll,
        shutdown.clone(),
        shared.contract("dispatcher"),
    )?;
    let ready = Arc::new(Readiness::default());
    let supervisor = Supervisor {
        defaults: config.defaults.clone(),
        secrets: config.secrets.clone(),
        settings: Arc::new(config.consumers.clone()),
        deliverer,
        offsets: HashMap::new(),
        readers: HashMap::new(),
        started: HashMap::new(),
    };
    tracing::info!(contract = %config.contract.display(), "dispatcher started");
    let task = {
        let ready = ready.clone();
        tokio::spawn(async move {
            supervisor.run(contracts, ready, shutdown).await;
            tracing::info!("dispatcher stopped");
        })
    };
    Ok(Embedded {
        ready,
        observed,
        task,
    })
}

/// Keeps one reader per topic of the contract in force, each running
/// that topic's egresses.
struct Supervisor {
    defaults: egress::Defaults,
    secrets: Secrets,
    settings: Arc<reader::Settings>,
    deliverer: Arc<Deliverer>,
    /// One offsets client per cluster, shared by its readers.
    offsets: HashMap<Cluster, GroupOffsets>,
    readers: HashMap<(Cluster, String), RunningReader>,
    /// Each egress's readiness flag, kept while its spec is unchanged.
    started: HashMap<String, (Arc<EgressSpec>, Arc<AtomicBool>)>,
}

struct RunningReader {
    wanted: watch::Sender<Vec<Wanted>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The egresses' start flags by their object's kind and `namespace/name`.
type StartedByObject = HashMap<(String, String), Vec<Arc<AtomicBool>>>;

/// Ready once a contract is loaded and every egress in it has started, so
/// an event accepted from then on reaches every trigger.
#[derive(Default)]
pub struct Readiness {
    loaded: AtomicBool,
    /// The generation of the contract applied last.
    generation: AtomicU64,
    /// Each egress's flag (set once its start is pinned), by its object's
    /// kind and `namespace/name`: a KafkaSource of several topics has an
    /// egress on each.
    started: std::sync::Mutex<StartedByObject>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self
                .started
                .lock()
                .expect("readiness lock")
                .values()
                .flatten()
                .all(|s| s.load(Ordering::Acquire))
    }

    /// The generation of the contract whose egresses [`Self::started`]
    /// answers for.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The contract of `generation` is applied, with these egresses'
    /// flags by their object.
    fn applied(
        &self,
        generation: u64,
        flags: impl IntoIterator<Item = ((String, String), Arc<AtomicBool>)>,
    ) {
        let mut started = StartedByObject::new();
        for (object, flag) in flags {
            started.entry(object).or_default().push(flag);
        }
        *self.started.lock().expect("readiness lock") = started;
        self.generation.store(generation, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether the egresses of object `kind` `namespace/name` have pinned
    /// their start, so that an event accepted from now on reaches them;
    /// `None` when the contract applied has no such egress.
    pub fn started(&self, kind: &str, name: &str) -> Option<bool> {
        let started = self.started.lock().expect("readiness lock");
        started
            .get(&(kind.to_owned(), name.to_owned()))
            .map(|flags| flags.iter().all(|s| s.load(Ordering::Acquire)))
    }
}

impl Supervisor {
    async fn run(mut self, mut contracts: ContractRx, ready: Arc<Readiness>, shutdown: Shutdown) {
        while let Some(contract) = contract::next(&mut contracts, &shutdown).await {
            self.apply(&contract).await;
            ready.applied(
                contract.generation,
                (self.started.values())
                    .map(|(spec, flag)| ((spec.kind.clone(), spec.name.clone()), flag.clone())),
            );
        }
        let all: Vec<_> = self.readers.keys().cloned().collect();
        self.stop(all).await;
    }

    /// Hands each topic's reader its egresses (starting readers for new
    /// topics), and stops the readers of topics no egress reads any more.
    async fn apply(&mut self, contract: &ferry_proto::Contract) {
        self.deliverer
            .clients
            .set_trust_bundles(&contract.trust_bundles);
        let credentials = self.secrets.resolve(contract::secret_auths(contract)).await;
        let (specs, rejected) = egress::resolve(contract, &self.defaults, &credentials);
        for r in rejected {
            tracing::error!(egress = %r.key, reason = %r.reason, "egress not dispatched");
        }
        let mut by_topic: HashMap<(Cluster, String), Vec<Wanted>> = HashMap::new();
        let mut started = HashMap::new();
        for spec in specs {
            let flag = match self.started.remove(&spec.key) {
                Some((old, flag)) if *old == spec => flag,
                _ => Arc::new(AtomicBool::new(false)),
            };
            let spec = Arc::new(spec);
            started.insert(spec.key.clone(), (spec.clone(), flag.clone()));
            by_topic
                .entry((spec.cluster.clone(), spec.topic.clone()))
                .or_default()
                .push(Wanted {
                    spec,
                    started: flag,
                });
        }
        self.started = started;
        let gone: Vec<_> = self
            .readers
            .keys()
            .filter(|t| !by_topic.contains_key(*t))
            .cloned()
            .collect();
        self.stop(gone).await;
        for ((cluster, topic), wanted) in by_topic {
            if let Some(reader) = self.readers.get(&(cluster.clone(), topic.clone())) {
                reader.wanted.send_replace(wanted);
                continue;
            }
            let offsets = match self.offsets_for(&cluster) {
                Ok(offsets) => offsets,
                Err(error) => {
                    tracing::error!(%cluster, %topic, %error, "cannot reach the cluster; the topic's egresses are not dispatched");
                    continue;
                }
            };
            let reader_topic = positions::Topic {
                name: topic.clone(),
                cluster: cluster.clone(),
                offsets,
            };
            let (tx, rx) = watch::channel(wanted);
            let stop = CancellationToken::new();
            let task = tokio::spawn(reader::run(
                reader_topic,
                self.deliverer.clone(),
                self.settings.clone(),
                rx,
                stop.clone(),
            ));
            self.readers.insert(
                (cluster, topic),
                RunningReader {
                    wanted: tx,
                    stop,
                    task,
                },
            );
        }
    }

    fn offsets_for(
        &mut self,
        cluster: &Cluster,
    ) -> Result<GroupOffsets, rdkafka::error::KafkaError> {
        if let Some(offsets) = self.offsets.get(cluster) {
            return Ok(offsets.clone());
        }
        let offsets = GroupOffsets::new(&self.settings.consumer.admin_config(cluster))?;
        self.offsets.insert(cluster.clone(), offsets.clone());
        Ok(offsets)
    }

    async fn stop(&mut self, topics: Vec<(Cluster, String)>) {
        let stopping: Vec<_> = topics
            .iter()
            .filter_map(|t| self.readers.remove(t))
            .collect();
        for reader in &stopping {
            reader.stop.cancel();
        }
        for reader in stopping {
            let _ = reader.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KafkaSource of two topics has an egress on each: it has started
    /// once both have, and readiness waits for both.
    #[test]
    fn an_object_has_started_once_all_its_egresses_have() {
        let ready = Readiness::default();
        let (first, second) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let source = || ("KafkaSource".to_owned(), "ns/source".to_owned());
        ready.applied(7, [(source(), second.clone()), (source(), first)]);
        assert_eq!(ready.generation(), 7);
        assert_eq!(ready.started("KafkaSource", "ns/source"), Some(false));
        assert!(!ready.is_ready());
        second.store(true, Ordering::Release);
        assert_eq!(ready.started("KafkaSource", "ns/source"), Some(true));
        assert!(ready.is_ready());
        assert_eq!(ready.started("Trigger", "ns/source"), None);
    }
}
