//! Scenario 11, what securing the ingress costs: the same load over plain
//! HTTP, over HTTPS, and over HTTP with an OIDC token on every request
//! (verified against a test issuer's key, the resource's EventPolicy
//! admitting it), in one run.

use std::sync::Arc;

use anyhow::Context;
use ferry_auth::test_issuer::TestIssuer;
use rustls::{pki_types::pem::PemObject, RootCertStore};

use crate::{
    event::RunId,
    load::{self, Load},
    process::{free_addr, loopback, wait_listening, Sampler},
    sink::{Behaviour, SinkHandle},
    suite::{Bench, Order, NAMESPACE, READY_TIMEOUT},
};

const BROKER: &str = "secure";

impl Bench {
    pub(crate) async fn security(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply(BROKER, 0, Order::Unordered, &sink).await?;
        self.section(
            &format!(
                "11. Ingress security: 1 KiB binary events, {} connections, as fast as possible",
                self.options.connections
            ),
            &crate::scenarios::ingress_header("target", "of plain HTTP"),
        );

        let plain = self.receiver()?;
        let plain_rate = self
            .measure(
                "plain HTTP",
                plain,
                self.load(self.broker_url(BROKER), None),
                None,
                run,
            )
            .await?;

        // HTTPS with a certificate of a CA made for this run.
        let (tls_files, tls_client) = self.certificates()?;
        let tls_addr = free_addr()?;
        let https = self.receiver_with(&[
            "--transport-encryption".into(),
            "permissive".into(),
            "--tls-listen".into(),
            tls_addr.to_string(),
            "--tls-cert".into(),
            tls_files.0.display().to_string(),
            "--tls-key".into(),
            tls_files.1.display().to_string(),
        ])?;
        let mut load = self.load(
            format!("https://{tls_addr}/{NAMESPACE}/{BROKER}").parse()?,
            None,
        );
        load.tls = Some(tls_client);
        self.measure(
            "HTTPS (TLS 1.3, ECDSA P-256)",
            https,
            load,
            Some(plain_rate),
            run,
        )
        .await?;

        // A token on every request, the broker requiring one.
        let issuer = TestIssuer::start().await?;
        let audience = format!("eventing.knative.dev/broker/{NAMESPACE}/{BROKER}");
        let contract = self.contract_with_audience(&audience)?;
        let oidc =
            self.receiver_on(&contract, &["--oidc-issuer-url".into(), issuer.url.clone()])?;
        let mut load = self.load(self.broker_url(BROKER), None);
        load.bearer = Some(issuer.token("system:serviceaccount:bench:load", &audience));
        self.measure(
            "HTTP + OIDC token (ES256), EventPolicy",
            oidc,
            load,
            Some(plain_rate),
            run,
        )
        .await?;
        Ok(())
    }

    /// Runs `load` against a started receiver, prints its row and returns
    /// its rate.
    async fn measure(
        &mut self,
        target: &str,
        receiver: crate::process::Process,
        load: Load,
        plain: Option<f64>,
        run: RunId,
    ) -> anyhow::Result<f64> {
        receiver.ready(READY_TIMEOUT).await?;
        if let Some(authority) = load.url.authority() {
            wait_listening(authority.as_str().parse()?).await?;
        }
        let sampler = Sampler::start(receiver.pid(), self.kafka_port);
        let sent = load::run(&load, run).await?;
        let footprint = sampler.finish();
        receiver.stop().await;
        let ratio = plain.map_or("1.00".into(), |p| format!("{:.2}", sent.rate() / p));
        self.ingress_row_with(target, &sent, footprint, ratio);
        Ok(sent.rate())
    }

    /// A CA, a server certificate for 127.0.0.1 written to the work
    /// folder, and a client configuration trusting the CA.
    fn certificates(
        &self,
    ) -> anyhow::Result<(
        (std::path::PathBuf, std::path::PathBuf),
        Arc<rustls::ClientConfig>,
    )> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])?.signed_by(&key, &ca)?;
        let dir = self.options.work_dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        let mut roots = RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(
            ca.pem().as_bytes(),
        )?)?;
        let client = rustls::ClientConfig::builder_with_provider(ferry_common::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(((cert_path, key_path), Arc::new(client)))
    }

    /// The contract as it is, with the broker requiring tokens for
    /// `audience` and admitting any subject (Knative's `allow-all`).
    fn contract_with_audience(&self, audience: &str) -> anyhow::Result<std::path::PathBuf> {
        let mut contract = ferry_common::contract::read(&self.contract())?;
        let path = format!("/{NAMESPACE}/{BROKER}");
        let ingress = contract
            .resources
            .iter_mut()
            .filter_map(|r| r.ingress.as_mut())
            .find(|i| i.path == path)
            .context("the broker in the contract")?;
        ingress.audience = audience.to_owned();
        ingress.event_policies = vec![ferry_proto::EventPolicy {
            token_matchers: vec![ferry_proto::TokenMatcher {
                matcher: Some(ferry_proto::token_matcher::Matcher::Prefix(
                    ferry_proto::Prefix {
                        attributes: [("sub".to_owned(), String::new())].into(),
                    },
                )),
            }],
            filters: Vec::new(),
        }];
        let out = self.options.work_dir.join("contract-oidc.json");
        std::fs::write(&out, serde_json::to_vec(&contract)?)?;
        Ok(out)
    }
}
