//! The plumbing Ferry's components share; CloudEvents themselves (the type,
//! codecs, validation, trace context) live in the pure `ferry-event`.
//!
//! - [`contract`]: reading the data-plane contract, following its file, and
//!   what receiver and dispatcher both read of a resource.
//! - [`kafka`]: librdkafka settings: Ferry's defaults and operator overrides.
//! - [`credentials`], [`secrets`]: a resource's Kafka credentials, from
//!   Secrets in the API or the resources folder.
//! - [`producer`]: writing records, one idempotent producer per cluster.
//! - [`group_offsets`]: consumer groups' committed offsets, read and written
//!   from outside the group; [`group_start`]: where a new group starts.
//! - [`metrics`]: the metrics receiver and dispatcher share, with the
//!   reference's names.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`),
//!   and a component's own one when it runs alone.
//! - [`server`]: the HTTP serve loop with graceful drain; [`tls`]: HTTPS
//!   with a certificate that follows its files; [`fswatch`]: a directory
//!   watch.
//! - [`telemetry`]: the spans Ferry exports over OTLP when asked to.
//! - [`shutdown`]: one signal for every task of a process.

pub mod admin;
pub mod contract;
pub mod credentials;
pub mod fswatch;
pub mod group_offsets;
pub mod group_start;
pub mod kafka;
pub mod metrics;
pub mod producer;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod tail;
pub mod telemetry;
pub mod tls;
pub mod yaml_folder;

/// Why a data-plane component (receiver, dispatcher) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be bound.
    #[error(transparent)]
    Bind(#[from] server::BindError),
    /// The contract file cannot be followed.
    #[error(transparent)]
    Contract(#[from] contract::ContractError),
    /// HTTPS was asked for and its certificate cannot be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The OIDC issuer's settings cannot be used.
    #[error("OIDC issuer: {0}")]
    Oidc(String),
}
