//! A sender's Authorization header as the receiver reads it: the bearer
//! token taken out, its JWT header decoded, and the whole token verified
//! against a fixed key (RFC 7515's P-256 example key), so every claim and
//! signature path runs on what an attacker sends.
#![no_main]

use std::collections::HashMap;

use ferry_auth::{token::bearer, verify::verify_with};
use jsonwebtoken::DecodingKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = bearer(Some(data)) else {
        return;
    };
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return;
    };
    let key = DecodingKey::from_ec_components(
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    )
    .expect("the RFC's key");
    let kid = header.kid.unwrap_or_default();
    let keys = HashMap::from([(kid.clone(), key)]);
    let _ = verify_with(token, header.alg, &kid, &keys, "https://issuer", "audience");
});
