//! Ferry's HTTP ingress: CloudEvents posted to a broker's or channel's
//! address are validated and written to its Kafka topic; the answer is 202
//! only once Kafka acknowledged the write.
//!
//! A request goes through [`ingress`]: route (by the contract's path or
//! host, [`routes`]) → decode and validate (`ferry_event`) →
//! produce (`ferry_common::producer`) → respond ([`error`] holds every
//! failure's status code).

pub mod error;
pub mod ingress;
mod metrics;
mod readiness;
pub mod routes;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use ferry_auth::{Issuer, IssuerConfig, Verifier};
use ferry_common::{
    admin::{self, OwnAdmin},
    contract::{self, ContractRx},
    kafka::ProducerSettings,
    metrics::Shared,
    producer::ProducerPool,
    secrets::Secrets,
    server,
    shutdown::Shutdown,
    tls::{self, TlsFiles, TransportEncryption},
    StartError,
};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::{ingress::Ingress, metrics::Metrics, routes::Routes};

/// Everything the receiver needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub contract: PathBuf,
    /// How often the contract file is re-read even without a change event.
    pub contract_poll: Duration,
    /// Used for resources whose contract entry names no cluster.
    pub default_bootstrap: String,
    /// Where the Secrets that resources name for their Kafka credentials
    /// are read.
    pub secrets: Secrets,
    pub max_body_bytes: usize,
    pub producer: ProducerSettings,
    /// Whether metrics carry the `cloudevents_type` label.
    pub metrics_event_type: bool,
    /// Records the pairs of resources that make EventTypes; `None`: this
    /// receiver makes none.
    pub event_types: Option<Arc<ferry_registry::Recorder>>,
    /// Shows the latest events to whoever watches (standalone's admin).
    pub tail: Option<Arc<ferry_common::tail::Tail>>,
    /// HTTPS beside HTTP, when transport encryption is on.
    pub tls: Option<TlsIngress>,
    /// The OpenID issuer whose tokens senders present, for resources with
    /// an audience.
    pub oidc: Option<IssuerConfig>,
}

/// The HTTPS ingress: where, with which certificate, and whether plain
/// HTTP still takes events.
#[derive(Clone, Debug)]
pub struct TlsIngress {
    pub listen: SocketAddr,
    pub files: TlsFiles,
    pub mode: TransportEncryption,
}

/// How often the certificate files are re-read without a change event.
const CERT_POLL: Duration = Duration::from_secs(10);

/// A started receiver: its ingress address, and the admin server's.
pub struct Running {
    pub ingress: SocketAddr,
    /// The HTTPS ingress, when there is one.
    pub tls_ingress: Option<SocketAddr>,
    pub admin: SocketAddr,
    running: admin::Running,
}

impl Running {
    /// Waits until the receiver has shut down.
    pub async fn join(self) {
        self.running.join().await;
    }
}

/// Runs the receiver until shutdown.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), StartError> {
    start(config, shutdown).await?.join().await;
    Ok(())
}

/// Binds the sockets and starts serving; returns the bound addresses.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, StartError> {
    let mut own = OwnAdmin::bind(config.admin, config.metrics_event_type).await?;
    let embedded = start_embedded(config, shutdown.clone(), &mut own.registry, &own.shared).await?;
    let ready = embedded.ready.clone();
    let running = own.serve(
        embedded.task,
        Arc::new(move || ready.load(Ordering::Acquire)),
        shutdown,
    );
    Ok(Running {
        ingress: embedded.ingress,
        tls_ingress: embedded.tls_ingress,
        admin: running.admin,
        running,
    })
}

/// A receiver inside a larger process: its metrics go to the process's
/// registry and the process serves the admin port.
pub struct Embedded {
    pub ingress: SocketAddr,
    pub tls_ingress: Option<SocketAddr>,
    pub ready: Arc<AtomicBool>,
    /// What it serves: a process that reports statuses can hold a
    /// resource's Ready until its route is served.
    pub served: Served,
    pub task: JoinHandle<()>,
}

/// The routing table in force, read by whoever needs to know which
/// contract generation the ingress serves.
#[derive(Clone)]
pub struct Served(Arc<ArcSwap<Routes>>);

impl Served {
    /// The generation of the contract whose routes are served.
    pub fn generation(&self) -> u64 {
        self.0.load().generation()
    }
}

/// Starts the ingress without an admin server of its own; `shared` are
/// the process's metrics both data-plane components report into.
pub async fn start_embedded(
    config: Config,
    shutdown: Shutdown,
    registry: &mut Registry,
    shared: &Shared,
) -> Result<Embedded, StartError> {
    let listener = server::bind(config.listen).await?;
    let addr = listener.local_addr().expect("bound");
    let verifier = match &config.oidc {
        Some(issuer) => Some(Verifier::new(
            Issuer::new(issuer.clone()).map_err(StartError::Oidc)?,
        )),
        None => None,
    };
    // The certificate is loaded before anything is served: HTTPS that
    // cannot present one must stop the start, not fall back to HTTP.
    let tls = match &config.tls {
        Some(t) => {
            let reloading = tls::Reloading::start(t.files.clone(), CERT_POLL, shutdown.clone())?;
            Some((server::bind(t.listen).await?, reloading))
        }
        None => None,
    };
    let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr().expect("bound"));
    let metrics = Metrics::new(registry, shared);
    let ready = Arc::new(AtomicBool::new(false));
    let routes = Arc::new(ArcSwap::from_pointee(Routes::default()));
    let producers = Arc::new(ProducerPool::new(config.producer.clone()));
    shared.watch_producers("receiver", &producers);
    let contracts = contract::follow(
        config.contract.clone(),
        config.contract_poll,
        shutdown.clone(),
        shared.contract("receiver"),
    )?;
    let apply = tokio::spawn(apply_contracts(
        contracts,
        config.default_bootstrap.clone(),
        config.secrets.clone(),
        routes.clone(),
        producers.clone(),
        ready.clone(),
        shutdown.clone(),
    ));
    let served = Served(routes.clone());
    let ingress = Arc::new(Ingress {
        routes,
        producers,
        max_body_bytes: config.max_body_bytes,
        ready: ready.clone(),
        metrics,
        event_types: config.event_types.clone(),
        tail: config.tail.clone(),
        https_only: config
            .tls
            .as_ref()
            .is_some_and(|t| t.mode == TransportEncryption::Strict),
        verifier,
    });
    tracing::info!(ingress = %addr, https = ?tls_addr, contract = %config.contract.display(), "receiver started");
    let task = tokio::spawn(async move {
        match tls {
            Some((tls_listener, reloading)) => {
                tokio::join!(
                    server::serve(listener, ingress.clone(), shutdown.clone()),
                    server::serve_tls(
                        tls_listener,
                        reloading.acceptor().clone(),
                        ingress,
                        shutdown
                    ),
                );
            }
            None => server::serve(listener, ingress, shutdown).await,
        }
        apply.abort();
        tracing::info!("receiver stopped");
    });
    Ok(Embedded {
        ingress: addr,
        tls_ingress: tls_addr,
        ready,
        served,
        task,
    })
}

/// Swaps in a routing table for every new contract, and keeps readiness.
async fn apply_contracts(
    mut contracts: ContractRx,
    default_bootstrap: String,
    secrets: Secrets,
    routes: Arc<ArcSwap<Routes>>,
    producers: Arc<ProducerPool>,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) {
    let mut readiness: Option<JoinHandle<()>> = None;
    while let Some(contract) = contract::next(&mut contracts, &shutdown).await {
        let credentials = secrets.resolve(contract::secret_auths(&contract)).await;
        let (table, rejected) = Routes::build(&contract, &default_bootstrap, &credentials);
        for r in rejected {
            tracing::error!(resource = %r.uid, reason = %r.reason, "resource not served");
        }
        for r in table.iter() {
            if let Err(reason) = &r.cluster {
                tracing::error!(resource = %r.name, %reason, "Kafka credentials unavailable; requests get 503");
            }
        }
        let table = Arc::new(table);
        producers.retain(|cluster| table.iter().any(|r| r.cluster.as_ref() == Ok(cluster)));
        routes.store(table.clone());
        if let Some(previous) = readiness.take() {
            previous.abort();
        }
        readiness = Some(tokio::spawn(readiness::check(
            table,
            producers.clone(),
            ready.clone(),
        )));
    }
}
