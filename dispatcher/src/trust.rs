//! Whom the dispatcher trusts on `https://`: the system's roots, the
//! contract's trust bundles, and each destination's own CA certificates
//! (`destinationCACerts`, `replyUrlCACerts`, `deadLetterCACerts`). A
//! certificate that none of them verifies fails the attempt with that
//! reason; nothing falls back to plain HTTP.
//!
//! One keep-alive pool per set of extra CA certificates, so destinations
//! that name none (the common case) share one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};

use crate::send::{self, HttpClient};

#[derive(Default)]
struct State {
    /// The contract's trust bundles, as last set.
    bundles: Vec<String>,
    /// Clients by a destination's own CA certificates.
    clients: HashMap<Option<String>, HttpClient>,
}

pub struct Clients {
    system: Arc<Vec<CertificateDer<'static>>>,
    state: Mutex<State>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

impl Clients {
    /// Reads the system's roots once.
    pub fn new() -> Clients {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system CA certificate could not be read");
        }
        Clients {
            system: Arc::new(found.certs),
            state: Mutex::default(),
        }
    }

    /// The contract's trust bundles (PEM); a change makes new clients.
    pub fn set_trust_bundles(&self, bundles: &[String]) {
        let mut state = self.state.lock().expect("clients lock");
        if state.bundles != bundles {
            state.bundles = bundles.to_vec();
            state.clients.clear();
        }
    }

    /// The client for a destination that names these CA certificates.
    pub fn get(&self, ca_certs: Option<&str>) -> HttpClient {
        let ca_certs = ca_certs.filter(|c| !c.trim().is_empty());
        let mut state = self.state.lock().expect("clients lock");
        let key = ca_certs.map(str::to_owned);
        if let Some(client) = state.clients.get(&key) {
            return client.clone();
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(self.system.iter().cloned());
        for pem in state.bundles.iter().map(String::as_str).chain(ca_certs) {
            add_pem(&mut roots, pem);
        }
        let client = send::client_trusting(tls_config(roots));
        state.clients.insert(key, client.clone());
        client
    }
}

fn add_pem(roots: &mut RootCertStore, pem: &str) {
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        match cert
            .map_err(|e| e.to_string())
            .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
        {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "a CA certificate of the contract is not usable"),
        }
    }
}

fn tls_config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(ferry_common::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_share_a_client_unless_they_name_certificates() {
        let clients = Clients::new();
        let ca = rcgen::generate_simple_self_signed(vec!["a.test".into()])
            .unwrap()
            .cert
            .pem();
        clients.get(None);
        clients.get(Some(""));
        clients.get(Some(&ca));
        assert_eq!(clients.state.lock().unwrap().clients.len(), 2);
        clients.set_trust_bundles(std::slice::from_ref(&ca));
        assert!(
            clients.state.lock().unwrap().clients.is_empty(),
            "new bundles, new clients"
        );
    }
}
