//! Ferry's dispatcher: delivers each broker's (or channel's) events to every
//! egress (Trigger or Subscription) whose filter matches, at least once,
//! with Knative's delivery semantics.
//!
//! - [`egress`]: the contract → what each egress does (pure).
//! - [`consumer`]: one consumer group per egress: fetch → deliver → commit.
//! - [`deliver`]: one event: filter → send with retries → reply → dead letter.
//! - [`filter`], [`retry`], [`offsets`]: the pure decisions underneath.

pub mod consumer;
pub mod deliver;
pub mod egress;
pub mod filter;
mod metrics;
pub mod offsets;
pub mod retry;
pub mod send;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_common::{
    admin::Admin,
    contract::{self, ContractRx},
    kafka::ProducerSettings,
    producer::ProducerPool,
    server,
    shutdown::Shutdown,
    StartError,
};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{deliver::Deliverer, egress::EgressSpec, metrics::Metrics};

/// Everything the dispatcher needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub admin: SocketAddr,
    pub contract: PathBuf,
    pub contract_poll: Duration,
    pub defaults: egress::Defaults,
    pub consumers: consumer::Settings,
    /// For replies written back to a broker's topic.
    pub producer: ProducerSettings,
}

/// A started dispatcher.
pub struct Running {
    pub admin: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), StartError> {
    start(config, shutdown).await?.join().await;
    Ok(())
}

pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    let admin_listener = server::bind(config.admin).await?;
    let admin_addr = admin_listener.local_addr().expect("bound");
    let mut registry = Registry::default();
    let embedded = start_embedded(config, shutdown.clone(), &mut registry)?;
    let ready = embedded.ready.clone();
    let admin = Admin::new(registry, Arc::new(move || ready.is_ready()));
    let task = tokio::spawn(async move {
        let _ = tokio::join!(embedded.task, admin.serve(admin_listener, shutdown));
    });
    Ok(Running {
        admin: admin_addr,
        task,
    })
}

/// A dispatcher inside a larger process: its metrics go to the process's
/// registry and the process serves the admin port.
pub struct Embedded {
    pub ready: Arc<Readiness>,
    pub task: JoinHandle<()>,
}

/// Starts dispatching without an admin server of its own.
pub fn start_embedded(
    config: Config,
    shutdown: Shutdown,
    registry: &mut Registry,
) -> Result<Embedded, StartError> {
    let deliverer = Arc::new(Deliverer {
        client: send::client(),
        producers: Arc::new(ProducerPool::new(config.producer.clone())),
        metrics: Metrics::new(registry),
    });
    let contracts = contract::follow(
        config.contract.clone(),
        config.contract_poll,
        shutdown.clone(),
    )?;
    let ready = Arc::new(Readiness::default());
    let supervisor = Supervisor {
        defaults: config.defaults.clone(),
        settings: Arc::new(config.consumers.clone()),
        deliverer,
        running: HashMap::new(),
    };
    tracing::info!(contract = %config.contract.display(), "dispatcher started");
    let task = {
        let ready = ready.clone();
        tokio::spawn(async move {
            supervisor.run(contracts, ready, shutdown).await;
            tracing::info!("dispatcher stopped");
        })
    };
    Ok(Embedded { ready, task })
}

/// Keeps one running consumer per egress of the contract in force.
struct Supervisor {
    defaults: egress::Defaults,
    settings: Arc<consumer::Settings>,
    deliverer: Arc<Deliverer>,
    running: HashMap<String, RunningEgress>,
}

struct RunningEgress {
    spec: Arc<EgressSpec>,
    stop: CancellationToken,
    /// Set once its start positions are pinned and it subscribed.
    started: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Ready once a contract is loaded and every egress in it has started, so
/// an event accepted from then on reaches every trigger.
#[derive(Default)]
pub struct Readiness {
    loaded: AtomicBool,
    started: std::sync::Mutex<Vec<Arc<AtomicBool>>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self
                .started
                .lock()
                .expect("readiness lock")
                .iter()
                .all(|s| s.load(Ordering::Acquire))
    }
}

impl Supervisor {
    async fn run(mut self, mut contracts: ContractRx, ready: Arc<Readiness>, shutdown: Shutdown) {
        loop {
            let contract = contracts.borrow_and_update().clone();
            if let Some(contract) = contract {
                self.apply(&contract).await;
                *ready.started.lock().expect("readiness lock") =
                    self.running.values().map(|r| r.started.clone()).collect();
                ready.loaded.store(true, Ordering::Release);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = contracts.changed() => if changed.is_err() { break },
            }
        }
        let all: Vec<String> = self.running.keys().cloned().collect();
        self.stop(all).await;
    }

    /// Stops removed and changed egresses (waiting for them to commit), then
    /// starts new and changed ones; the others are not touched.
    async fn apply(&mut self, contract: &ferry_proto::Contract) {
        let (specs, rejected) = egress::resolve(contract, &self.defaults);
        for r in rejected {
            tracing::error!(egress = %r.key, reason = %r.reason, "egress not dispatched");
        }
        let wanted: HashMap<String, EgressSpec> =
            specs.into_iter().map(|s| (s.key.clone(), s)).collect();
        let outdated: Vec<String> = self
            .running
            .iter()
            .filter(|(key, r)| wanted.get(*key).is_none_or(|spec| *spec != *r.spec))
            .map(|(key, _)| key.clone())
            .collect();
        self.stop(outdated).await;
        for (key, spec) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let spec = Arc::new(spec);
            let stop = CancellationToken::new();
            let started = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(consumer::run(
                spec.clone(),
                self.deliverer.clone(),
                self.settings.clone(),
                stop.clone(),
                started.clone(),
            ));
            self.running.insert(
                key,
                RunningEgress {
                    spec,
                    stop,
                    started,
                    task,
                },
            );
        }
    }

    async fn stop(&mut self, keys: Vec<String>) {
        let stopping: Vec<_> = keys.iter().filter_map(|k| self.running.remove(k)).collect();
        for egress in &stopping {
            egress.stop.cancel();
        }
        for egress in stopping {
            let _ = egress.task.await;
        }
    }
}
