//! Kafka credentials from Secrets, as the reference reads them.
//!
//! A contract resource names its credentials ([`SecretAuth`]): a whole
//! Secret with the reference's keys (a KafkaSink's `auth.secret.ref`, a
//! broker config's `auth.secret.ref.name`), or fields picked
//! from several Secrets (a KafkaSource's `net`). [`Credentials`] are what
//! such Secrets say, checked with the reference control plane's rules and
//! turned into librdkafka properties. Fetching the Secrets is the
//! `secrets` module's job.

use std::{collections::BTreeMap, fmt};

use ferry_proto::{
    resource::Auth, KeyFieldReference, MultiSecretReference, Protocol, Reference, SecretField,
    SecretReference,
};
use rdkafka::ClientConfig;

/// The keys of a credentials Secret (the reference's names).
pub mod keys {
    pub const PROTOCOL: &str = "protocol";
    pub const SASL_MECHANISM: &str = "sasl.mechanism";
    pub const USER: &str = "user";
    pub const PASSWORD: &str = "password";
    pub const CA_CRT: &str = "ca.crt";
    pub const USER_CRT: &str = "user.crt";
    pub const USER_KEY: &str = "user.key";
    pub const USER_SKIP: &str = "user.skip";
}

/// Which Secrets hold a resource's Kafka credentials.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretAuth {
    /// One Secret holding every key of [`keys`].
    Secret { namespace: String, name: String },
    /// The protocol, and each other value from a key of some Secret.
    Fields {
        protocol: String,
        fields: Vec<FieldRef>,
    },
}

/// One value of [`SecretAuth::Fields`]: `field` (a key of [`keys`]) is
/// `key` of the Secret `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRef {
    pub field: &'static str,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

// === impl SecretAuth ===

impl SecretAuth {
    /// What a contract resource names; `None` for no credentials.
    pub fn from_contract(auth: Option<&Auth>) -> Option<SecretAuth> {
        match auth? {
            Auth::AbsentAuth(_) => None,
            Auth::AuthSecret(r) => Some(SecretAuth::Secret {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }),
            Auth::MultiAuthSecret(multi) => Some(SecretAuth::Fields {
                protocol: protocol_name(multi.protocol()).to_owned(),
                fields: sorted(
                    multi
                        .references
                        .iter()
                        .flat_map(|s| {
                            let r = s.reference.clone().unwrap_or_default();
                            s.key_field_references.iter().filter_map(move |k| {
                                Some(FieldRef {
                                    field: field_key(k.field())?,
                                    namespace: r.namespace.clone(),
                                    name: r.name.clone(),
                                    key: k.secret_key.clone(),
                                })
                            })
                        })
                        .collect(),
                ),
            }),
        }
    }

    /// The contract's form, as the reference control plane writes it (one
    /// reference per Secret, its fields beneath).
    pub fn to_contract(&self) -> Auth {
        match self {
            SecretAuth::Secret { namespace, name } => Auth::AuthSecret(Reference {
                namespace: namespace.clone(),
                name: name.clone(),
                ..Default::default()
            }),
            SecretAuth::Fields { protocol, fields } => {
                let mut by_secret: BTreeMap<(&str, &str), Vec<KeyFieldReference>> = BTreeMap::new();
                for f in fields {
                    let mut k = KeyFieldReference {
                        secret_key: f.key.clone(),
                        ..Default::default()
                    };
                    k.set_field(secret_field(f.field));
                    by_secret
                        .entry((&f.namespace, &f.name))
                        .or_default()
                        .push(k);
                }
                let mut multi = MultiSecretReference {
                    references: by_secret
                        .into_iter()
                        .map(
                            |((namespace, name), key_field_references)| SecretReference {
                                reference: Some(Reference {
                                    namespace: namespace.to_owned(),
                                    name: name.to_owned(),
                                    ..Default::default()
                                }),
                                key_field_references,
                            },
                        )
                        .collect(),
                    ..Default::default()
                };
                multi.set_protocol(protocol_value(protocol));
                Auth::MultiAuthSecret(multi)
            }
        }
    }

    /// The Secrets it reads, `namespace/name`, for messages.
    pub fn secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            SecretAuth::Secret { namespace, name } => vec![format!("{namespace}/{name}")],
            SecretAuth::Fields { fields, .. } => fields
                .iter()
                .map(|f| format!("{}/{}", f.namespace, f.name))
                .collect(),
        };
        names.dedup();
        names
    }
}

fn sorted(mut fields: Vec<FieldRef>) -> Vec<FieldRef> {
    fields.sort();
    fields
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Plaintext => "PLAINTEXT",
        Protocol::SaslPlaintext => "SASL_PLAINTEXT",
        Protocol::Ssl => "SSL",
        Protocol::SaslSsl => "SASL_SSL",
    }
}

fn protocol_value(name: &str) -> Protocol {
    match name {
        "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
        "SSL" => Protocol::Ssl,
        "SASL_SSL" => Protocol::SaslSsl,
        _ => Protocol::Plaintext,
    }
}

/// The Secret key a contract field stands for; `None` for the fields of
/// AWS MSK IAM (type, token provider, role), which Ferry does not support.
fn field_key(f: SecretField) -> Option<&'static str> {
    Some(match f {
        SecretField::SaslMechanism => keys::SASL_MECHANISM,
        SecretField::CaCrt => keys::CA_CRT,
        SecretField::UserCrt => keys::USER_CRT,
        SecretField::UserKey => keys::USER_KEY,
        SecretField::User => keys::USER,
        SecretField::Password => keys::PASSWORD,
        SecretField::Type | SecretField::TokenProvider | SecretField::RoleArn => return None,
    })
}

fn secret_field(key: &str) -> SecretField {
    match key {
        keys::CA_CRT => SecretField::CaCrt,
        keys::USER_CRT => SecretField::UserCrt,
        keys::USER_KEY => SecretField::UserKey,
        keys::USER => SecretField::User,
        keys::PASSWORD => SecretField::Password,
        _ => SecretField::SaslMechanism,
    }
}

/// librdkafka security properties, checked. Compared and hashed by value,
/// so a changed Secret makes new clients; printed without its values.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credentials {
    protocol: String,
    properties: BTreeMap<&'static str, String>,
}

// === impl Credentials ===

impl Credentials {
    /// What a Secret's data says, with the reference control plane's
    /// rules and messages.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Credentials, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            data.get(key)
                .map(|v| String::from_utf8(v.clone()).map_err(|_| format!("{key} is not UTF-8")))
                .transpose()
        };
        let protocol = text(keys::PROTOCOL)?.ok_or_else(|| {
            format!("protocol required (key: {}) supported protocols: [PLAINTEXT SASL_PLAINTEXT SSL SASL_SSL]", keys::PROTOCOL)
        })?;
        let (sasl, ssl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SASL_PLAINTEXT" => (true, false),
            "SSL" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                    "protocol {other} unsupported (key: {}), supported protocols: [PLAINTEXT SASL_PLAINTEXT SSL SASL_SSL]",
                    keys::PROTOCOL
                ))
            }
        };
        let mut properties = BTreeMap::new();
        properties.insert("security.protocol", protocol.clone());
        if sasl {
            let mechanism = text(keys::SASL_MECHANISM)?.unwrap_or_else(|| "PLAIN".into());
            match mechanism.as_str() {
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {}
                "OAUTHBEARER" => {
                    return Err(format!(
                        "[protocol {protocol}] SASL mechanism OAUTHBEARER is not supported by Ferry"
                    ))
                }
                _ => {
                    return Err(format!(
                        "[protocol {protocol}] unsupported SASL mechanism (key: {})",
                        keys::SASL_MECHANISM
                    ))
                }
            }
            let required = |key: &str| match text(key)? {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!(
                    "[protocol {protocol}] SASL {key} required (key: {key})"
                )),
            };
            properties.insert("sasl.username", required(keys::USER)?);
            properties.insert("sasl.password", required(keys::PASSWORD)?);
            properties.insert("sasl.mechanisms", mechanism);
        }
        if ssl {
            if let Some(ca) = text(keys::CA_CRT)? {
                properties.insert("ssl.ca.pem", ca);
            }
            // Only SSL authenticates with a client certificate; SASL_SSL
            // authenticates with SASL.
            if !sasl && !skips_client_auth(text(keys::USER_SKIP)?.as_deref(), &protocol)? {
                for (key, property) in [
                    (keys::USER_KEY, "ssl.key.pem"),
                    (keys::USER_CRT, "ssl.certificate.pem"),
                ] {
                    let value = text(key)?.ok_or_else(|| {
                        format!(
                            "[protocol {protocol}] required user {} (key: {key}) - use \"{}: true\" to disable client auth",
                            if key == keys::USER_KEY { "key" } else { "cert" },
                            keys::USER_SKIP
                        )
                    })?;
                    properties.insert(property, value);
                }
            }
        }
        Ok(Credentials {
            protocol,
            properties,
        })
    }

    /// Sets the security properties on a client configuration.
    pub fn apply_to(&self, config: &mut ClientConfig) {
        for (k, v) in &self.properties {
            config.set(*k, v);
        }
    }

    pub fn protocol(&self) -> &str {
        &self.protocol
    }
}

fn skips_client_auth(value: Option<&str>, protocol: &str) -> Result<bool, String> {
    match value.map(str::trim) {
        None => Ok(false),
        Some("true" | "TRUE" | "True" | "1" | "t" | "T") => Ok(true),
        Some("false" | "FALSE" | "False" | "0" | "f" | "F") => Ok(false),
        Some(other) => Err(format!(
            "[protocol {protocol}] failed to parse client auth flag (key: {}): '{other}'",
            keys::USER_SKIP
        )),
    }
}

/// Passwords and keys stay out of logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("protocol", &self.protocol)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn properties(c: &Credentials) -> Vec<(&str, &str)> {
        c.properties.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn each_protocol_becomes_librdkafka_properties() {
        let plain = Credentials::from_data(&data(&[("protocol", "PLAINTEXT")])).unwrap();
        assert_eq!(properties(&plain), [("security.protocol", "PLAINTEXT")]);

        let sasl = Credentials::from_data(&data(&[
            ("protocol", "SASL_PLAINTEXT"),
            ("user", "u"),
            ("password", "p"),
        ]))
        .unwrap();
        assert_eq!(
            properties(&sasl),
            [
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.password", "p"),
                ("sasl.username", "u"),
                ("security.protocol", "SASL_PLAINTEXT"),
            ]
        );

        let mtls = Credentials::from_data(&data(&[
            ("protocol", "SSL"),
            ("ca.crt", "CA"),
            ("user.crt", "CRT"),
            ("user.key", "KEY"),
        ]))
        .unwrap();
        assert_eq!(
            properties(&mtls),
            [
                ("security.protocol", "SSL"),
                ("ssl.ca.pem", "CA"),
                ("ssl.certificate.pem", "CRT"),
                ("ssl.key.pem", "KEY"),
            ]
        );

        let scram_tls = Credentials::from_data(&data(&[
            ("protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("user", "u"),
            ("password", "p"),
            ("ca.crt", "CA"),
        ]))
        .unwrap();
        assert_eq!(
            properties(&scram_tls),
            [
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.password", "p"),
                ("sasl.username", "u"),
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.pem", "CA"),
            ]
        );

        let server_only =
            Credentials::from_data(&data(&[("protocol", "SSL"), ("user.skip", "true")])).unwrap();
        assert_eq!(properties(&server_only), [("security.protocol", "SSL")]);
    }

    #[test]
    fn what_is_missing_or_unknown_is_named() {
        let error = |pairs: &[(&str, &str)]| Credentials::from_data(&data(pairs)).unwrap_err();
        assert!(error(&[]).starts_with("protocol required (key: protocol)"));
        assert!(error(&[("protocol", "TLS")]).starts_with("protocol TLS unsupported"));
        assert_eq!(
            error(&[("protocol", "SASL_SSL"), ("user", "u")]),
            "[protocol SASL_SSL] SASL password required (key: password)"
        );
        assert_eq!(
            error(&[("protocol", "SSL")]),
            "[protocol SSL] required user key (key: user.key) - use \"user.skip: true\" to disable client auth"
        );
        assert_eq!(
            error(&[("protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "GSSAPI")]),
            "[protocol SASL_PLAINTEXT] unsupported SASL mechanism (key: sasl.mechanism)"
        );
        assert!(
            error(&[("protocol", "SASL_SSL"), ("sasl.mechanism", "OAUTHBEARER")])
                .contains("not supported by Ferry")
        );
        assert!(error(&[("protocol", "SSL"), ("user.skip", "maybe")])
            .contains("failed to parse client auth flag"));
    }

    #[test]
    fn debug_shows_no_secret_value() {
        let c = Credentials::from_data(&data(&[
            ("protocol", "SASL_PLAINTEXT"),
            ("user", "alice"),
            ("password", "hunter2"),
        ]))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("SASL_PLAINTEXT"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn contract_form_round_trips() {
        let single = SecretAuth::Secret {
            namespace: "ns".into(),
            name: "kafka".into(),
        };
        assert_eq!(
            SecretAuth::from_contract(Some(&single.to_contract())),
            Some(single)
        );
        let fields = SecretAuth::Fields {
            protocol: "SASL_SSL".into(),
            fields: vec![
                FieldRef {
                    field: keys::CA_CRT,
                    namespace: "ns".into(),
                    name: "tls".into(),
                    key: "ca.crt".into(),
                },
                FieldRef {
                    field: keys::PASSWORD,
                    namespace: "ns".into(),
                    name: "sasl".into(),
                    key: "pw".into(),
                },
                FieldRef {
                    field: keys::USER,
                    namespace: "ns".into(),
                    name: "sasl".into(),
                    key: "name".into(),
                },
            ],
        };
        let contract = fields.to_contract();
        let Auth::MultiAuthSecret(multi) = &contract else {
            panic!("{contract:?}")
        };
        assert_eq!(multi.protocol(), Protocol::SaslSsl);
        assert_eq!(multi.references.len(), 2, "one reference per Secret");
        assert_eq!(SecretAuth::from_contract(Some(&contract)), Some(fields));
        assert_eq!(
            SecretAuth::from_contract(Some(&Auth::AbsentAuth(Default::default()))),
            None
        );
    }
}
