//! How far behind each egress is: the high watermarks of the reader's
//! partitions, measured off the reader's task, against each egress's
//! position; shown in `/metrics` and `/resources`.

use std::collections::BTreeMap;

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{deliver::Deliverer, egress::EgressSpec, positions::Topic, state::State};

/// High watermarks: (partition, offset after the last record).
pub type Highs = Vec<(i32, i64)>;

/// Reads the high watermarks of `partitions` on the blocking pool (each is
/// a request to the broker) and sends them to `out`.
pub fn measure_highs(
    topic: &Topic,
    partitions: Vec<i32>,
    out: mpsc::UnboundedSender<Highs>,
) -> JoinHandle<()> {
    let topic = topic.clone();
    tokio::task::spawn_blocking(move || {
        let highs = partitions
            .into_iter()
            .filter_map(|p| topic.offsets.end(&topic.name, p).ok().map(|h| (p, h)))
            .collect();
        let _ = out.send(highs);
    })
}

/// Each egress's lag: from its position on each partition to the end, the
/// reader's own position when that is further (Tansu can report a high
/// watermark short of the last record).
pub fn record(state: &State, deliverer: &Deliverer, highs: &[(i32, i64)]) {
    let (metrics, observed) = (&deliverer.metrics, &deliverer.observed);
    for egress in state.egresses.values() {
        let mut by_partition = BTreeMap::new();
        for &(partition, high) in highs {
            let Some(lane) = egress.lanes.get(&partition) else {
                continue;
            };
            let end = high.max(state.next.get(&partition).copied().unwrap_or(0));
            let lag = (end - lane.position()).max(0) as u64;
            metrics.lag(&egress.spec, partition, lag);
            by_partition.insert(partition, lag);
        }
        let before = observed.lag_partitions(&egress.spec);
        let gone = before.into_iter().filter(|p| !by_partition.contains_key(p));
        metrics.forget_lag(&egress.spec, gone);
        observed.lag(&egress.spec, by_partition);
    }
}

/// Drops what is shown of an egress that stops running here.
pub fn forget(deliverer: &Deliverer, spec: &EgressSpec) {
    deliverer.metrics.forget(spec);
    let partitions = deliverer.observed.lag_partitions(spec);
    deliverer.metrics.forget_lag(spec, partitions);
    deliverer.observed.remove(spec);
}
