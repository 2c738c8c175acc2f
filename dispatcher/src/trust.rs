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
    sync::{Arc, RwLock},
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
    /// By the extra CA certificates' PEM; "" for none.
    clients: HashMap<String, HttpClient>,
}

pub struct Clients {
    system: Arc<Vec<CertificateDer<'static>>>,
    /// Read on every attempt, written when a new CA set appears: a lock
    /// readers share, and no allocation to look a client up.
    state: RwLock<State>,
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
            state: RwLock::default(),
        }
    }

    /// The contract's trust bundles (PEM); a change makes new clients.
    pub fn set_trust_bundles(&self, bundles: &[String]) {
        let mut state = self.state.write().expect("clients lock");
        if state.bundles != bundles {
            state.bundles = bundles.to_vec();
            state.clients.clear();
        }
    }

    /// The client for a destination that names these CA certificates.
    pub fn get(&self, ca_certs: Option<&str>) -> HttpClient {
        let ca_certs = ca_certs.filter(|c| !c.trim().is_empty());
        let key = ca_certs.unwrap_or_default();
        if let Some(client) = self.state.read().expect("clients lock").clients.get(key) {
            return client.clone();
        }
        let mut state = self.state.write().expect("clients lock");
        if let Some(client) = state.clients.get(key) {
            return client.clone(); // made while this one waited
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(self.system.iter().cloned());
        for pem in state.bundles.iter().map(String::as_str).chain(ca_certs) {
            add_pem(&mut roots, pem);
        }
        let client = send::client_trusting(tls_config(roots));
        state.clients.insert(key.to_owned(), client.clone());
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
        assert_eq!(clients.state.read().unwrap().clients.len(), 2);
        clients.set_trust_bundles(std::slice::from_ref(&ca));
        assert!(
            clients.state.read().unwrap().clients.is_empty(),
            "new bundles, new clients"
        );
    }
}
