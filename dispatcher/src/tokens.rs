//! Tokens the dispatcher presents to destinations that require one (an
//! audience in the contract): for the egress's `oidcServiceAccountName`,
//! from Kubernetes' TokenRequest API. Each (account, audience) token is
//! kept until shortly before it expires and fetched again in the
//! background once most of its life is spent, so deliveries wait for a
//! token only the first time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};

/// How long a requested token lives.
const LIFETIME: Duration = Duration::from_secs(3600);
/// A token this close to its expiry is not sent.
const MARGIN: Duration = Duration::from_secs(60);

/// Who an egress's deliveries are from: `namespace`'s service account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    pub namespace: String,
    pub name: String,
}

/// Where tokens come from.
#[derive(Clone, Default)]
pub enum Source {
    /// None: a destination that requires a token fails with the reason.
    #[default]
    None,
    /// The Kubernetes API's TokenRequest (in-cluster or KUBECONFIG).
    Kube(kube::Client),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::None => "none",
            Source::Kube(_) => "kube",
        })
    }
}

#[derive(Clone)]
struct Cached {
    token: String,
    fetched: Instant,
    expires: Instant,
}

#[derive(Clone, Default)]
pub struct Tokens {
    source: Source,
    cache: Arc<Mutex<HashMap<(Account, String), Cached>>>,
    /// Held while a missing token is fetched, so concurrent deliveries
    /// wait for one request instead of making their own.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl Tokens {
    pub fn new(source: Source) -> Self {
        Tokens {
            source,
            cache: Arc::default(),
            fetching: Arc::default(),
        }
    }

    /// A token of `account` for `audience`.
    pub async fn get(&self, account: Option<&Account>, audience: &str) -> Result<String, String> {
        let account = account.ok_or_else(|| {
            format!("the destination requires a token for audience '{audience}' and the egress names no oidcServiceAccountName")
        })?;
        let key = (account.clone(), audience.to_owned());
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let _fetching = self.fetching.lock().await;
        // Another delivery may have fetched it meanwhile.
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        self.fetch(key).await
    }

    /// A token still good to send, starting the next one's fetch past the
    /// middle of its life.
    fn cached(&self, key: &(Account, String)) -> Option<String> {
        let cached = self.cache.lock().expect("tokens lock").get(key).cloned();
        let now = Instant::now();
        if let Some(c) = cached.filter(|c| c.expires > now + MARGIN) {
            // Past the middle of its life: fetch the next one meanwhile.
            // One refresh at a time, not one per delivery.
            let refreshing = self.fetching.clone().try_lock_owned();
            if let (true, Ok(guard)) = (now > c.fetched + (c.expires - c.fetched) / 2, refreshing) {
                let (tokens, key) = (self.clone(), key.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(error) = tokens.fetch(key).await {
                        tracing::warn!(%error, "token not refreshed; the current one stays");
                    }
                });
            }
            return Some(c.token);
        }
        None
    }

    async fn fetch(&self, key: (Account, String)) -> Result<String, String> {
        let (account, audience) = &key;
        let Source::Kube(client) = &self.source else {
            return Err(format!(
                "the destination requires a token for audience '{audience}' and this dispatcher has no token source (--oidc-token-source)"
            ));
        };
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.clone()],
                expiration_seconds: Some(LIFETIME.as_secs() as i64),
                ..Default::default()
            },
            ..Default::default()
        };
        let fetched = Instant::now();
        let answer = kube::Api::<ServiceAccount>::namespaced(client.clone(), &account.namespace)
            .create_token_request(&account.name, &Default::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "cannot get a token of {}/{}: {e}",
                    account.namespace, account.name
                )
            })?;
        let status = answer.status.ok_or_else(|| {
            format!(
                "the token request of {}/{} has no status",
                account.namespace, account.name
            )
        })?;
        let left = status.expiration_timestamp.0.as_second()
            - k8s_openapi::jiff::Timestamp::now().as_second();
        let lifetime = u64::try_from(left).map_or(LIFETIME, Duration::from_secs);
        let cached = Cached {
            token: status.token.clone(),
            fetched,
            expires: fetched + lifetime,
        };
        self.cache
            .lock()
            .expect("tokens lock")
            .insert(key.clone(), cached);
        Ok(status.token)
    }
}
