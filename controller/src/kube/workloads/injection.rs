//! A SinkBinding's variables in a workload's pod template, put in and
//! taken out as JSON patches, as Knative's binding does it: every
//! container and init container gets `K_SINK`, `K_CA_CERTS` (when the
//! sink has CA certificates) and `K_CE_OVERRIDES`, replacing any it had.
//! Pure, so each shape of workload is tested without an API.

use serde_json::{json, Value};

/// Set on a subject Ferry bound, naming the SinkBinding, so that the
/// variables are taken out again when the binding goes (and never from a
/// workload that set them itself).
pub const BOUND_BY: &str = "sinkbindings.ferry.dev/bound-by";

/// What Knative's binding owns in a container's `env`.
const VARIABLES: [&str; 3] = ["K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS"];

/// The variables one binding injects, in Knative's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variables {
    pub sink: String,
    pub ca_certs: Option<String>,
    /// `{"extensions":{...}}`, or empty without overrides.
    pub ce_overrides: String,
}

impl Variables {
    fn env(&self) -> Vec<Value> {
        let mut env = vec![json!({"name": "K_SINK", "value": self.sink})];
        if let Some(certs) = &self.ca_certs {
            env.push(json!({"name": "K_CA_CERTS", "value": certs}));
        }
        env.push(json!({"name": "K_CE_OVERRIDES", "value": self.ce_overrides}));
        env
    }
}

/// Where a kind keeps its pod template, as a JSON pointer.
pub fn pod_template(kind: &str) -> &'static str {
    match kind {
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => "/spec/template",
    }
}

/// The JSON patch that binds `object` (a workload of `kind`) to `binding`
/// with `variables`, or unbinds it (`None`); `None` when it already is as
/// asked. The patch first tests the object's resourceVersion, so a
/// workload changed meanwhile is refused rather than overwritten.
pub fn patch(
    object: &Value,
    kind: &str,
    binding: Option<(&str, &Variables)>,
) -> Option<Vec<Value>> {
    let template = pod_template(kind);
    let mut ops = Vec::new();
    for list in ["containers", "initContainers"] {
        let pointer = format!("{template}/spec/{list}");
        let Some(Value::Array(containers)) = object.pointer(&pointer) else {
            continue;
        };
        let rebound: Vec<Value> = containers
            .iter()
            .map(|c| with_env(c, binding.map(|(_, v)| v)))
            .collect();
        if &rebound != containers {
            ops.push(json!({"op": "replace", "path": pointer, "value": rebound}));
        }
    }
    let annotations = object.pointer("/metadata/annotations");
    let marked = annotations
        .and_then(|a| a.get(BOUND_BY))
        .and_then(Value::as_str);
    let key = format!("/metadata/annotations/{}", BOUND_BY.replace('/', "~1"));
    match (binding.map(|(name, _)| name), marked) {
        (Some(name), Some(current)) if name == current => {}
        (Some(name), Some(_)) => ops.push(json!({"op": "replace", "path": key, "value": name})),
        (Some(name), None) if annotations.is_some_and(Value::is_object) => {
            ops.push(json!({"op": "add", "path": key, "value": name}))
        }
        (Some(name), None) => ops
            .push(json!({"op": "add", "path": "/metadata/annotations", "value": {BOUND_BY: name}})),
        (None, Some(_)) => ops.push(json!({"op": "remove", "path": key})),
        (None, None) => {}
    }
    if ops.is_empty() {
        return None;
    }
    if let Some(version) = object.pointer("/metadata/resourceVersion") {
        ops.insert(
            0,
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}),
        );
    }
    Some(ops)
}

/// A pod template without any binding's variables: what a
/// ContainerSource's template is compared with.
pub fn unbound(template: &Value) -> Value {
    map_containers(template, |c| with_env(c, None))
}

/// `want` (a pod template) with the binding's variables each container of
/// the same name has in `have`, so a template update keeps the binding.
pub fn keep_bound(want: &Value, have: &Value) -> Value {
    map_containers(want, |container| {
        let name = &container["name"];
        let bound: Vec<Value> = ["containers", "initContainers"]
            .iter()
            .filter_map(|list| have["spec"][list].as_array())
            .flatten()
            .filter(|c| &c["name"] == name)
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
            .filter(|e| VARIABLES.contains(&e["name"].as_str().unwrap_or_default()))
            .collect();
        let mut container = with_env(container, None);
        if !bound.is_empty() {
            let mut env = container["env"].as_array().cloned().unwrap_or_default();
            env.extend(bound);
            container["env"] = Value::Array(env);
        }
        container
    })
}

fn map_containers(template: &Value, f: impl Fn(&Value) -> Value) -> Value {
    let mut template = template.clone();
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = template.pointer_mut(&format!("/spec/{list}")) {
            *containers = containers.iter().map(&f).collect();
        }
    }
    template
}

/// A container with Knative's variables taken out, then (when bound) put
/// back at the end of its `env`.
fn with_env(container: &Value, variables: Option<&Variables>) -> Value {
    let mut container = container.clone();
    let mut env: Vec<Value> = container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
            !VARIABLES.contains(&name)
        })
        .cloned()
        .collect();
    env.extend(variables.map(Variables::env).into_iter().flatten());
    match (env.is_empty(), container.as_object_mut()) {
        (true, Some(fields)) => {
            fields.remove("env");
        }
        (false, Some(fields)) => {
            fields.insert("env".into(), Value::Array(env));
        }
        (_, None) => {}
    }
    container
}

/// Whether every field `want` sets has that value in `have` (Knative's
/// semantic "derivative"): what the API server defaults does not count as
/// a difference.
pub fn derivative(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(h) => derivative(value, h),
                None => value.is_null() || is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| derivative(w, h))
        }
        (want, have) => want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.values().all(|v| v.is_null() || is_empty(v)),
        Value::Array(items) => items.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Applies a JSON patch of the shapes [`patch`] makes to a copy of
/// `object`, for tests.
#[cfg(test)]
fn apply(object: &Value, ops: &[Value]) -> Value {
    let mut object = object.clone();
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let (parent, last) = path.rsplit_once('/').unwrap();
        let last = last.replace("~1", "/");
        match op["op"].as_str().unwrap() {
            "test" => assert_eq!(object.pointer(path), Some(&op["value"])),
            "remove" => {
                object
                    .pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove(&last);
            }
            _ => {
                object.pointer_mut(parent).unwrap()[last] = op["value"].clone();
            }
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(ca: Option<&str>) -> Variables {
        Variables {
            sink: "http://broker.test/ns/default".into(),
            ca_certs: ca.map(str::to_owned),
            ce_overrides: r#"{"extensions":{"team":"ferry"}}"#.into(),
        }
    }

    fn deployment() -> Value {
        json!({"metadata": {"name": "app", "resourceVersion": "7"},
               "spec": {"template": {"spec": {
                   "initContainers": [{"name": "init"}],
                   "containers": [
                       {"name": "a", "env": [{"name": "KEEP", "value": "1"}, {"name": "K_SINK", "value": "http://old"}]},
                       {"name": "b"}]}}}})
    }

    fn env_names(object: &Value, pointer: &str) -> Vec<String> {
        object
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn binds_every_container_and_init_container_in_knatives_order() {
        let object = deployment();
        let ops = patch(&object, "Deployment", Some(("sb", &variables(Some("PEM"))))).unwrap();
        assert_eq!(ops[0]["op"], "test", "the resourceVersion is checked first");
        let bound = apply(&object, &ops);
        let containers = "/spec/template/spec/containers";
        assert_eq!(
            env_names(&bound, &format!("{containers}/0/env")),
            ["KEEP", "K_SINK", "K_CA_CERTS", "K_CE_OVERRIDES"],
            "the old K_SINK is replaced, the user's variable kept"
        );
        assert_eq!(
            bound.pointer(&format!("{containers}/0/env/1/value")),
            Some(&json!("http://broker.test/ns/default"))
        );
        assert_eq!(
            env_names(&bound, &format!("{containers}/1/env")),
            ["K_SINK", "K_CA_CERTS", "K_CE_OVERRIDES"]
        );
        assert_eq!(
            env_names(&bound, "/spec/template/spec/initContainers/0/env"),
            ["K_SINK", "K_CA_CERTS", "K_CE_OVERRIDES"]
        );
        assert_eq!(bound["metadata"]["annotations"][BOUND_BY], "sb");
        assert_eq!(
            patch(&bound, "Deployment", Some(("sb", &variables(Some("PEM"))))),
            None,
            "bound as asked: nothing to do"
        );
        let changed = patch(&bound, "Deployment", Some(("sb", &variables(None)))).unwrap();
        let rebound = apply(&bound, &changed);
        assert_eq!(
            env_names(&rebound, &format!("{containers}/1/env")),
            ["K_SINK", "K_CE_OVERRIDES"],
            "no CA certificates: no K_CA_CERTS"
        );
        let unbound = apply(&rebound, &patch(&rebound, "Deployment", None).unwrap());
        assert_eq!(
            env_names(&unbound, &format!("{containers}/0/env")),
            ["KEEP"]
        );
        assert!(unbound.pointer(&format!("{containers}/1/env")).is_none());
        assert!(unbound["metadata"]["annotations"].get(BOUND_BY).is_none());
        assert_eq!(patch(&unbound, "Deployment", None), None);
    }

    #[test]
    fn cron_jobs_keep_their_pod_template_in_the_job_template() {
        let object = json!({"metadata": {"annotations": {"other": "x"}},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}}});
        let ops = patch(&object, "CronJob", Some(("sb", &variables(None)))).unwrap();
        assert!(
            ops.iter().all(|op| op["op"] != "test"),
            "no resourceVersion, no test"
        );
        let bound = apply(&object, &ops);
        assert_eq!(
            env_names(
                &bound,
                "/spec/jobTemplate/spec/template/spec/containers/0/env"
            ),
            ["K_SINK", "K_CE_OVERRIDES"]
        );
        assert_eq!(bound["metadata"]["annotations"]["other"], "x");
        assert_eq!(bound["metadata"]["annotations"][BOUND_BY], "sb");
    }

    #[test]
    fn a_template_update_keeps_the_binding() {
        let have = json!({"spec": {"containers": [
            {"name": "a", "image": "old", "env": [{"name": "X", "value": "1"}, {"name": "K_SINK", "value": "http://s"}]}]}});
        let want = json!({"spec": {"containers": [{"name": "a", "image": "new", "env": [{"name": "X", "value": "1"}]}]}});
        assert!(!derivative(&want, &unbound(&have)), "the image changed");
        let kept = keep_bound(&want, &have);
        assert_eq!(kept["spec"]["containers"][0]["image"], "new");
        assert_eq!(kept["spec"]["containers"][0]["env"][1]["name"], "K_SINK");
        let same = json!({"spec": {"containers": [{"name": "a", "image": "old", "env": [{"name": "X", "value": "1"}]}]}});
        assert!(
            derivative(&same, &unbound(&have)),
            "bound variables are not a difference"
        );
    }

    #[test]
    fn derivative_ignores_what_the_server_adds() {
        let want = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}, "metadata": {"labels": {}}});
        let have = json!({"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}], "dnsPolicy": "ClusterFirst"}});
        assert!(derivative(&want, &have));
        let other = json!({"spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert!(!derivative(&other, &have));
        let more = json!({"spec": {"containers": [{"name": "c"}, {"name": "d"}]}});
        assert!(!derivative(&more, &have));
    }
}
