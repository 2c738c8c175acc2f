//! `ferry receiver`

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use ferry_auth::IssuerConfig;
use ferry_common::{
    kafka::ProducerSettings,
    shutdown::Shutdown,
    tls::{MinVersion, TlsFiles, TransportEncryption},
};
use ferry_receiver::TlsIngress;

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

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// Verifying senders' tokens (Knative's `authentication-oidc`).
#[derive(clap::Args)]
pub struct OidcArgs {
    /// The OpenID issuer whose tokens senders present (discovery at
    /// URL/.well-known/openid-configuration; https, or http for a local
    /// issuer). In a cluster: https://kubernetes.default.svc.
    #[arg(long, env = "FERRY_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// CA certificates (PEM) trusted for the issuer besides the system's
    /// [default in a cluster: the service account's ca.crt].
    #[arg(long, env = "FERRY_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,

    /// A bearer token for the issuer's discovery (the Kubernetes API asks
    /// for one) [default in a cluster: the service account's token].
    #[arg(long, env = "FERRY_OIDC_TOKEN_FILE")]
    pub oidc_token_file: Option<PathBuf>,
}

/// Where a pod's service account credentials are mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl OidcArgs {
    pub fn issuer(&self) -> Option<IssuerConfig> {
        let url = self.oidc_issuer_url.clone().filter(|u| !u.is_empty())?;
        // The API server's issuer takes the pod's own credentials.
        let in_cluster = |file: &str| {
            let path = std::path::Path::new(SERVICE_ACCOUNT).join(file);
            (url.contains("kubernetes.default.svc") && path.exists()).then_some(path)
        };
        Some(IssuerConfig {
            ca_file: self.oidc_ca_file.clone().or_else(|| in_cluster("ca.crt")),
            token_file: self.oidc_token_file.clone().or_else(|| in_cluster("token")),
            url,
        })
    }
}

/// HTTPS at the ingress (Knative's `transport-encryption`).
#[derive(clap::Args)]
pub struct TlsArgs {
    /// `disabled` (HTTP only), `permissive` (HTTP and HTTPS; addresses
    /// advertise HTTPS) or `strict` (events over HTTPS only).
    #[arg(long, env = "FERRY_TRANSPORT_ENCRYPTION", default_value = "disabled")]
    pub transport_encryption: TransportEncryption,

    /// Where HTTPS is served when transport encryption is on.
    #[arg(long, env = "FERRY_TLS_LISTEN", default_value = "0.0.0.0:8443")]
    pub tls_listen: SocketAddr,

    /// The certificate (PEM, then its chain), re-read when it changes.
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// Its private key (PEM).
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The oldest TLS version accepted: 1.3, or 1.2.
    #[arg(long, env = "FERRY_TLS_MIN_VERSION", default_value = "1.3")]
    pub tls_min_version: MinVersion,
}

impl TlsArgs {
    /// The HTTPS ingress, or none when transport encryption is off.
    pub fn ingress(&self) -> anyhow::Result<Option<TlsIngress>> {
        if self.transport_encryption == TransportEncryption::Disabled {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            anyhow::bail!(
                "--transport-encryption {:?} needs --tls-cert and --tls-key",
                self.transport_encryption
            );
        };
        Ok(Some(TlsIngress {
            listen: self.tls_listen,
            files: TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                min_version: self.tls_min_version,
            },
            mode: self.transport_encryption,
        }))
    }
}

impl ReceiverTuning {
    pub fn config(&self, plane: &DataPlane) -> anyhow::Result<ferry_receiver::Config> {
        Ok(ferry_receiver::Config {
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
            tls: self.tls.ingress()?,
            oidc: self.oidc.issuer(),
        })
    }
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = args.tuning.config(&args.plane.plane(&shutdown).await?)?;
    ferry_receiver::run(config, shutdown)
        .await
        .context("receiver failed")
}
