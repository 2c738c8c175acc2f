//! HTTPS for Ferry's servers: a certificate and key from PEM files,
//! re-read when they change (a mounted Secret is swapped under its
//! directory) so a renewed certificate takes effect without a restart or a
//! dropped connection: each handshake picks the current one.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;

use crate::shutdown::Shutdown;

/// The oldest TLS version a server accepts: `1.2` or `1.3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    /// Knative's default since 1.22.
    #[default]
    Tls13,
}

impl std::str::FromStr for MinVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(MinVersion::Tls12),
            "1.3" => Ok(MinVersion::Tls13),
            other => Err(format!("TLS version '{other}': 1.2 or 1.3")),
        }
    }
}

/// Knative's `transport-encryption` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportEncryption {
    /// Plain HTTP only.
    #[default]
    Disabled,
    /// HTTP and HTTPS; addresses advertise HTTPS.
    Permissive,
    /// HTTPS only at the ingress.
    Strict,
}

impl std::str::FromStr for TransportEncryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Ok(TransportEncryption::Disabled),
            "permissive" => Ok(TransportEncryption::Permissive),
            "strict" => Ok(TransportEncryption::Strict),
            other => Err(format!(
                "transport-encryption '{other}': disabled, permissive or strict"
            )),
        }
    }
}

/// Where a server's certificate is, and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
    pub min_version: MinVersion,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the key does not match the certificate, or is of an unsupported kind: {0}")]
    Pair(String),
}

/// rustls' provider: `ring`, which the workspace already builds (the
/// default, aws-lc, would add a second C build). Its missing post-quantum
/// key exchange is why it is deprecated as the default.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its key.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let show = |p: &Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: show(&files.cert),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: show(&files.cert),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: show(&files.key),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(certified)
}

/// The current certificate, for each handshake.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A TLS acceptor whose certificate follows its files.
#[derive(Clone)]
pub struct Reloading {
    acceptor: TlsAcceptor,
}

impl Reloading {
    /// Loads the certificate (an error stops the start: a server that
    /// cannot present one must not pretend to serve HTTPS), then re-reads
    /// it whenever its directory changes, and every `poll` in case a
    /// change event is missed. A replacement that does not load is logged
    /// and the previous certificate stays.
    pub fn start(files: TlsFiles, poll: Duration, shutdown: Shutdown) -> Result<Self, TlsError> {
        let current = Arc::new(Current(ArcSwap::from_pointee(load(&files)?)));
        let versions: &[&rustls::SupportedProtocolVersion] = match files.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Pair(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio::spawn(follow(files, current, poll, shutdown));
        Ok(Reloading {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

async fn follow(files: TlsFiles, current: Arc<Current>, poll: Duration, shutdown: Shutdown) {
    let dirs: Vec<PathBuf> = [&files.cert, &files.key]
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut watchers = Vec::new();
    let (tx, mut woken) = tokio::sync::mpsc::channel::<()>(1);
    for dir in dirs {
        match crate::fswatch::watch_dir(&dir) {
            Ok((watcher, mut rx)) => {
                let tx = tx.clone();
                watchers.push(watcher);
                tokio::spawn(async move {
                    while rx.recv().await.is_some() {
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot watch; polling the certificate only")
            }
        }
    }
    let mut loaded = contents(&files);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = woken.recv() => {}
            _ = tokio::time::sleep(poll) => {}
        }
        let now = contents(&files);
        if now == loaded {
            continue;
        }
        match load(&files) {
            Ok(certified) => {
                current.0.store(Arc::new(certified));
                loaded = now;
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            // A half-written pair (the certificate replaced, the key not
            // yet) loads on the next change.
            Err(error) => {
                tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays")
            }
        }
    }
}

fn contents(files: &TlsFiles) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((
        std::fs::read(&files.cert).ok()?,
        std::fs::read(&files.key).ok()?,
    ))
}
