//! Kafka over TLS with client certificates, for tests of Kafka
//! credentials: a private Tansu (which speaks plaintext only) behind a TLS
//! front that requires a client certificate of a CA made for this run.
//! Tansu advertises the front's port, so every connection a client makes
//! after bootstrap goes through TLS too.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::Tansu;

/// A CA made for this run, and a certificate and key it signed, in PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server: Signed,
    pub client: Signed,
    ca_der: CertificateDer<'static>,
}

pub struct Signed {
    pub cert_pem: String,
    /// PKCS #8, which librdkafka and the reference's Java clients read.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Ferry test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let sign = |names: Vec<String>, common_name: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            let cert = params.signed_by(&key, &ca).expect("signed certificate");
            Signed {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                cert_der: cert.der().clone(),
                key_der: key.serialize_der(),
            }
        };
        Pki {
            server: sign(vec!["127.0.0.1".into(), "localhost".into()], "kafka"),
            client: sign(vec![], "ferry"),
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
        }
    }
}

impl Pki {
    /// A TLS acceptor presenting the server certificate (no client auth).
    pub fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server.key_der.clone()));
        let config = ServerConfig::builder_with_provider(ferry_common::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server.cert_der.clone()], key)
            .expect("server certificate");
        TlsAcceptor::from(Arc::new(config))
    }

    /// Writes the server's certificate and key, and the CA beside them as
    /// `ca.crt` (a Kubernetes TLS Secret's layout), into `dir`; returns the
    /// certificate's and the key's paths. The key is written first, so a
    /// reader that sees the new certificate finds its key.
    pub fn write_server(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&key, &self.server.key_pem).expect("key written");
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).expect("CA written");
        std::fs::write(&cert, &self.server.cert_pem).expect("certificate written");
        (cert, key)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A Kafka-API broker reachable only over TLS with a client certificate.
pub struct TlsKafka {
    pub pki: Pki,
    port: u16,
    _tansu: Tansu,
    front: tokio::task::JoinHandle<()>,
}

impl TlsKafka {
    pub async fn start() -> TlsKafka {
        let pki = Pki::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tansu = Tansu::start_advertising(crate::free_port(), port);
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&pki)));
        let backend = tansu.bootstrap();
        let front = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    // A client without a certificate of the CA fails here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    if let Ok(mut broker) = TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
        TlsKafka {
            pki,
            port,
            _tansu: tansu,
            front,
        }
    }

    /// The TLS address clients bootstrap from.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// librdkafka settings of a client with the run's client certificate.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("security.protocol", "ssl")
            .set("ssl.ca.pem", &self.pki.ca_pem)
            .set("ssl.certificate.pem", &self.pki.client.cert_pem)
            .set("ssl.key.pem", &self.pki.client.key_pem);
        config
    }
}

impl Drop for TlsKafka {
    fn drop(&mut self) {
        self.front.abort();
    }
}

fn server_config(pki: &Pki) -> ServerConfig {
    let provider = ferry_common::tls::provider();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("CA root");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.key_der.clone()));
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.cert_der.clone()], key)
        .expect("server certificate")
}
