//! Flag groups more than one subcommand takes.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use ferry_common::{
    kafka::{KafkaConfigError, Overrides},
    secrets::Secrets,
    shutdown::Shutdown,
};
use ferry_registry::{Recorder, Store};

#[derive(clap::Args)]
pub struct KafkaArgs {
    /// Kafka for resources that name no cluster.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "")]
    pub bootstrap_servers: String,

    /// A librdkafka properties file (key=value lines) applied over Ferry's
    /// defaults; FERRY_RDKAFKA_* environment variables apply over it
    /// (FERRY_RDKAFKA_LINGER_MS=5 sets linger.ms=5).
    #[arg(long, env = "FERRY_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
}

impl KafkaArgs {
    pub fn overrides(&self) -> Result<Overrides, KafkaConfigError> {
        Overrides::load(self.kafka_config.as_deref(), std::env::vars())
    }
}

#[derive(clap::Args)]
pub struct ContractArgs {
    /// The contract file (protobuf JSON or binary), followed for changes.
    #[arg(long, env = "FERRY_CONTRACT")]
    pub contract: PathBuf,

    /// How often the contract file is re-read without a change event
    /// (milliseconds).
    #[arg(long, env = "FERRY_CONTRACT_POLL_MS", default_value_t = 5000)]
    pub contract_poll_ms: u64,
}

impl ContractArgs {
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.contract_poll_ms)
    }
}

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Whether per-event metrics carry the `cloudevents_type` label; turn it
    /// off when producers send so many types that series multiply.
    #[arg(long, env = "FERRY_METRICS_EVENT_TYPE", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_event_type: bool,
}

/// What every data-plane component is configured from, whichever command
/// runs it.
pub struct DataPlane {
    pub contract: PathBuf,
    pub contract_poll: Duration,
    pub admin: SocketAddr,
    pub bootstrap: String,
    pub overrides: Overrides,
    /// Where Secrets named for Kafka credentials are read.
    pub secrets: Secrets,
    pub metrics_event_type: bool,
    /// Where EventTypes of resources that ask for them are made.
    pub event_types: Option<Arc<Recorder>>,
}

/// The flags `ferry receiver` and `ferry dispatcher` share.
#[derive(clap::Args)]
pub struct DataPlaneArgs {
    #[command(flatten)]
    contract: ContractArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    metrics: MetricsArgs,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "FERRY_ADMIN", default_value = "0.0.0.0:9090")]
    admin: SocketAddr,

    /// Where EventTypes are made for resources whose contract entry asks
    /// for them (featureFlags.enableEventTypeAutocreate): `none`, `kube`
    /// (the Kubernetes API, in-cluster or KUBECONFIG), or a folder.
    #[arg(long, env = "FERRY_EVENTTYPE_STORE", default_value = "none")]
    eventtype_store: String,

    /// Where the Secrets that resources name for their Kafka credentials
    /// (a KafkaSink's auth.secret.ref, a KafkaSource's net) are read:
    /// `none`, `kube` (the Kubernetes API, in-cluster or KUBECONFIG), or a
    /// folder of YAML holding `v1` Secrets.
    #[arg(long, env = "FERRY_SECRETS", default_value = "none")]
    secrets: String,
}

impl DataPlaneArgs {
    pub async fn plane(&self, shutdown: &Shutdown) -> anyhow::Result<DataPlane> {
        let store = match self.eventtype_store.as_str() {
            "none" | "" => None,
            "kube" => {
                let client = kube::Client::try_default()
                    .await
                    .context("--eventtype-store kube: cannot reach the Kubernetes API")?;
                Some(Store::Kube(client))
            }
            folder => Some(Store::Folder(folder.into())),
        };
        Ok(DataPlane {
            contract: self.contract.contract.clone(),
            contract_poll: self.contract.poll(),
            admin: self.admin,
            bootstrap: self.kafka.bootstrap_servers.clone(),
            overrides: self.kafka.overrides()?,
            secrets: Secrets::from_flag(&self.secrets)
                .await
                .map_err(anyhow::Error::msg)?,
            metrics_event_type: self.metrics.metrics_event_type,
            event_types: store.map(|s| Recorder::spawn(s, shutdown.clone())),
        })
    }
}
