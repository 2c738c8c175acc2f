//! The receiver's metrics: its own request count, and the reference's
//! per-event series (see `ferry_common::metrics`).

use std::time::Duration;

use ferry_common::metrics::Shared;
use http::StatusCode;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::routes::Route;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone)]
pub struct Metrics {
    requests: Family<CodeLabels, Counter>,
    shared: Shared,
}

impl Metrics {
    pub fn new(registry: &mut Registry, shared: &Shared) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "ferry_ingress_requests",
            "Ingress requests by response code",
            requests.clone(),
        );
        Metrics {
            requests,
            shared: shared.clone(),
        }
    }

    /// One answered request: counted by its status, and, when it was for a
    /// broker or channel, each of its events (or, when it held none that
    /// could be read, the request) with the time it took.
    pub fn answered(
        &self,
        status: StatusCode,
        route: Option<&Route>,
        types: &[String],
        took: Duration,
    ) {
        self.requests
            .get_or_create(&CodeLabels {
                code: status.as_u16(),
            })
            .inc();
        let Some(route) = route else { return };
        if status == StatusCode::BAD_REQUEST {
            self.shared.discarded(&route.labels);
        }
        let millis = took.as_secs_f64() * 1e3;
        // One series per type: a batch's events of one type are looked up
        // once.
        let observe = |ty: &str, events: usize| {
            let code = Some(status.as_u16());
            let histogram = route.latency.get(code, self.shared.type_key(ty), || {
                let mut labels = route.labels.clone();
                self.shared.with_event_type(&mut labels, ty);
                labels.push(("http_response_status_code", status.as_str().to_owned()));
                self.shared.dispatch_latency(&labels)
            });
            for _ in 0..events {
                histogram.observe(millis);
            }
        };
        match types {
            // A request with no readable event (400 and the like), as the
            // reference labels it.
            [] => observe("unknown", 1),
            types => types
                .chunk_by(|a, b| a == b)
                .for_each(|same| observe(&same[0], same.len())),
        }
    }
}
