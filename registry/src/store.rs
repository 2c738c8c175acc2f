//! Where EventTypes are kept: standalone's folder, which its controller
//! reads beside the user's resources (so they survive a restart and show
//! in `/resources`), or the Kubernetes API.

use std::path::PathBuf;

use kube::{
    api::{Api, DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
    Client,
};
use serde_json::Value;

#[derive(Clone)]
pub enum Store {
    Folder(PathBuf),
    Kube(Client),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Folder(dir) => write!(f, "Folder({})", dir.display()),
            Store::Kube(_) => f.write_str("Kube"),
        }
    }
}

/// Whether a create made the object or found it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

impl Store {
    /// Creates the EventType `object` unless one of its name exists.
    pub async fn create(&self, object: &Value) -> Result<Created, String> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        match self {
            Store::Folder(dir) => {
                let path = dir.join(format!("{namespace}.{name}.json"));
                if path.exists() {
                    return Ok(Created::Existing);
                }
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                // Written whole, then renamed: the folder's reader never
                // sees half an object.
                let partial = dir.join(format!(".{namespace}.{name}.json.partial"));
                let text = serde_json::to_vec_pretty(object).expect("objects serialise");
                std::fs::write(&partial, text)
                    .and_then(|()| std::fs::rename(&partial, &path))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(Created::New)
            }
            Store::Kube(client) => {
                let resource = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("eventing.knative.dev", "v1beta2", "EventType"),
                    "eventtypes",
                );
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), namespace, &resource);
                let object: DynamicObject =
                    serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => Ok(Created::New),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(Created::Existing),
                    Err(error) => Err(format!(
                        "cannot create EventType {namespace}/{name}: {error}"
                    )),
                }
            }
        }
    }
}
