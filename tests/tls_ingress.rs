//! HTTPS at the ingress (Knative's `transport-encryption`), with
//! certificates of a CA made for this run: addresses advertise HTTPS with
//! their CA certificates; `permissive` takes events on both ports and
//! `strict` refuses plain HTTP; TLS 1.3 is the minimum unless 1.2 is
//! allowed; a certificate replaced on disk is served without a restart,
//! and a connection opened before keeps working.

use std::time::Duration;

use ::http::Method;
use ferry_harness::{
    bootstrap, eventually,
    http::{self, tls_client, tls_client_with, try_request, HttpClient},
    process::{write_resource, Standalone},
    tls::Pki,
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    certs: tempfile::TempDir,
    ns: String,
}

fn setup(pki: &Pki) -> Setup {
    let setup = Setup {
        dir: tempfile::tempdir().unwrap(),
        state: tempfile::tempdir().unwrap(),
        certs: tempfile::tempdir().unwrap(),
        ns: unique("ns"),
    };
    pki.write_server(setup.certs.path());
    write_resource(
        setup.dir.path(),
        "broker.yaml",
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {}}}\n",
            setup.ns
        ),
    );
    setup
}

async fn start(setup: &Setup, mode: &str, min_version: &str) -> Standalone {
    let cert = setup.certs.path().join("tls.crt");
    let key = setup.certs.path().join("tls.key");
    Standalone::start_with_env(
        FERRY,
        setup.dir.path(),
        setup.state.path(),
        &bootstrap(),
        &[
            ("FERRY_TRANSPORT_ENCRYPTION", mode),
            ("FERRY_TLS_LISTEN", "127.0.0.1:0"),
            ("FERRY_TLS_CERT", cert.to_str().unwrap()),
            ("FERRY_TLS_KEY", key.to_str().unwrap()),
            ("FERRY_TLS_MIN_VERSION", min_version),
        ],
    )
    .await
}

/// The status of an event POSTed to `url`, or the connection's error.
async fn send(client: &HttpClient, url: &str, id: &str) -> Result<u16, String> {
    try_request(
        client,
        Method::POST,
        url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-type", "dev.example.tls"),
            ("ce-source", "/tests"),
        ],
        "{}",
    )
    .await
    .map(|a| a.status.as_u16())
    .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn permissive_serves_both_advertises_https_and_follows_a_replaced_certificate() {
    let pki = Pki::new();
    let setup = setup(&pki);
    let ferry = start(&setup, "permissive", "1.3").await;
    let https = ferry.https_ingress.clone().expect("an HTTPS ingress");
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");

    let status = ferry.wait_for_status("Broker", "b", "True").await;
    let ns = &setup.ns;
    assert_eq!(status["address"], format!("{https}/{ns}/b"), "{status}");
    let addresses = status["addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 2, "{status}");
    assert_eq!(addresses[0]["name"], "https");
    assert_eq!(addresses[0]["CACerts"], pki.ca_pem.as_str());
    assert_eq!(addresses[1]["name"], "http");
    assert_eq!(addresses[1]["url"], format!("{}/{ns}/b", ferry.ingress));
    ferry.ready().await;

    let trusting = tls_client(&pki.ca_pem);
    let url = format!("{https}/{ns}/b");
    assert_eq!(send(&trusting, &url, "over-https").await, Ok(202));
    let plain = format!("{}/{ns}/b", ferry.ingress);
    assert_eq!(send(&http::client(), &plain, "over-http").await, Ok(202));
    // A client that does not trust the CA, or speaks only TLS 1.2, is refused.
    assert!(send(&tls_client(&Pki::new().ca_pem), &url, "x")
        .await
        .is_err());
    let old_tls = tls_client_with(&[&pki.ca_pem], &[&rustls::version::TLS12]);
    assert!(send(&old_tls, &url, "x").await.is_err());

    // A new certificate (of another CA) replaces the old on disk.
    let renewed = Pki::new();
    renewed.write_server(setup.certs.path());
    let trusting_renewed = tls_client(&renewed.ca_pem);
    eventually("the renewed certificate served", WAIT, || {
        let (client, url) = (trusting_renewed.clone(), url.clone());
        async move { (send(&client, &url, "renewed").await == Ok(202)).then_some(()) }
    })
    .await;
    // New connections get the new certificate...
    assert!(send(&tls_client(&pki.ca_pem), &url, "x").await.is_err());
    // ...and the connection opened before it keeps its session.
    assert_eq!(send(&trusting, &url, "kept").await, Ok(202));
}

#[tokio::test]
async fn strict_refuses_plain_http_and_lists_https_only() {
    let pki = Pki::new();
    let setup = setup(&pki);
    let ferry = start(&setup, "strict", "1.2").await;
    let https = ferry.https_ingress.clone().expect("an HTTPS ingress");
    let status = ferry.wait_for_status("Broker", "b", "True").await;
    let ns = &setup.ns;
    let addresses = status["addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 1, "{status}");
    assert_eq!(addresses[0]["url"], format!("{https}/{ns}/b"));
    ferry.ready().await;

    let plain = format!("{}/{ns}/b", ferry.ingress);
    let refused = http::post(
        &http::client(),
        &plain,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "plain"),
            ("ce-type", "t"),
            ("ce-source", "/s"),
        ],
        "{}",
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("HTTPS only"), "{}", refused.body);
    // Probes and health stay on plain HTTP.
    let health = http::request(
        &http::client(),
        Method::GET,
        &format!("{}/healthz", ferry.ingress),
        &[],
        "",
    )
    .await;
    assert_eq!(health.status, 200);
    // TLS 1.2 is allowed here.
    let old_tls = tls_client_with(&[&pki.ca_pem], &[&rustls::version::TLS12]);
    assert_eq!(
        send(&old_tls, &format!("{https}/{ns}/b"), "tls12").await,
        Ok(202)
    );
}
