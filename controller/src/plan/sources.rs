//! Sources: each one's sink resolved, its spec checked, and what it runs
//! (a PingSource's schedule and event, a ContainerSource's process), with
//! Knative's status: `sinkUri`, `ceAttributes`, `SinkProvided` and `Ready`.
//! A SinkBinding only resolves its sink here.

use bytes::Bytes;
use ferry_sources::{
    apiserver::{self, ApiServer, Change, Mode, Namespaces, Watched},
    container::{self, Container},
    ping::{self, Ping, PingSpec},
};

use super::{
    addresses::resolve,
    output::Plan,
    settings::Settings,
    status::{CeAttribute, Condition, Ready, Status},
};
use crate::resources::{
    ApiServerSource, CeOverrides, ContainerSource, Destination, Metadata, PingSource, Resources,
    SinkBinding,
};

/// Every source: a status each, and what the valid ones run.
pub(super) fn plan_sources(resources: &Resources, settings: &Settings, plan: &mut Plan) {
    for source in sorted(&resources.ping_sources, |s| &s.metadata) {
        let (status, planned) = plan_ping_source(source, settings);
        plan.statuses.push(status);
        plan.sources.pings.extend(planned);
    }
    for source in sorted(&resources.container_sources, |s| &s.metadata) {
        let (status, planned) = plan_container_source(source, settings);
        plan.statuses.push(status);
        plan.sources.containers.extend(planned);
    }
    for binding in sorted(&resources.sink_bindings, |b| &b.metadata) {
        plan.statuses.push(plan_sink_binding(binding, settings));
    }
    for source in sorted(&resources.apiserver_sources, |s| &s.metadata) {
        let (status, planned) = plan_apiserver_source(source, settings);
        plan.statuses.push(status);
        plan.sources.apiservers.extend(planned);
    }
}

/// An ApiServerSource: what it watches, how it reports, and where to.
fn plan_apiserver_source(
    source: &ApiServerSource,
    settings: &Settings,
) -> (Status, Option<ApiServer>) {
    let (ns, name) = (source.metadata.namespace(), source.metadata.name.as_str());
    let spec = &source.spec;
    let status = Status::new("ApiServerSource", ns, name);
    let (sink, mut status) = match resolve_sink(&spec.sink, ns, settings, status) {
        Ok(resolved) => resolved,
        Err(status) => return (*status, None),
    };
    let mode = match spec.mode.as_deref() {
        None | Some("") | Some("Reference") => Mode::Reference,
        Some("Resource") => Mode::Resource,
        Some(other) => {
            let message = format!("spec.mode: '{other}' is neither Reference nor Resource");
            return (status.not_ready("InvalidSpec", message), None);
        }
    };
    if spec.resources.is_empty() {
        let message = "spec.resources: there is nothing to watch";
        return (status.not_ready("InvalidSpec", message), None);
    }
    if let Some((i, _)) = spec
        .resources
        .iter()
        .enumerate()
        .find(|(_, r)| r.api_version.is_empty() || r.kind.is_empty())
    {
        let message = format!("spec.resources[{i}]: apiVersion and kind are required");
        return (status.not_ready("InvalidSpec", message), None);
    }
    let Some(api_url) = &settings.api_server else {
        let message = "no Kubernetes API to watch: give a kubeconfig (KUBECONFIG or --kubeconfig)";
        return (status.not_ready("NoKubernetesAPI", message), None);
    };
    status.ce_attributes = [Change::Add, Change::Update, Change::Delete]
        .into_iter()
        .map(|change| CeAttribute {
            ty: apiserver::event_type(mode, change),
            source: api_url.clone(),
        })
        .collect();
    let (extensions, _) = overrides(&spec.ce_overrides);
    let planned = ApiServer {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        resources: spec
            .resources
            .iter()
            .map(|r| Watched {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                labels: r
                    .selector
                    .as_ref()
                    .map(|s| s.match_labels.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        owner: spec
            .owner
            .as_ref()
            .map(|o| (o.api_version.clone(), o.kind.clone())),
        mode,
        namespaces: match &spec.namespace_selector {
            None => Namespaces::Own,
            Some(selector) => Namespaces::Matching(selector.match_labels.clone()),
        },
        sink,
        extensions,
    };
    (status, Some(planned))
}

pub(super) fn sorted<T>(items: &[T], metadata: impl Fn(&T) -> &Metadata) -> Vec<&T> {
    let mut items: Vec<&T> = items.iter().collect();
    items.sort_by_key(|i| (metadata(i).namespace().to_owned(), metadata(i).name.clone()));
    items
}

/// Resolves a source's sink into its status (`sinkUri`, `SinkProvided`);
/// the status, not Ready, when it does not resolve.
fn resolve_sink(
    sink: &Destination,
    namespace: &str,
    settings: &Settings,
    mut status: Status,
) -> Result<(String, Status), Box<Status>> {
    match resolve(sink, namespace, settings) {
        Ok(sink) => {
            status.sink_uri = Some(sink.clone());
            status
                .conditions
                .push(condition(Ready::True, "", String::new()));
            Ok((sink, status))
        }
        Err(message) => {
            status
                .conditions
                .push(condition(Ready::False, "NotFound", message.clone()));
            Err(Box::new(
                status.not_ready("NotFound", format!("sink: {message}")),
            ))
        }
    }
}

/// `ceOverrides.extensions` as pairs, and as `K_CE_OVERRIDES` JSON.
fn overrides(
    ce_overrides: &Option<CeOverrides>,
) -> (Vec<(String, String)>, Option<serde_json::Value>) {
    let Some(o) = ce_overrides else {
        return (Vec::new(), None);
    };
    let pairs = o
        .extensions
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (
        pairs,
        Some(serde_json::json!({ "extensions": o.extensions })),
    )
}

/// A ContainerSource's first container, as a local process: its command
/// and args with the template's env, `K_SINK` and `K_CE_OVERRIDES`.
fn plan_container_source(
    source: &ContainerSource,
    settings: &Settings,
) -> (Status, Option<Container>) {
    let (ns, name) = (source.metadata.namespace(), source.metadata.name.as_str());
    let status = Status::new("ContainerSource", ns, name);
    let (sink, mut status) = match resolve_sink(&source.spec.sink, ns, settings, status) {
        Ok(resolved) => resolved,
        Err(status) => return (*status, None),
    };
    let Some(first) = source.spec.template.spec.containers.first() else {
        let message = "spec.template.spec.containers: there is no container";
        return (status.not_ready("InvalidSpec", message), None);
    };
    if first.command.is_empty() {
        let message = "spec.template.spec.containers[0].command: standalone runs a container's command, and this one names none";
        return (status.not_ready("InvalidSpec", message), None);
    }
    let (_, json) = overrides(&source.spec.ce_overrides);
    let mut env: Vec<(String, String)> = first
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    env.push(("K_SINK".into(), sink));
    if let Some(json) = &json {
        env.push(("K_CE_OVERRIDES".into(), json.to_string()));
    }
    let argv = first
        .command
        .iter()
        .chain(&first.args)
        .map(|a| container::expand(a, &env))
        .collect();
    status.message = format!(
        "runs containers[0]'s command as a local process (standalone); the image '{}' is not used",
        first.image
    );
    status.ce_overrides = json;
    let planned = Container {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        argv,
        env,
    };
    (status, Some(planned))
}

/// A SinkBinding resolves its sink; `ferry run --binding` reads it.
fn plan_sink_binding(binding: &SinkBinding, settings: &Settings) -> Status {
    let (ns, name) = (binding.metadata.namespace(), binding.metadata.name.as_str());
    let status = Status::new("SinkBinding", ns, name);
    match resolve_sink(&binding.spec.sink, ns, settings, status) {
        Ok((_, mut status)) => {
            status.ce_overrides = overrides(&binding.spec.ce_overrides).1;
            status.sink_ca_certs = binding.spec.sink.ca_certs.clone();
            status
        }
        Err(status) => *status,
    }
}

fn plan_ping_source(source: &PingSource, settings: &Settings) -> (Status, Option<Ping>) {
    let (ns, name) = (source.metadata.namespace(), source.metadata.name.as_str());
    let spec = &source.spec;
    let mut status = Status::new("PingSource", ns, name);
    status.ce_attributes = vec![CeAttribute {
        ty: ping::PING_TYPE.to_owned(),
        source: ping::source(ns, name),
    }];
    let sink = match resolve(&spec.sink, ns, settings) {
        Ok(sink) => {
            status.sink_uri = Some(sink.clone());
            status
                .conditions
                .push(condition(Ready::True, "", String::new()));
            sink
        }
        Err(message) => {
            status
                .conditions
                .push(condition(Ready::False, "NotFound", message.clone()));
            return (
                status.not_ready("NotFound", format!("sink: {message}")),
                None,
            );
        }
    };
    let checked = ping::validate(&PingSpec {
        schedule: &spec.schedule,
        timezone: spec.timezone.as_deref(),
        content_type: spec.content_type.as_deref(),
        data: spec.data.as_deref(),
        data_base64: spec.data_base64.as_deref(),
    });
    let (schedule, data): (_, Option<Bytes>) = match checked {
        Ok(checked) => checked,
        Err(invalid) => {
            let message = format!("{}: {}", invalid.field, invalid.message);
            return (status.not_ready("InvalidSpec", message), None);
        }
    };
    let (extensions, _) = overrides(&spec.ce_overrides);
    let planned = Ping {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        schedule,
        content_type: spec.content_type.clone(),
        data,
        extensions,
        sink,
    };
    (status, Some(planned))
}

fn condition(status: Ready, reason: &str, message: String) -> Condition {
    Condition::new("SinkProvided", status, reason, message)
}
