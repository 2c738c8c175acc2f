//! What an operator asks of a running trigger or subscription: how far
//! behind it is and how its last delivery went. `ferry standalone` shows
//! it in `GET /resources`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::SystemTime,
};

use serde::Serialize;

use crate::{deliver::Report, egress::EgressSpec};

/// One egress as this dispatcher sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressState {
    /// Events after its position, over the partitions this replica reads.
    pub lag: u64,
    pub lag_by_partition: BTreeMap<i32, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    /// `delivered`, `dead_lettered` or `dropped`.
    pub outcome: &'static str,
    /// When it was known, RFC 3339.
    pub time: String,
}

/// Every egress's state, by (kind, `namespace/name`).
#[derive(Debug, Default)]
pub struct Observed {
    egresses: Mutex<HashMap<(String, String), EgressState>>,
}

impl Observed {
    /// The state of the egress of `kind` named `namespace/name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<EgressState> {
        self.lock()
            .get(&(kind.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn report(&self, spec: &EgressSpec, report: Report) {
        if report == Report::Filtered {
            return;
        }
        let time = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.lock().entry(key(spec)).or_default().last_delivery = Some(LastDelivery {
            outcome: report.as_str(),
            time,
        });
    }

    pub fn lag(&self, spec: &EgressSpec, by_partition: BTreeMap<i32, u64>) {
        let mut egresses = self.lock();
        let state = egresses.entry(key(spec)).or_default();
        state.lag = by_partition.values().sum();
        state.lag_by_partition = by_partition;
    }

    /// Forgets an egress that no longer runs here.
    pub fn remove(&self, spec: &EgressSpec) {
        self.lock().remove(&key(spec));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), EgressState>> {
        self.egresses.lock().expect("observed egresses")
    }
}

fn key(spec: &EgressSpec) -> (String, String) {
    (spec.kind.clone(), spec.name.clone())
}
