//! Who may send to an addressable (Knative's sender identity):
//!
//! - [`token`]: the bearer token of a request, read without trusting it.
//! - [`issuer`]: an OpenID issuer's signing keys (discovery, JWKS),
//!   cached and refreshed when a token names a key not seen yet.
//! - [`verify`]: a token's signature, issuer, audience and lifetime.
//! - [`policy`]: EventPolicies as the contract carries them: which
//!   verified senders may send which events.

pub mod issuer;
pub mod policy;
#[cfg(feature = "test-issuer")]
pub mod test_issuer;
pub mod token;
pub mod verify;

pub use issuer::{Issuer, IssuerConfig};
pub use policy::Policies;
pub use verify::{AuthError, Claims, Verifier};
