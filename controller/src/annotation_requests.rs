//! Annotations asked for from outside the resources folder. In a cluster,
//! `ferry replay` annotates the object through the API; without one, it
//! writes a request file into the state folder's `annotations/`, and the
//! folder's controller sets those annotations on the object on every pass,
//! as `kubectl annotate` would have. The user's YAML stays as written.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::resources::{Metadata, Resources};

/// Annotations for one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotationRequest {
    /// `Trigger`, `Subscription` or `KafkaSource`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

/// Where a standalone keeps them, under its state folder.
pub fn folder(state: &Path) -> PathBuf {
    state.join("annotations")
}

/// Writes a request (replacing the object's earlier one) atomically.
pub fn write(dir: &Path, request: &AnnotationRequest) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!(
        "{}.{}.{}.json",
        request.kind.to_ascii_lowercase(),
        request.namespace,
        request.name
    ));
    let tmp = dir.join(".request.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(request)?)?;
    std::fs::rename(&tmp, &file)?;
    Ok(file)
}

/// Every request in `dir`; an unreadable one is logged and skipped.
pub fn load(dir: &Path) -> Vec<AnnotationRequest> {
    let Ok(files) = ferry_common::yaml_folder::files(dir) else {
        return Vec::new(); // none asked for yet
    };
    files
        .into_iter()
        .filter_map(|path| {
            let read = std::fs::read(&path).map_err(|e| e.to_string());
            match read.and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                Ok(request) => Some(request),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "annotation request not used");
                    None
                }
            }
        })
        .collect()
}

/// Sets each request's annotations on its object, when it exists.
pub fn apply(resources: &mut Resources, requests: &[AnnotationRequest]) {
    for request in requests {
        let found = metadata_mut(resources, &request.kind)
            .find(|m| m.namespace() == request.namespace && m.name == request.name);
        match found {
            Some(metadata) => metadata.annotations.extend(request.annotations.clone()),
            None => {
                tracing::debug!(kind = %request.kind, namespace = %request.namespace, name = %request.name, "annotation request for an object not in the folder")
            }
        }
    }
}

fn metadata_mut<'a>(
    resources: &'a mut Resources,
    kind: &str,
) -> Box<dyn Iterator<Item = &'a mut Metadata> + 'a> {
    match kind {
        "Trigger" => Box::new(resources.triggers.iter_mut().map(|t| &mut t.metadata)),
        "Subscription" => Box::new(resources.subscriptions.iter_mut().map(|s| &mut s.metadata)),
        "KafkaSource" => Box::new(resources.kafka_sources.iter_mut().map(|s| &mut s.metadata)),
        _ => Box::new(std::iter::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_request_annotates_its_object_only() {
        let dir = tempfile::tempdir().unwrap();
        let request = AnnotationRequest {
            kind: "Trigger".into(),
            namespace: "ns".into(),
            name: "t".into(),
            annotations: [("delivery.ferry.dev/replay".into(), "earliest#1".into())].into(),
        };
        write(dir.path(), &request).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let mut resources = Resources::default();
        resources.add_yaml(
            "t.yaml",
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: ns, annotations: {a: b}}\nspec: {broker: b, subscriber: {uri: 'http://s'}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: u, namespace: ns}\nspec: {broker: b, subscriber: {uri: 'http://s'}}\n",
        );
        let requests = load(dir.path());
        assert_eq!(requests, [request], "the broken file is skipped");
        apply(&mut resources, &requests);
        let annotations = |name: &str| {
            let t = resources.triggers.iter().find(|t| t.metadata.name == name);
            t.unwrap().metadata.annotations.clone()
        };
        assert_eq!(annotations("t")["delivery.ferry.dev/replay"], "earliest#1");
        assert_eq!(annotations("t")["a"], "b", "the YAML's own stay");
        assert!(annotations("u").is_empty());
    }
}
