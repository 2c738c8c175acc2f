//! `ferry dispatcher`

use std::time::Duration;

use anyhow::Context;
use ferry_common::{
    kafka::{ConsumerSettings, ProducerSettings},
    shutdown::Shutdown,
};
use ferry_dispatcher::{consumer, egress};

use crate::shared::DataPlaneArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: DataPlaneArgs,

    /// Deliveries in flight per unordered trigger (ordered ones have one per
    /// partition).
    #[arg(long, env = "FERRY_MAX_IN_FLIGHT", default_value_t = 100)]
    max_in_flight: usize,

    /// How often finished offsets are committed (milliseconds).
    #[arg(long, env = "FERRY_COMMIT_INTERVAL_MS", default_value_t = 1000)]
    commit_interval_ms: u64,

    /// At shutdown or when a trigger changes, how long deliveries in flight
    /// may take to finish (milliseconds).
    #[arg(long, env = "FERRY_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,

    /// Per-attempt timeout where the contract sets none (milliseconds).
    #[arg(long, env = "FERRY_DELIVERY_TIMEOUT_MS", default_value_t = 30_000)]
    delivery_timeout_ms: u64,

    /// The longest Retry-After that is honoured (milliseconds).
    #[arg(long, env = "FERRY_RETRY_AFTER_MAX_MS", default_value_t = 60_000)]
    retry_after_max_ms: u64,

    /// Kafka consumer session timeout (milliseconds). Shorter means faster
    /// failover and faster first joins on some brokers.
    #[arg(long, env = "FERRY_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    session_timeout_ms: u64,

    /// Kafka consumer heartbeat interval (milliseconds).
    #[arg(long, env = "FERRY_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    heartbeat_interval_ms: u64,
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let overrides = args.common.kafka_overrides()?;
    let config = ferry_dispatcher::Config {
        admin: args.common.admin,
        contract_poll: args.common.contract_poll(),
        defaults: egress::Defaults {
            bootstrap: args.common.bootstrap_servers.clone(),
            timeout: Duration::from_millis(args.delivery_timeout_ms),
            retry_after_max: Duration::from_millis(args.retry_after_max_ms),
        },
        consumers: consumer::Settings {
            consumer: ConsumerSettings {
                session_timeout: Duration::from_millis(args.session_timeout_ms),
                heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
                overrides: overrides.clone(),
            },
            max_in_flight: args.max_in_flight,
            commit_interval: Duration::from_millis(args.commit_interval_ms),
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        },
        producer: ProducerSettings {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1024 * 1024,
            overrides,
        },
        contract: args.common.contract,
    };
    ferry_dispatcher::run(config, shutdown)
        .await
        .context("dispatcher failed")
}
