//! `ferry dispatcher`

use std::{num::NonZeroUsize, time::Duration};

use anyhow::Context;
use ferry_common::{
    kafka::{ConsumerSettings, ProducerSettings},
    shutdown::Shutdown,
};
use ferry_dispatcher::{egress, reader};

use crate::shared::{DataPlane, DataPlaneArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    plane: DataPlaneArgs,
    #[command(flatten)]
    tuning: DispatcherTuning,

    /// Where the tokens for destinations that require one (an audience in
    /// the contract) come from: `none`, or `kube` (TokenRequests for each
    /// egress's oidcServiceAccountName, in-cluster or KUBECONFIG).
    #[arg(long, env = "FERRY_OIDC_TOKEN_SOURCE", default_value = "none", value_parser = ["none", "kube"])]
    oidc_token_source: String,
}

/// The dispatcher's own settings.
#[derive(clap::Args)]
pub struct DispatcherTuning {
    /// Deliveries in flight per unordered trigger (ordered ones have one per
    /// partition).
    #[arg(long, env = "FERRY_MAX_IN_FLIGHT", default_value = "100")]
    max_in_flight: NonZeroUsize,

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

    /// Deliveries in flight for all triggers of one broker (or
    /// subscriptions of one channel) together; bounds memory when a broker
    /// has many triggers.
    #[arg(long, env = "FERRY_MAX_DELIVERIES_PER_TOPIC", default_value = "1000")]
    max_deliveries_per_topic: NonZeroUsize,

    /// How long a trigger whose deliveries fill its in-flight window may
    /// hold back the other triggers of its broker before it gets a Kafka
    /// consumer of its own until it catches up (milliseconds).
    #[arg(long, env = "FERRY_DETACH_AFTER_MS", default_value_t = 1000)]
    detach_after_ms: u64,

    /// Kafka consumer session timeout (milliseconds). Shorter means faster
    /// failover and faster first joins on some brokers.
    #[arg(long, env = "FERRY_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    session_timeout_ms: u64,

    /// How often each trigger's lag is measured for /metrics and
    /// /resources (milliseconds).
    #[arg(long, env = "FERRY_LAG_INTERVAL_MS", default_value_t = 5000)]
    lag_interval_ms: u64,

    /// Kafka consumer heartbeat interval (milliseconds).
    #[arg(long, env = "FERRY_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    heartbeat_interval_ms: u64,
}

impl DispatcherTuning {
    pub fn config(&self, plane: &DataPlane) -> ferry_dispatcher::Config {
        ferry_dispatcher::Config {
            admin: plane.admin,
            contract: plane.contract.clone(),
            contract_poll: plane.contract_poll,
            defaults: egress::Defaults {
                bootstrap: plane.bootstrap.clone(),
                timeout: Duration::from_millis(self.delivery_timeout_ms),
                retry_after_max: Duration::from_millis(self.retry_after_max_ms),
            },
            secrets: plane.secrets.clone(),
            tokens: Default::default(),
            consumers: reader::Settings {
                consumer: ConsumerSettings {
                    session_timeout: Duration::from_millis(self.session_timeout_ms),
                    heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
                    overrides: plane.overrides.clone(),
                },
                max_in_flight: self.max_in_flight.get(),
                commit_interval: Duration::from_millis(self.commit_interval_ms),
                drain_timeout: Duration::from_millis(self.drain_timeout_ms),
                detach_after: Duration::from_millis(self.detach_after_ms),
                max_deliveries: self.max_deliveries_per_topic.get(),
                lag_interval: Duration::from_millis(self.lag_interval_ms),
            },
            producer: ProducerSettings {
                timeout: Duration::from_secs(5),
                max_message_bytes: 1024 * 1024,
                overrides: plane.overrides.clone(),
            },
            metrics_event_type: plane.metrics_event_type,
            event_types: plane.event_types.clone(),
        }
    }
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut config = args.tuning.config(&args.plane.plane(&shutdown).await?);
    config.tokens = match args.oidc_token_source.as_str() {
        "kube" => ferry_dispatcher::tokens::Source::Kube(
            kube::Client::try_default()
                .await
                .context("--oidc-token-source kube: cannot reach the Kubernetes API")?,
        ),
        _ => ferry_dispatcher::tokens::Source::None,
    };
    ferry_dispatcher::run(config, shutdown)
        .await
        .context("dispatcher failed")
}
