//! An OpenID issuer's signing keys: discovery at
//! `<url>/.well-known/openid-configuration`, then its `jwks_uri`. Kept
//! until a token names a key not among them; then fetched again, at most
//! once per [`MIN_REFRESH`], so a stream of forged key ids cannot make
//! Ferry hammer the issuer.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use jsonwebtoken::{jwk::JwkSet, DecodingKey};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    RootCertStore,
};
use serde::Deserialize;

/// The least time between two fetches of the keys.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Where the issuer is, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Its URL; discovery is at `<url>/.well-known/openid-configuration`.
    pub url: String,
    /// CA certificates (PEM) trusted for it besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A bearer token for discovery (the Kubernetes API server asks for
    /// one: the pod's service account token).
    pub token_file: Option<PathBuf>,
}

/// The keys of one fetch, and the issuer name tokens must carry.
#[derive(Default)]
pub struct Keys {
    /// The discovery document's `issuer` (a token's `iss`).
    pub issuer: String,
    pub by_kid: HashMap<String, DecodingKey>,
}

#[derive(Clone)]
pub struct Issuer(Arc<Inner>);

struct Inner {
    config: IssuerConfig,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: ArcSwap<Keys>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// rustls' `ring` provider, as `ferry_common::tls` chooses it (this crate
/// stays free of Kafka, for the fuzzer).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Issuer {
    pub fn new(config: IssuerConfig) -> Result<Issuer, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &config.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::new(roots))
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Issuer(Arc::new(Inner {
            config,
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: ArcSwap::from_pointee(Keys::default()),
            last_fetch: tokio::sync::Mutex::new(None),
        })))
    }

    /// The keys, fetched again first when `kid` is not among them (and
    /// the last fetch is old enough).
    pub async fn keys_with(&self, kid: &str) -> Result<Arc<Keys>, String> {
        let keys = self.0.keys.load_full();
        if keys.by_kid.contains_key(kid) {
            return Ok(keys);
        }
        let mut last = self.0.last_fetch.lock().await;
        // Another request may have fetched them while this one waited.
        let keys = self.0.keys.load_full();
        if keys.by_kid.contains_key(kid) || last.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return Ok(keys);
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(fresh) => {
                tracing::info!(issuer = %fresh.issuer, keys = fresh.by_kid.len(), "OIDC keys fetched");
                let fresh = Arc::new(fresh);
                self.0.keys.store(fresh.clone());
                Ok(fresh)
            }
            // Keys already known keep serving tokens signed with them.
            Err(error) if !keys.by_kid.is_empty() => {
                tracing::warn!(%error, "OIDC keys not refreshed");
                Ok(keys)
            }
            Err(error) => Err(error),
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let base = self.0.config.url.trim_end_matches('/');
        let discovery: Discovery = serde_json::from_slice(
            &self
                .get(&format!("{base}/.well-known/openid-configuration"))
                .await?,
        )
        .map_err(|e| format!("discovery document: {e}"))?;
        let set: JwkSet = serde_json::from_slice(&self.get(&discovery.jwks_uri).await?)
            .map_err(|e| format!("JWKS: {e}"))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    by_kid.insert(kid, key);
                }
                Err(error) => tracing::warn!(%kid, %error, "an OIDC key is not usable"),
            }
        }
        Ok(Keys {
            issuer: discovery.issuer,
            by_kid,
        })
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let mut request = http::Request::get(url);
        if let Some(path) = &self.0.config.token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            request = request.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.trim()),
            );
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let exchange = async {
            let response = self
                .0
                .client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("{url} answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url} did not answer within {FETCH_TIMEOUT:?}"))?
    }
}
