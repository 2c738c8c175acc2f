//! Flags every data-plane component takes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ferry_common::kafka::{KafkaConfigError, Overrides};

#[derive(clap::Args)]
pub struct DataPlaneArgs {
    /// The contract file (protobuf JSON or binary), followed for changes.
    #[arg(long, env = "FERRY_CONTRACT")]
    pub contract: PathBuf,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "FERRY_ADMIN", default_value = "0.0.0.0:9090")]
    pub admin: SocketAddr,

    /// Kafka for resources whose contract entry names no cluster.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "")]
    pub bootstrap_servers: String,

    /// A librdkafka properties file (key=value lines) applied over Ferry's
    /// defaults; FERRY_RDKAFKA_* environment variables apply over it
    /// (FERRY_RDKAFKA_LINGER_MS=5 sets linger.ms=5).
    #[arg(long, env = "FERRY_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,

    /// How often the contract file is re-read without a change event
    /// (milliseconds).
    #[arg(long, env = "FERRY_CONTRACT_POLL_MS", default_value_t = 5000)]
    pub contract_poll_ms: u64,
}

impl DataPlaneArgs {
    pub fn kafka_overrides(&self) -> Result<Overrides, KafkaConfigError> {
        Overrides::load(self.kafka_config.as_deref(), std::env::vars())
    }

    pub fn contract_poll(&self) -> Duration {
        Duration::from_millis(self.contract_poll_ms)
    }
}
