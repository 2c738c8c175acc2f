//! `ferry receiver`

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use ferry_common::{
    kafka::{Overrides, ProducerSettings},
    shutdown::Shutdown,
};

#[derive(clap::Args)]
pub struct Args {
    /// The contract file (protobuf JSON or binary), followed for changes.
    #[arg(long, env = "FERRY_CONTRACT")]
    contract: PathBuf,

    /// Where producers post events.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "FERRY_ADMIN", default_value = "0.0.0.0:9090")]
    admin: SocketAddr,

    /// Kafka for resources whose contract entry names no cluster.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "")]
    bootstrap_servers: String,

    /// The largest request body; larger ones get 413. Kafka's
    /// message.max.bytes follows it.
    #[arg(long, env = "FERRY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,

    /// How long Kafka may take to acknowledge a write before the request
    /// gets 503 (milliseconds).
    #[arg(long, env = "FERRY_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    produce_timeout_ms: u64,

    /// A librdkafka properties file (key=value lines) applied over Ferry's
    /// defaults; FERRY_RDKAFKA_* environment variables apply over it
    /// (FERRY_RDKAFKA_LINGER_MS=5 sets linger.ms=5).
    #[arg(long, env = "FERRY_KAFKA_CONFIG")]
    kafka_config: Option<PathBuf>,

    /// How often the contract file is re-read without a change event
    /// (milliseconds).
    #[arg(long, env = "FERRY_CONTRACT_POLL_MS", default_value_t = 5000)]
    contract_poll_ms: u64,
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let overrides = Overrides::load(args.kafka_config.as_deref(), std::env::vars())?;
    let config = ferry_receiver::Config {
        listen: args.listen,
        admin: args.admin,
        contract: args.contract,
        contract_poll: Duration::from_millis(args.contract_poll_ms),
        default_bootstrap: args.bootstrap_servers,
        max_body_bytes: args.max_body_bytes,
        producer: ProducerSettings {
            timeout: Duration::from_millis(args.produce_timeout_ms),
            max_message_bytes: args.max_body_bytes,
            overrides,
        },
    };
    ferry_receiver::run(config, shutdown)
        .await
        .context("receiver failed")
}
