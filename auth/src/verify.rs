//! A token's signature, issuer, audience and lifetime, against the
//! issuer's keys.

use std::collections::HashMap;

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

/// Verifies tokens of one issuer.
#[derive(Clone)]
pub struct Verifier {
    issuer: Issuer,
}

impl Verifier {
    pub fn new(issuer: Issuer) -> Self {
        Verifier { issuer }
    }

    /// The claims of a token for `audience`, once its signature, issuer,
    /// audience and lifetime check out.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.unwrap_or_default();
        let keys = self.issuer.keys_with(&kid).await.map_err(AuthError::Keys)?;
        verify_with(
            token,
            header.alg,
            &kid,
            &keys.by_kid,
            &keys.issuer,
            audience,
        )
    }
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
