//! An OpenID issuer for tests: signing keys made per run (ECDSA P-256),
//! discovery and JWKS served on 127.0.0.1, tokens signed on demand. Keys
//! can be added while it runs (rotation).

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::subscriber::{Answer, Subscriber};

struct Key {
    kid: String,
    signing: EncodingKey,
    jwk: Value,
}

pub struct TestIssuer {
    pub url: String,
    keys: Arc<Mutex<Vec<Key>>>,
    _server: Subscriber,
}

fn key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate().expect("an ECDSA P-256 key");
    let point = pair.public_key_raw(); // 0x04 || X || Y
    let (x, y) = point[1..].split_at(32);
    Key {
        kid: kid.to_owned(),
        signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("PKCS #8"),
        jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

impl TestIssuer {
    /// An issuer with one key, `k1`.
    pub async fn start() -> TestIssuer {
        let keys = Arc::new(Mutex::new(vec![key("k1")]));
        let url: Arc<Mutex<String>> = Arc::default();
        let (served_keys, served_url) = (keys.clone(), url.clone());
        let server = Subscriber::scripted(move |request, _| {
            let base = served_url.lock().expect("url").clone();
            let body = match request.path.as_str() {
                "/.well-known/openid-configuration" => {
                    json!({"issuer": base, "jwks_uri": format!("{base}/keys")})
                }
                "/keys" => {
                    let keys = served_keys.lock().expect("keys");
                    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
                }
                _ => return Answer::status(404),
            };
            Answer::status(200)
                .with_header("content-type", "application/json")
                .with_body(&body.to_string())
        })
        .await;
        let base = server.url().trim_end_matches('/').to_owned();
        *url.lock().expect("url") = base.clone();
        TestIssuer {
            url: base,
            keys,
            _server: server,
        }
    }

    /// Publishes a new key and signs with it from now on.
    pub fn rotate(&self, kid: &str) {
        self.keys.lock().expect("keys").push(key(kid));
    }

    /// A token for `sub` and `aud`, valid for five minutes, signed with
    /// the newest key.
    pub fn token(&self, sub: &str, aud: &str) -> String {
        self.sign(self.claims(sub, aud), None)
    }

    /// The claims of [`TestIssuer::token`], to alter.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        json!({"iss": self.url, "sub": sub, "aud": aud, "iat": now(), "exp": now() + 300})
    }

    /// Signs `claims` with the newest key, or (`Some(kid)`) with a key of
    /// this id that the issuer does not publish.
    pub fn sign(&self, claims: Value, forged_kid: Option<&str>) -> String {
        let keys = self.keys.lock().expect("keys");
        let forged;
        let key = match forged_kid {
            Some(kid) => {
                forged = key(kid);
                &forged
            }
            None => keys.last().expect("a key"),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.signing).expect("signed")
    }

    /// Seconds since the epoch, for claims.
    pub fn now(&self) -> u64 {
        now()
    }
}
