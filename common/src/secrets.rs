//! Where Kafka credentials' Secrets are read: the Kubernetes API in a
//! cluster, the resources folder (`v1` Secrets beside the other YAML) in
//! standalone, or nowhere.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

use crate::credentials::{keys, Credentials, SecretAuth};

/// Credentials by what names them; an entry per resource that names any.
pub type Resolved = HashMap<SecretAuth, Result<Credentials, String>>;

#[derive(Clone, Default)]
pub enum Secrets {
    /// No store: a resource naming a Secret is refused with the reason.
    #[default]
    None,
    /// `v1` Secrets in the YAML files of this folder.
    Folder(PathBuf),
    Kube(kube::Client),
}

// === impl Secrets ===

impl Secrets {
    /// `none`, `kube` (in-cluster or KUBECONFIG) or a folder.
    pub async fn from_flag(flag: &str) -> Result<Secrets, String> {
        Ok(match flag {
            "" | "none" => Secrets::None,
            "kube" => Secrets::Kube(
                kube::Client::try_default()
                    .await
                    .map_err(|e| format!("cannot reach the Kubernetes API for Secrets: {e}"))?,
            ),
            folder => Secrets::Folder(folder.into()),
        })
    }

    /// A Secret's data (`stringData` over `data`, as the API server merges
    /// them).
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let secret = match self {
            Secrets::None => {
                return Err(format!(
                    "Secret {namespace}/{name} cannot be read: this process has no Secret store (--secrets)"
                ))
            }
            Secrets::Kube(client) => {
                match kube::Api::<Secret>::namespaced(client.clone(), namespace)
                    .get(name)
                    .await
                {
                    Ok(secret) => Some(secret),
                    // By the code: not every API server spells the reason
                    // as Kubernetes does (`NotFound`).
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(e) => return Err(format!("cannot read Secret {namespace}/{name}: {e}")),
                }
            }
            Secrets::Folder(dir) => folder_secret(dir, namespace, name)?,
        };
        let secret = secret.ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        Ok(data)
    }

    /// The credentials `auth` names.
    pub async fn credentials(&self, auth: &SecretAuth) -> Result<Credentials, String> {
        let data = match auth {
            SecretAuth::Secret { namespace, name } => self.get(namespace, name).await?,
            SecretAuth::Fields { protocol, fields } => {
                let mut data = BTreeMap::new();
                data.insert(keys::PROTOCOL.to_owned(), protocol.clone().into_bytes());
                // The contract has no field for `user.skip`: fields without a
                // client key mean TLS that verifies the server only.
                if !fields.iter().any(|f| f.field == keys::USER_KEY) {
                    data.insert(keys::USER_SKIP.to_owned(), b"true".to_vec());
                }
                let mut read: HashMap<(&str, &str), BTreeMap<String, Vec<u8>>> = HashMap::new();
                for f in fields {
                    let secret = match read.get(&(&f.namespace, &f.name)) {
                        Some(s) => s,
                        None => {
                            let s = self.get(&f.namespace, &f.name).await?;
                            read.entry((&f.namespace, &f.name)).or_insert(s)
                        }
                    };
                    match secret.get(&f.key) {
                        Some(v) if !v.is_empty() => {
                            data.insert(f.field.to_owned(), v.clone());
                        }
                        _ => {
                            return Err(format!(
                                "missing secret key or empty secret value ({}/{}.{})",
                                f.namespace, f.name, f.key
                            ))
                        }
                    }
                }
                data
            }
        };
        Credentials::from_data(&data)
            .map_err(|e| format!("Secret {}: {e}", auth.secrets().join(", ")))
    }

    /// Reads the credentials of every `auth`, each once.
    pub async fn resolve(&self, auths: impl IntoIterator<Item = SecretAuth>) -> Resolved {
        let mut resolved = Resolved::new();
        for auth in auths {
            if let std::collections::hash_map::Entry::Vacant(entry) = resolved.entry(auth) {
                let credentials = self.credentials(entry.key()).await;
                entry.insert(credentials);
            }
        }
        resolved
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secrets::None => f.write_str("none"),
            Secrets::Folder(dir) => write!(f, "folder {}", dir.display()),
            Secrets::Kube(_) => f.write_str("kube"),
        }
    }
}

/// The Secret `namespace/name` among a folder's YAML documents (no
/// namespace means `default`, as `kubectl apply` has it).
fn folder_secret(dir: &Path, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
    for (file, text) in crate::yaml_folder::read(dir).map_err(|e| e.to_string())? {
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let Ok(value) = <serde_json::Value as serde::Deserialize>::deserialize(document) else {
                break; // the folder controller reports the syntax error
            };
            let is = |k: &str, want: &str| value.get(k).and_then(|v| v.as_str()) == Some(want);
            let meta = |k: &str| {
                value
                    .pointer(&format!("/metadata/{k}"))
                    .and_then(|v| v.as_str())
            };
            if !(is("apiVersion", "v1") && is("kind", "Secret")) || meta("name") != Some(name) {
                continue;
            }
            if meta("namespace").unwrap_or("default") != namespace {
                continue;
            }
            return parse_secret(value)
                .map(Some)
                .map_err(|e| format!("{file}: invalid Secret {namespace}/{name}: {e}"));
        }
    }
    Ok(None)
}

/// Parses a Secret document; `data` must be base64, as the API requires.
fn parse_secret(mut value: serde_json::Value) -> Result<Secret, String> {
    if let Some(data) = value.get_mut("data").and_then(|d| d.as_object_mut()) {
        for (key, v) in data.iter_mut() {
            let text = v.as_str().unwrap_or_default();
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("data.{key} is not base64: {e}"))?;
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::FieldRef;

    fn folder(yaml: &str) -> (tempfile::TempDir, Secrets) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secrets.yaml"), yaml).unwrap();
        let secrets = Secrets::Folder(dir.path().to_owned());
        (dir, secrets)
    }

    const YAML: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: kafka, namespace: team }
data: { protocol: SSL }
---
apiVersion: v1
kind: Secret
metadata: { name: kafka, namespace: team }
data:
  protocol: U0FTTF9QTEFJTlRFWFQ=   # SASL_PLAINTEXT
  user: YWxpY2U=                   # alice
stringData:
  password: hunter2
---
apiVersion: v1
kind: Secret
metadata: { name: tls }
stringData: { ca: CA-PEM, empty: "" }
"#;

    #[tokio::test]
    async fn folder_secrets_merge_data_and_string_data() {
        let (_dir, secrets) = folder(YAML);
        let data = secrets.get("team", "kafka").await.unwrap();
        assert_eq!(data["protocol"], b"SASL_PLAINTEXT");
        assert_eq!(data["user"], b"alice");
        assert_eq!(data["password"], b"hunter2");
        assert_eq!(
            secrets.get("other", "kafka").await.unwrap_err(),
            "Secret other/kafka not found"
        );
        assert_eq!(
            secrets.get("default", "tls").await.unwrap()["ca"],
            b"CA-PEM"
        );
        let c = secrets
            .credentials(&SecretAuth::Secret {
                namespace: "team".into(),
                name: "kafka".into(),
            })
            .await
            .unwrap();
        assert_eq!(c.protocol(), "SASL_PLAINTEXT");
    }

    #[tokio::test]
    async fn fields_come_from_several_secrets() {
        let (_dir, secrets) = folder(YAML);
        let field = |field, namespace: &str, name: &str, key: &str| FieldRef {
            field,
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        };
        let auth = SecretAuth::Fields {
            protocol: "SASL_SSL".into(),
            fields: vec![
                field(keys::CA_CRT, "default", "tls", "ca"),
                field(keys::PASSWORD, "team", "kafka", "password"),
                field(keys::USER, "team", "kafka", "user"),
            ],
        };
        let c = secrets.credentials(&auth).await.unwrap();
        assert_eq!(c.protocol(), "SASL_SSL");

        let server_only = SecretAuth::Fields {
            protocol: "SSL".into(),
            fields: vec![field(keys::CA_CRT, "default", "tls", "ca")],
        };
        assert_eq!(
            secrets.credentials(&server_only).await.unwrap().protocol(),
            "SSL"
        );

        let empty = SecretAuth::Fields {
            protocol: "SSL".into(),
            fields: vec![field(keys::CA_CRT, "default", "tls", "empty")],
        };
        assert_eq!(
            secrets.credentials(&empty).await.unwrap_err(),
            "missing secret key or empty secret value (default/tls.empty)"
        );
    }

    #[tokio::test]
    async fn bad_secrets_and_no_store_are_named() {
        let (_dir, secrets) =
            folder("apiVersion: v1\nkind: Secret\nmetadata: {name: k}\ndata: {protocol: '%%%'}\n");
        let error = secrets.get("default", "k").await.unwrap_err();
        assert!(error.contains("data.protocol is not base64"), "{error}");
        let error = Secrets::None.get("default", "k").await.unwrap_err();
        assert!(error.contains("no Secret store"), "{error}");
        let (_dir, secrets) = folder(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: k}\nstringData: {protocol: TLS}\n",
        );
        let error = secrets
            .credentials(&SecretAuth::Secret {
                namespace: "default".into(),
                name: "k".into(),
            })
            .await
            .unwrap_err();
        assert!(
            error.starts_with("Secret default/k: protocol TLS unsupported"),
            "{error}"
        );
    }
}
