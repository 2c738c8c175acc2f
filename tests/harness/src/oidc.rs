//! The test OpenID issuer lives in `ferry-auth` (feature `test-issuer`),
//! shared with the benchmarks.

pub use ferry_auth::test_issuer::{now, TestIssuer};
