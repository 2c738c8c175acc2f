//! ApiServerSource: changes to Kubernetes objects as events, as Knative's
//! adapter sends them. Types `dev.knative.apiserver.{ref,resource}.{add,
//! update,delete}`, `source` the API server's URL, `subject` the object's
//! path (`/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`, core
//! kinds under `/api/v1`), extensions `kind`, `apiversion`, `name`,
//! `namespace`, and as data the reference (`Reference` mode) or the whole
//! object (`Resource` mode; the new one on update).
//!
//! As an informer does, each watch keeps the objects it has seen: the first
//! list's objects are `add`s, and a relist (a restarted watch) is compared
//! with what was seen, so nothing is reported twice and nothing is missed.
//! Label selectors and the owner filter are applied here, so they hold
//! against any API server.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use ferry_event::{Event, Value};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    api::{Api, DynamicObject, ListParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use tokio_util::sync::CancellationToken;

use crate::{
    keeper,
    sink::{Origin, Sender, SourceMetrics},
    WorkRx,
};

/// One `spec.resources` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub api_version: String,
    pub kind: String,
    /// `selector.matchLabels`.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Reference,
    Resource,
}

/// Which namespaces a source watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Its own (no `namespaceSelector`).
    Own,
    /// Those whose labels match (`{}` matches every namespace), as listed
    /// when the source starts.
    Matching(BTreeMap<String, String>),
}

/// A valid ApiServerSource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServer {
    pub namespace: String,
    pub name: String,
    pub resources: Vec<Watched>,
    /// `spec.owner`: only objects with an owner of this apiVersion and kind.
    pub owner: Option<(String, String)>,
    pub mode: Mode,
    pub namespaces: Namespaces,
    pub sink: String,
    pub extensions: Vec<(String, String)>,
}

impl ApiServer {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Update,
    Delete,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Update => "update",
            Change::Delete => "delete",
        }
    }
}

/// The event type for a mode and change.
pub fn event_type(mode: Mode, change: Change) -> String {
    let mode = match mode {
        Mode::Reference => "ref",
        Mode::Resource => "resource",
    };
    format!("dev.knative.apiserver.{mode}.{}", change.as_str())
}

/// The object's path on the API server.
pub fn subject(resource: &ApiResource, namespace: Option<&str>, name: &str) -> String {
    let base = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{}/{name}", resource.plural),
        None => format!("{base}/{}/{name}", resource.plural),
    }
}

/// The event for a change of `object`, sent from the API server at
/// `api_url`.
pub fn event(
    source: &ApiServer,
    api_url: &str,
    resource: &ApiResource,
    change: Change,
    object: &DynamicObject,
) -> Event {
    let name = object.metadata.name.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone();
    let id = uuid::Uuid::new_v4().to_string();
    let mut event = Event::new(&id, api_url, &event_type(source.mode, change));
    event.set(
        "subject",
        Value::String(subject(resource, namespace.as_deref(), &name)),
    );
    event.set("kind", Value::String(resource.kind.clone()));
    event.set("apiversion", Value::String(resource.api_version.clone()));
    event.set("name", Value::String(name.clone()));
    if let Some(ns) = &namespace {
        event.set("namespace", Value::String(ns.clone()));
    }
    let data = match source.mode {
        Mode::Reference => serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "name": name,
            "namespace": namespace.clone().unwrap_or_default(),
        }),
        Mode::Resource => {
            let mut whole = serde_json::to_value(object).unwrap_or_default();
            whole["apiVersion"] = resource.api_version.clone().into();
            whole["kind"] = resource.kind.clone().into();
            whole
        }
    };
    event.set_data(
        Some("application/json"),
        Some(Bytes::from(data.to_string())),
    );
    for (name, value) in &source.extensions {
        event.set(name, Value::String(value.clone()));
    }
    event
}

/// Whether an object passes the source's label selector and owner filter.
fn selected(source: &ApiServer, watched: &Watched, object: &DynamicObject) -> bool {
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let labelled = watched.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
    let owned = source.owner.as_ref().is_none_or(|(api_version, kind)| {
        object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| &o.api_version == api_version && &o.kind == kind)
    });
    labelled && owned
}

/// A Kubernetes API to watch, and its URL (each event's `source`).
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub url: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("url", &self.url).finish()
    }
}

impl Cluster {
    /// The cluster a kubeconfig file names (its current context).
    pub async fn from_kubeconfig(path: &std::path::Path) -> Result<Self, String> {
        let file = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_config(config)
    }

    /// The cluster the environment names (kubeconfig, or in-cluster).
    pub async fn infer() -> Result<Self, String> {
        let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
        Self::from_config(config)
    }

    fn from_config(config: kube::Config) -> Result<Self, String> {
        let url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        let client = Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(Cluster { client, url })
    }
}

/// Runs every ApiServerSource of the current work until `stop`; without a
/// cluster there is nothing to watch (the plan says so in the statuses).
pub async fn run(work: WorkRx, cluster: Cluster, metrics: SourceMetrics, stop: CancellationToken) {
    let sender = std::sync::Arc::new(Sender::new(metrics));
    keeper::keep(
        work,
        |w| &w.apiservers,
        ApiServer::key,
        |source, token| tokio::spawn(watch_source(source, cluster.clone(), sender.clone(), token)),
        stop,
    )
    .await;
}

/// One source: a watch per (resource, namespace), each change sent.
async fn watch_source(
    source: ApiServer,
    cluster: Cluster,
    sender: std::sync::Arc<Sender>,
    stop: CancellationToken,
) {
    let namespaces: Vec<Option<String>> = match &source.namespaces {
        Namespaces::Own => vec![Some(source.namespace.clone())],
        Namespaces::Matching(labels) => {
            let selector = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let api = Api::<Namespace>::all(cluster.client.clone());
            match api.list(&ListParams::default().labels(&selector)).await {
                // Filtered here too: not every API server applies it.
                Ok(list) => list
                    .items
                    .into_iter()
                    .filter(|n| {
                        let have = n.metadata.labels.clone().unwrap_or_default();
                        labels.iter().all(|(k, v)| have.get(k) == Some(v))
                    })
                    .map(|n| n.metadata.name)
                    .collect(),
                Err(error) => {
                    tracing::error!(source = %source.key(), %error, "cannot list namespaces");
                    Vec::new()
                }
            }
        }
    };
    let mut tasks = Vec::new();
    for watched in &source.resources {
        let (group, version) = match watched.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", watched.api_version.as_str()),
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &watched.kind));
        for ns in &namespaces {
            let api: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
                None => Api::all_with(cluster.client.clone(), &resource),
            };
            tasks.push(tokio::spawn(watch_one(
                source.clone(),
                watched.clone(),
                resource.clone(),
                api,
                cluster.url.clone(),
                sender.clone(),
                stop.clone(),
            )));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn watch_one(
    source: ApiServer,
    watched: Watched,
    resource: ApiResource,
    api: Api<DynamicObject>,
    api_url: String,
    sender: std::sync::Arc<Sender>,
    stop: CancellationToken,
) {
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known = Known::default();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => match next {
                Some(Ok(next)) => next,
                Some(Err(error)) => {
                    tracing::debug!(source = %source.key(), %error, "watch interrupted; resuming");
                    continue;
                }
                None => return,
            },
        };
        for (change, object) in known.changes(next) {
            if !selected(&source, &watched, &object) {
                continue;
            }
            let event = event(&source, &api_url, &resource, change, &object);
            let origin = Origin {
                kind: "ApiServerSource",
                namespace: &source.namespace,
                name: &source.name,
            };
            sender.deliver(origin, &source.sink, &event, &stop).await;
        }
    }
}

/// The objects a watch has seen, as an informer's store: a (re)list is
/// compared with it, so that an object listed again unchanged is no event,
/// a changed one an update, and one gone from the list a delete, however
/// often the watch restarts.
#[derive(Default)]
struct Known {
    objects: HashMap<String, (serde_json::Value, DynamicObject)>,
    /// Uids listed since the current (re)list began.
    listing: Option<HashSet<String>>,
}

impl Known {
    fn changes(&mut self, event: watcher::Event<DynamicObject>) -> Vec<(Change, DynamicObject)> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                let uid = uid(&object);
                if let Some(listing) = &mut self.listing {
                    listing.insert(uid);
                }
                self.apply(object).into_iter().collect()
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .objects
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|uid| self.objects.remove(&uid))
                    .map(|(_, object)| (Change::Delete, object))
                    .collect()
            }
            watcher::Event::Apply(object) => self.apply(object).into_iter().collect(),
            watcher::Event::Delete(object) => {
                self.objects.remove(&uid(&object));
                vec![(Change::Delete, object)]
            }
        }
    }

    fn apply(&mut self, object: DynamicObject) -> Option<(Change, DynamicObject)> {
        let value = serde_json::to_value(&object).unwrap_or_default();
        let change = match self.objects.get(&uid(&object)) {
            Some((before, _)) if *before == value => return None,
            Some(_) => Change::Update,
            None => Change::Add,
        };
        self.objects.insert(uid(&object), (value, object.clone()));
        Some((change, object))
    }
}

fn uid(object: &DynamicObject) -> String {
    object.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(mode: Mode) -> ApiServer {
        ApiServer {
            namespace: "ns".into(),
            name: "watcher".into(),
            resources: vec![],
            owner: None,
            mode,
            namespaces: Namespaces::Own,
            sink: "http://sink/".into(),
            extensions: vec![("team".into(), "ferry".into())],
        }
    }

    fn configmap() -> (ApiResource, DynamicObject) {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "ns", "uid": "u1"},
            "data": {"k": "v"}
        }))
        .unwrap();
        (resource, object)
    }

    #[test]
    fn events_carry_knatives_type_subject_extensions_and_data() {
        let (resource, object) = configmap();
        let e = event(
            &source(Mode::Reference),
            "https://api:6443",
            &resource,
            Change::Add,
            &object,
        );
        assert_eq!(e.ty(), "dev.knative.apiserver.ref.add");
        assert_eq!(e.source(), "https://api:6443");
        assert_eq!(
            e.get_str("subject"),
            Some("/api/v1/namespaces/ns/configmaps/settings")
        );
        assert_eq!(e.get_str("kind"), Some("ConfigMap"));
        assert_eq!(e.get_str("apiversion"), Some("v1"));
        assert_eq!(e.get_str("name"), Some("settings"));
        assert_eq!(e.get_str("namespace"), Some("ns"));
        assert_eq!(e.get_str("team"), Some("ferry"));
        assert_eq!(e.datacontenttype(), Some("application/json"));
        let data: serde_json::Value = serde_json::from_slice(e.data().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "ns"})
        );
        assert!(e.validate().is_ok());

        let e = event(
            &source(Mode::Resource),
            "https://api:6443",
            &resource,
            Change::Update,
            &object,
        );
        assert_eq!(e.ty(), "dev.knative.apiserver.resource.update");
        let data: serde_json::Value = serde_json::from_slice(e.data().unwrap()).unwrap();
        assert_eq!(data["data"]["k"], "v", "the whole object");

        let deployments = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        assert_eq!(
            subject(&deployments, Some("ns"), "web"),
            "/apis/apps/v1/namespaces/ns/deployments/web"
        );
    }

    #[test]
    fn relists_report_only_what_changed() {
        let (_, object) = configmap();
        let mut changed = object.clone();
        changed.data["data"]["k"] = "w".into();
        let mut known = Known::default();
        let kinds = |changes: Vec<(Change, DynamicObject)>| {
            changes.into_iter().map(|(c, _)| c).collect::<Vec<_>>()
        };
        assert_eq!(kinds(known.changes(watcher::Event::Init)), vec![]);
        assert_eq!(
            kinds(known.changes(watcher::Event::InitApply(object.clone()))),
            vec![Change::Add]
        );
        assert_eq!(kinds(known.changes(watcher::Event::InitDone)), vec![]);
        // The watch restarts: the same object again is no event.
        known.changes(watcher::Event::Init);
        assert_eq!(
            kinds(known.changes(watcher::Event::InitApply(object.clone()))),
            vec![]
        );
        known.changes(watcher::Event::InitDone);
        assert_eq!(
            kinds(known.changes(watcher::Event::Apply(changed.clone()))),
            vec![Change::Update]
        );
        assert_eq!(
            kinds(known.changes(watcher::Event::Apply(changed.clone()))),
            vec![],
            "unchanged"
        );
        // Deleted while the watch was down: the relist finds it gone.
        known.changes(watcher::Event::Init);
        assert_eq!(
            kinds(known.changes(watcher::Event::InitDone)),
            vec![Change::Delete]
        );
        assert_eq!(
            kinds(known.changes(watcher::Event::Apply(object.clone()))),
            vec![Change::Add]
        );
        assert_eq!(
            kinds(known.changes(watcher::Event::Delete(object))),
            vec![Change::Delete]
        );
    }

    #[test]
    fn labels_and_owner_select_objects() {
        let (_, mut object) = configmap();
        let watched = |labels: &[(&str, &str)]| Watched {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let plain = source(Mode::Reference);
        assert!(selected(&plain, &watched(&[]), &object));
        assert!(!selected(&plain, &watched(&[("app", "web")]), &object));
        object.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        assert!(selected(&plain, &watched(&[("app", "web")]), &object));
        let owned = ApiServer {
            owner: Some(("apps/v1".into(), "Deployment".into())),
            ..plain
        };
        assert!(!selected(&owned, &watched(&[]), &object), "no owner");
        object.metadata.owner_references = Some(vec![serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1"
        }))
        .unwrap()]);
        assert!(selected(&owned, &watched(&[]), &object));
    }
}
