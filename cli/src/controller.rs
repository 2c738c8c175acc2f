//! `ferry controller`

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use ferry_common::{admin::Admin, server};
use ferry_common::{shutdown::Shutdown, tls::TransportEncryption};
use ferry_controller::{
    metrics::ControllerMetrics,
    plan::{
        AddressTls, AuthorizationMode, ChannelAddresses, ChannelSubscribers, KafkaDefaults,
        Settings,
    },
};
use prometheus_client::registry::Registry;

use crate::shared::KafkaArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A folder of Knative resources (YAML, as for kubectl apply), watched.
    #[arg(
        long,
        env = "FERRY_RESOURCES",
        required_unless_present = "kube",
        conflicts_with = "kube",
        requires = "contract"
    )]
    resources: Option<PathBuf>,

    /// Where the contract for the data plane is written (with --resources).
    #[arg(long, env = "FERRY_CONTRACT")]
    contract: Option<PathBuf>,

    /// Read Brokers and Triggers from the Kubernetes API (kubeconfig or
    /// in-cluster), write statuses and the contract ConfigMap there.
    #[arg(long, env = "FERRY_KUBE")]
    kube: bool,

    /// With --kube: the namespace of the contract ConfigMap, the Kafka
    /// defaults (kafka-broker-config) and the leader-election Lease.
    #[arg(long, env = "SYSTEM_NAMESPACE", default_value = "knative-eventing")]
    namespace: String,

    /// With --kube: this replica's name in the Lease [default: POD_NAME, or
    /// the host name and process id].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// With --kube: where the local copy of the contract is kept.
    #[arg(long, env = "FERRY_STATE_DIR", default_value = "/tmp/ferry-controller")]
    state_dir: PathBuf,

    /// With --kube, where channels' subscribers come from: `spec` (Knative's
    /// subscription controller writes them into each channel, and owns the
    /// Subscriptions' statuses), `subscriptions` (Ferry reads Subscriptions
    /// and writes their statuses), or `auto`: `spec` when Knative's core
    /// (Deployment knative-eventing/eventing-controller) runs.
    #[arg(long, env = "FERRY_CHANNEL_SUBSCRIBERS", default_value = "auto", value_parser = ["auto", "spec", "subscriptions"])]
    channel_subscribers: String,

    /// With --kube, who runs PingSources, ApiServerSources, ContainerSources
    /// and SinkBindings: `ferry`, `knative` (its source controllers and
    /// SinkBinding webhook do; Ferry leaves them alone), or `auto`: `knative`
    /// when Knative's core runs.
    #[arg(long, env = "FERRY_SOURCES", default_value = "auto", value_parser = ["auto", "ferry", "knative"])]
    sources: String,

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "FERRY_ADMIN", default_value = "0.0.0.0:9090")]
    admin: std::net::SocketAddr,

    /// What addresses advertise: `disabled` (HTTP), `permissive` (HTTPS
    /// first, then HTTP) or `strict` (HTTPS only), as the receivers serve it.
    #[arg(long, env = "FERRY_TRANSPORT_ENCRYPTION", default_value = "disabled")]
    transport_encryption: TransportEncryption,

    /// The HTTPS ingress's base URL [default: the in-cluster ingress
    /// Service, on https].
    #[arg(long, env = "FERRY_HTTPS_INGRESS_URL")]
    https_ingress_url: Option<String>,

    /// The PEM CA certificates that verify the HTTPS ingress, published as
    /// addresses' `CACerts`.
    #[arg(long, env = "FERRY_INGRESS_CA_FILE")]
    ingress_ca_file: Option<PathBuf>,

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

    /// How channels are addressed: `host` (the reference's
    /// `<name>-kn-channel.<namespace>.svc.cluster.local`, served by a
    /// Service per channel) or `path` (`<ingress URL>/channels/<ns>/<name>`,
    /// for a receiver reached without cluster DNS) [default: host;
    /// standalone: path].
    #[arg(long, env = "FERRY_CHANNEL_ADDRESSES", value_parser = ["host", "path"])]
    pub channel_addresses: Option<String>,

    /// Whether Brokers and Channels make EventTypes of the (type, source)
    /// pairs they carry, unless annotated `ferry.dev/eventtype-auto-create:
    /// enabled|disabled` (with --kube, Knative's `eventtype-auto-create`
    /// feature in config-features decides).
    #[arg(long, env = "FERRY_EVENTTYPE_AUTOCREATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub eventtype_autocreate: bool,

    /// Sender identity (Knative's `authentication-oidc`): addressables get
    /// audiences, and EventPolicies say who may send to them.
    #[arg(long, env = "FERRY_AUTHENTICATION_OIDC", default_value_t = false, action = clap::ArgAction::Set)]
    pub authentication_oidc: bool,

    /// Who may send to an addressable no EventPolicy names:
    /// `allow-same-namespace`, `allow-all` or `deny-all`.
    #[arg(
        long,
        env = "FERRY_DEFAULT_AUTHORIZATION_MODE",
        default_value = "allow-same-namespace"
    )]
    pub default_authorization_mode: AuthorizationMode,

    /// A kubeconfig whose cluster ApiServerSources watch, for a folder of
    /// resources or standalone (with --kube, the API the controller uses).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

impl ControllerTuning {
    /// The cluster of --kubeconfig, for ApiServerSources; its URL goes into
    /// the plan's settings. One that cannot be used is logged, and the
    /// ApiServerSources say so in their statuses: the rest runs.
    pub async fn cluster(&self, config: &mut ferry_controller::Config) {
        let Some(path) = &self.kubeconfig else {
            return;
        };
        match ferry_sources::apiserver::Cluster::from_kubeconfig(path).await {
            Ok(cluster) => {
                config.settings.api_server = Some(cluster.url.clone());
                config.cluster = Some(cluster);
            }
            Err(error) => {
                tracing::error!(%error, "cannot use the kubeconfig; ApiServerSources will not run")
            }
        }
    }
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
                    auth: None,
                },
                claim_unannotated: true,
                // Standalone has no per-channel Services: address channels by path.
                channel_addresses: match (self.channel_addresses.as_deref(), local) {
                    (Some("path"), _) | (None, Some(_)) => ChannelAddresses::Path,
                    _ => ChannelAddresses::Host,
                },
                channel_subscribers: Default::default(),
                api_server: None,
                eventtype_autocreate: self.eventtype_autocreate,
                tls: None,
                oidc: self
                    .authentication_oidc
                    .then_some(self.default_authorization_mode),
            },
            resync: Duration::from_millis(self.resync_ms),
            kafka_overrides: kafka.overrides()?,
            previous_contract: None,
            metrics: ControllerMetrics::unregistered(),
            cluster: None,
            event_types: None,
            registry: None,
            annotation_requests: None,
        })
    }
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    let admin_listener = server::bind(args.admin).await?;
    tracing::info!(admin = %admin_listener.local_addr()?, "controller admin port");
    let ready = {
        let metrics = metrics.clone();
        std::sync::Arc::new(move || metrics.is_ready())
    };
    tokio::spawn(Admin::new(registry, ready).serve(admin_listener, shutdown.clone()));
    if args.kube {
        return run_kube(args, metrics, shutdown).await;
    }
    let (Some(resources), Some(contract)) = (args.resources.clone(), args.contract.clone()) else {
        anyhow::bail!("--resources and --contract go together (or use --kube)");
    };
    let mut config = args.tuning.config(resources, contract, &args.kafka, None)?;
    config.settings.tls = args.address_tls()?;
    config.metrics = metrics;
    args.tuning.cluster(&mut config).await;
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

impl Args {
    fn address_tls(&self) -> anyhow::Result<Option<AddressTls>> {
        if self.transport_encryption == TransportEncryption::Disabled {
            return Ok(None);
        }
        let ca_certs = match &self.ingress_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(AddressTls {
            url: self
                .https_ingress_url
                .clone()
                .unwrap_or_else(|| IN_CLUSTER_INGRESS.replacen("http://", "https://", 1)),
            ca_certs,
            strict: self.transport_encryption == TransportEncryption::Strict,
        }))
    }
}

async fn run_kube(
    args: Args,
    metrics: ControllerMetrics,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let base = args
        .tuning
        .config(PathBuf::new(), PathBuf::new(), &args.kafka, None)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let cluster = ferry_sources::apiserver::Cluster::infer()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API: {e}"))?;
    let config = ferry_controller::kube::KubeConfig {
        namespace: args.namespace.clone(),
        identity,
        settings: ferry_controller::plan::Settings {
            api_server: Some(cluster.url.clone()),
            tls: args.address_tls()?,
            ..base.settings
        },
        resync: base.resync,
        kafka_overrides: base.kafka_overrides,
        state_file: args.state_dir.join("contract.json"),
        metrics,
        channel_subscribers: match args.channel_subscribers.as_str() {
            "spec" => Some(ChannelSubscribers::ChannelSpec),
            "subscriptions" => Some(ChannelSubscribers::Subscriptions),
            _ => None,
        },
        sources: match args.sources.as_str() {
            "ferry" => Some(true),
            "knative" => Some(false),
            _ => None,
        },
    };
    ferry_controller::kube::run(cluster, config, shutdown).await;
    Ok(())
}
