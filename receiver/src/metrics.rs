//! The receiver's metrics, registered in the process registry.

use http::StatusCode;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone)]
pub struct Metrics {
    requests: Family<CodeLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "ferry_ingress_requests",
            "Ingress requests by response code",
            requests.clone(),
        );
        Metrics { requests }
    }

    pub fn count(&self, status: StatusCode) {
        self.requests
            .get_or_create(&CodeLabels {
                code: status.as_u16(),
            })
            .inc();
    }
}
