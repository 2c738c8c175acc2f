//! An OpenID issuer for tests and benchmarks: signing keys made per run
//! (ECDSA P-256), discovery and JWKS served on 127.0.0.1, tokens signed on
//! demand. Keys can be added while it runs (rotation).

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

struct Key {
    kid: String,
    signing: EncodingKey,
    jwk: Value,
}

pub struct TestIssuer {
    pub url: String,
    keys: Arc<Mutex<Vec<Key>>>,
    server: tokio::task::JoinHandle<()>,
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

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

impl TestIssuer {
    /// An issuer with one key, `k1`.
    pub async fn start() -> std::io::Result<TestIssuer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let keys = Arc::new(Mutex::new(vec![key("k1")]));
        let (served, base) = (keys.clone(), url.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (served, base) = (served.clone(), base.clone());
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let body = match request.uri().path() {
                        "/.well-known/openid-configuration" => {
                            Some(json!({"issuer": base, "jwks_uri": format!("{base}/keys")}))
                        }
                        "/keys" => {
                            let keys = served.lock().expect("keys");
                            Some(
                                json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
                            )
                        }
                        _ => None,
                    };
                    let response = match body {
                        Some(body) => http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string()))),
                        None => http::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new())),
                    };
                    async move { Ok::<_, Infallible>(response.expect("a response")) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Ok(TestIssuer { url, keys, server })
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
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
