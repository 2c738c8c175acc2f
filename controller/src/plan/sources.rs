//! Sources: each one's sink resolved, its spec checked, and what it runs
//! (a PingSource's schedule and event), with Knative's status: `sinkUri`,
//! `ceAttributes`, `SinkProvided` and `Ready`.

use bytes::Bytes;
use ferry_sources::ping::{self, Ping, PingSpec};

use super::{
    addresses::resolve,
    output::Plan,
    settings::Settings,
    status::{CeAttribute, Condition, Ready, Status},
};
use crate::resources::{PingSource, Resources};

pub(super) fn plan_ping_sources(resources: &Resources, settings: &Settings, plan: &mut Plan) {
    let mut sources: Vec<&PingSource> = resources.ping_sources.iter().collect();
    sources.sort_by_key(|s| (s.metadata.namespace().to_owned(), s.metadata.name.clone()));
    for source in sources {
        let (status, planned) = plan_ping_source(source, settings);
        plan.statuses.push(status);
        plan.pings.extend(planned);
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
    let extensions = spec
        .ce_overrides
        .iter()
        .flat_map(|o| o.extensions.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
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
    Condition {
        ty: "SinkProvided",
        status,
        reason: reason.to_owned(),
        message,
    }
}
