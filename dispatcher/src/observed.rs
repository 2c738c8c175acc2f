//! What an operator asks of a running trigger or subscription: how far
//! behind it is and how its last delivery went. `ferry standalone` shows
//! it in `GET /resources`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::SystemTime,
};

use serde::{Serialize, Serializer};

use crate::{egress::EgressSpec, report::Report};

/// One egress as this dispatcher sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressState {
    /// Events after its position, over the partitions this replica reads.
    pub lag: u64,
    pub lag_by_partition: BTreeMap<i32, u64>,
    /// Events it finished with (delivered, dead-lettered or dropped) since
    /// this dispatcher started: two readings make a rate.
    pub deliveries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
    /// The wait before each retry, in milliseconds, as its delivery
    /// settings and `delivery.ferry.dev/backoff-max` make them.
    pub retry_schedule: Vec<u64>,
}

impl EgressState {
    /// Adds another topic's state of the same egress: lags and deliveries
    /// add up (partition by partition), the later last delivery wins.
    fn add(&mut self, other: &EgressState) {
        self.lag += other.lag;
        for (partition, lag) in &other.lag_by_partition {
            *self.lag_by_partition.entry(*partition).or_default() += lag;
        }
        self.deliveries += other.deliveries;
        if self.retry_schedule.is_empty() {
            self.retry_schedule = other.retry_schedule.clone();
        }
        if other.last_delivery.as_ref().map(|l| l.time)
            > self.last_delivery.as_ref().map(|l| l.time)
        {
            self.last_delivery = other.last_delivery.clone();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    /// `delivered`, `dead_lettered` or `dropped`.
    pub outcome: &'static str,
    /// When it was known; RFC 3339 when shown.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
}

fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let time = chrono::DateTime::<chrono::Utc>::from(*time);
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Every egress's state, by egress key: updated on every delivery, so
/// without building a key; read by kind and name, rarely.
#[derive(Debug, Default)]
pub struct ObservedEgresses {
    egresses: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    kind: String,
    name: String,
    state: EgressState,
}

impl ObservedEgresses {
    /// Every egress's state, by (kind, `namespace/name`); a KafkaSource's
    /// egress on each of its topics adds up to one.
    pub fn by_name(&self) -> HashMap<(String, String), EgressState> {
        let mut by_name: HashMap<(String, String), EgressState> = HashMap::new();
        for e in self.lock().values() {
            by_name
                .entry((e.kind.clone(), e.name.clone()))
                .or_default()
                .add(&e.state);
        }
        by_name
    }

    /// The partitions an egress's lag was last measured on.
    pub fn lag_partitions(&self, spec: &EgressSpec) -> Vec<i32> {
        self.lock()
            .get(&spec.key)
            .map(|e| e.state.lag_by_partition.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn report(&self, spec: &EgressSpec, report: Report) {
        if report == Report::Filtered {
            return;
        }
        let last = LastDelivery {
            outcome: report.as_str(),
            time: SystemTime::now(),
        };
        self.update(spec, |state| {
            state.deliveries += 1;
            state.last_delivery = Some(last);
        });
    }

    pub fn lag(&self, spec: &EgressSpec, by_partition: BTreeMap<i32, u64>) {
        self.update(spec, |state| {
            state.lag = by_partition.values().sum();
            state.lag_by_partition = by_partition;
        });
    }

    /// Forgets an egress that no longer runs here.
    pub fn remove(&self, spec: &EgressSpec) {
        self.lock().remove(&spec.key);
    }

    fn update(&self, spec: &EgressSpec, change: impl FnOnce(&mut EgressState)) {
        let mut egresses = self.lock();
        if let Some(entry) = egresses.get_mut(&spec.key) {
            change(&mut entry.state);
            return;
        }
        let retry = &spec.delivery.retry;
        let mut state = EgressState {
            retry_schedule: (1..=retry.retries())
                .map(|n| retry.backoff(n).as_millis() as u64)
                .collect(),
            ..Default::default()
        };
        change(&mut state);
        egresses.insert(
            spec.key.clone(),
            Entry {
                kind: spec.kind.clone(),
                name: spec.name.clone(),
                state,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.egresses.lock().expect("observed egresses")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_egress_on_several_topics_is_shown_as_one() {
        let earlier = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let later = earlier + Duration::from_secs(5);
        let topic =
            |lag: u64, deliveries: u64, outcome: &'static str, time: SystemTime| EgressState {
                lag,
                lag_by_partition: BTreeMap::from([(0, lag)]),
                deliveries,
                last_delivery: Some(LastDelivery { outcome, time }),
                retry_schedule: vec![100, 200],
            };
        let mut state = EgressState::default();
        state.add(&topic(3, 10, "delivered", later));
        state.add(&topic(4, 5, "dead_lettered", earlier));
        assert_eq!(state.lag, 7);
        assert_eq!(state.lag_by_partition, BTreeMap::from([(0, 7)]));
        assert_eq!(state.deliveries, 15);
        assert_eq!(state.last_delivery.unwrap().outcome, "delivered");
        assert_eq!(state.retry_schedule, [100, 200], "one egress, one schedule");
    }
}
