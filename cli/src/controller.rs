//! `ferry controller`

use std::{path::PathBuf, time::Duration};

use ferry_common::shutdown::Shutdown;
use ferry_controller::plan::{KafkaDefaults, Settings};

use crate::shared::KafkaArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A folder of Knative resources (YAML, as for kubectl apply), watched.
    #[arg(long, env = "FERRY_RESOURCES")]
    resources: PathBuf,

    /// Where the contract for the data plane is written.
    #[arg(long, env = "FERRY_CONTRACT")]
    contract: PathBuf,

    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    tuning: ControllerTuning,
}

/// Where brokers are reached inside a cluster (the ingress Service of
/// deploy/).
const IN_CLUSTER_INGRESS: &str = "http://kafka-broker-ingress.knative-eventing.svc.cluster.local";

/// The reconciler's own settings.
#[derive(clap::Args)]
pub struct ControllerTuning {
    /// The ingress's base URL: a broker's address is <URL>/<namespace>/<name>
    /// [default: the in-cluster ingress Service; standalone: its --listen].
    #[arg(long, env = "FERRY_INGRESS_URL")]
    pub ingress_url: Option<String>,

    /// Partitions of a new broker topic (ConfigMap key default.topic.partitions).
    #[arg(long, env = "FERRY_DEFAULT_PARTITIONS", default_value_t = 10)]
    pub default_partitions: i32,

    /// Replication factor of a new broker topic (default.topic.replication.factor)
    /// [default: 3; standalone: 1].
    #[arg(long, env = "FERRY_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i32>,

    /// How often everything is reconciled again without a change
    /// (milliseconds); also how soon a refused deletion is retried.
    #[arg(long, env = "FERRY_RESYNC_MS", default_value_t = 5000)]
    pub resync_ms: u64,
}

impl ControllerTuning {
    /// The controller's configuration; `local` gives standalone's defaults.
    pub fn config(
        &self,
        resources: PathBuf,
        contract: PathBuf,
        kafka: &KafkaArgs,
        local: Option<&str>,
    ) -> anyhow::Result<ferry_controller::Config> {
        let ingress_url = match (&self.ingress_url, local) {
            (Some(url), _) => url.clone(),
            (None, Some(local)) => local.to_owned(),
            (None, None) => IN_CLUSTER_INGRESS.to_owned(),
        };
        Ok(ferry_controller::Config {
            resources,
            contract,
            settings: Settings {
                ingress_url,
                defaults: KafkaDefaults {
                    bootstrap: kafka.bootstrap_servers.clone(),
                    partitions: self.default_partitions,
                    replication: self
                        .default_replication_factor
                        .unwrap_or(if local.is_some() { 1 } else { 3 }),
                    topic_config: Default::default(),
                },
                claim_unannotated: true,
            },
            resync: Duration::from_millis(self.resync_ms),
            kafka_overrides: kafka.overrides()?,
        })
    }
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = args
        .tuning
        .config(args.resources, args.contract, &args.kafka, None)?;
    let (mut statuses, task) = ferry_controller::start_folder(config, shutdown);
    tokio::spawn(async move {
        while statuses.changed().await.is_ok() {
            let current = statuses.borrow_and_update().clone();
            for s in current.iter() {
                tracing::info!(kind = %s.kind, namespace = %s.namespace, name = %s.name, ready = ?s.ready, reason = %s.reason, message = %s.message, "status");
            }
        }
    });
    let _ = task.await;
    Ok(())
}
