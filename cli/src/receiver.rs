//! `ferry receiver`

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use ferry_common::{kafka::ProducerSettings, shutdown::Shutdown};

use crate::shared::DataPlaneArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: DataPlaneArgs,

    /// Where producers post events.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// The largest request body; larger ones get 413. Kafka's
    /// message.max.bytes follows it.
    #[arg(long, env = "FERRY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,

    /// How long Kafka may take to acknowledge a write before the request
    /// gets 503 (milliseconds).
    #[arg(long, env = "FERRY_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    produce_timeout_ms: u64,
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = ferry_receiver::Config {
        listen: args.listen,
        admin: args.common.admin,
        contract_poll: args.common.contract_poll(),
        default_bootstrap: args.common.bootstrap_servers.clone(),
        max_body_bytes: args.max_body_bytes,
        producer: ProducerSettings {
            timeout: Duration::from_millis(args.produce_timeout_ms),
            max_message_bytes: args.max_body_bytes,
            overrides: args.common.kafka_overrides()?,
        },
        contract: args.common.contract,
    };
    ferry_receiver::run(config, shutdown)
        .await
        .context("receiver failed")
}
