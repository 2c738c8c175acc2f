//! A small HTTP client for tests, HTTPS too (trusting what a test says).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use rustls::{pki_types::pem::PemObject, ClientConfig, RootCertStore};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Plain HTTP (HTTPS trusting no one).
pub fn client() -> HttpClient {
    tls_client_with(&[], &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// HTTP, and HTTPS trusting the CA certificates in `ca_pem`.
pub fn tls_client(ca_pem: &str) -> HttpClient {
    tls_client_with(
        &[ca_pem],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
}

/// [`tls_client`] speaking only these TLS versions.
pub fn tls_client_with(
    ca_pems: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> HttpClient {
    let mut roots = RootCertStore::empty();
    for pem in ca_pems {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
    }
    let config = ClientConfig::builder_with_provider(ferry_common::tls::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A response's status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn request(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    try_request(client, method, url, headers, body)
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"))
}

/// [`request`], for a server that may not listen (yet, or any more).
pub async fn try_request(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Full::new(body.into()))?)
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub async fn post(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    request(client, Method::POST, url, headers, body).await
}
