//! `ferry receiver`

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use ferry_common::{kafka::ProducerSettings, shutdown::Shutdown};

use crate::shared::{DataPlane, DataPlaneArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    plane: DataPlaneArgs,
    #[command(flatten)]
    tuning: ReceiverTuning,
}

/// The ingress's own settings.
#[derive(clap::Args)]
pub struct ReceiverTuning {
    /// Where producers post events.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// The largest request body; larger ones get 413. Kafka's
    /// message.max.bytes follows it.
    #[arg(long, env = "FERRY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,

    /// How long Kafka may take to acknowledge a write before the request
    /// gets 503 (milliseconds).
    #[arg(long, env = "FERRY_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    produce_timeout_ms: u64,
}

impl ReceiverTuning {
    pub fn config(&self, plane: &DataPlane) -> ferry_receiver::Config {
        ferry_receiver::Config {
            listen: self.listen,
            admin: plane.admin,
            contract: plane.contract.clone(),
            contract_poll: plane.contract_poll,
            default_bootstrap: plane.bootstrap.clone(),
            secrets: plane.secrets.clone(),
            max_body_bytes: self.max_body_bytes,
            producer: ProducerSettings {
                timeout: Duration::from_millis(self.produce_timeout_ms),
                max_message_bytes: self.max_body_bytes,
                overrides: plane.overrides.clone(),
            },
            metrics_event_type: plane.metrics_event_type,
            event_types: plane.event_types.clone(),
            tail: None,
        }
    }
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = args.tuning.config(&args.plane.plane(&shutdown).await?);
    ferry_receiver::run(config, shutdown)
        .await
        .context("receiver failed")
}
