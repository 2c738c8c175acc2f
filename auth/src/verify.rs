//! A token's signature, issuer, audience and lifetime, against the
//! issuer's keys.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};

use crate::{issuer::Issuer, token::TokenError};

/// How far clocks may disagree about `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

/// A verified token's claims (`sub`, and whatever else it carries).
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Why a request is not from a verified sender: 401, with this reason.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the bearer token is not a valid JWT: {0}")]
    Malformed(String),
    #[error("the token is signed by key '{0}', which the issuer does not publish")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYet,
    #[error("the token is for another audience (this resource's is '{0}')")]
    Audience(String),
    #[error("the token is from another issuer (trusted: '{0}')")]
    IssuerMismatch(String),
    #[error("the issuer's keys cannot be had: {0}")]
    Keys(String),
}

/// How many verified tokens are remembered (senders reuse a token for its
/// lifetime, typically an hour): a signature check costs tens of
/// microseconds, a lookup next to nothing.
const REMEMBERED: usize = 4096;

/// Verifies tokens of one issuer.
#[derive(Clone)]
pub struct Verifier {
    issuer: Issuer,
    verified: Arc<Mutex<HashMap<(String, String), Verified>>>,
}

/// A token verified for an audience, and until when its claims hold.
#[derive(Clone)]
struct Verified {
    claims: Claims,
    until: u64,
}

impl Verifier {
    pub fn new(issuer: Issuer) -> Self {
        Verifier {
            issuer,
            verified: Arc::default(),
        }
    }

    /// The claims of a token for `audience`, once its signature, issuer,
    /// audience and lifetime check out. A token verified before is taken
    /// from memory until its `exp`.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Claims, AuthError> {
        let key = (token.to_owned(), audience.to_owned());
        let now = now();
        if let Some(v) = self.verified.lock().expect("verified lock").get(&key) {
            if v.until > now {
                return Ok(v.claims.clone());
            }
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.unwrap_or_default();
        let keys = self.issuer.keys_with(&kid).await.map_err(AuthError::Keys)?;
        let claims = verify_with(
            token,
            header.alg,
            &kid,
            &keys.by_kid,
            &keys.issuer,
            audience,
        )?;
        // Until `exp`, without the leeway a fresh check would grant.
        let until = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() >= REMEMBERED {
            verified.retain(|_, v| v.until > now);
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(
            key,
            Verified {
                claims: claims.clone(),
                until,
            },
        );
        Ok(claims)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`Verifier::verify`] against keys at hand: pure, for tests and fuzzing.
pub fn verify_with(
    token: &str,
    alg: Algorithm,
    kid: &str,
    keys: &HashMap<String, DecodingKey>,
    issuer: &str,
    audience: &str,
) -> Result<Claims, AuthError> {
    let key = keys
        .get(kid)
        .ok_or_else(|| AuthError::UnknownKey(kid.to_owned()))?;
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::Signature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYet,
            ErrorKind::InvalidAudience => AuthError::Audience(audience.to_owned()),
            ErrorKind::InvalidIssuer => AuthError::IssuerMismatch(issuer.to_owned()),
            _ => AuthError::Malformed(e.to_string()),
        })
}
