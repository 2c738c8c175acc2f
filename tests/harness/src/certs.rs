//! Certificates made for one test run: nothing in the suite is a fixed
//! key or a placeholder.

/// A new self-signed certificate for `name`, in PEM.
pub fn self_signed(name: &str) -> String {
    rcgen::generate_simple_self_signed(vec![name.to_owned()])
        .expect("a certificate")
        .cert
        .pem()
}
