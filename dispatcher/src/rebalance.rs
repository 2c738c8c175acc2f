//! The reader's rebalance callbacks, run inside its consumer's poll: on
//! assignment each egress's positions are read and every partition starts
//! at the lowest; on revocation the positions reached are committed before
//! another replica takes the partitions. librdkafka waits for the
//! callbacks, so they block on their offset requests.

use std::sync::{atomic::Ordering, Arc};

use rdkafka::{
    bindings::rd_kafka_resp_err_t as RespErr,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaResult,
    ClientContext, Offset, TopicPartitionList,
};

use crate::{
    egress::EgressSpec,
    lanes::Lane,
    positions::{self, Commits, Topic},
    state::{SharedState, State},
};

pub struct Rebalancer {
    pub topic: Topic,
    pub state: SharedState,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RespErr, tpl: &mut TopicPartitionList) {
        tracing::debug!(topic = %self.topic.name, ?err, partitions = tpl.count(), "rebalance");
        match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(error) = block_on(self.assigned(tpl)) {
                    tracing::error!(topic = %self.topic.name, %error, "cannot read the egresses' positions");
                    self.state.lock().failed = Some(error);
                }
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(topic = %self.topic.name, %error, "cannot assign");
                }
            }
            _ => {
                block_on(self.revoked(tpl));
                if let Err(error) = consumer.unassign() {
                    tracing::error!(topic = %self.topic.name, %error, "cannot unassign");
                }
            }
        }
    }
}

/// Runs a callback's offset requests to the end. The callback runs inside
/// the reader's task, on a tokio worker: tokio's cooperative budget would
/// end that task's turn after 128 awaited replies and defer the wake-up
/// until the task yields, which a blocked callback never does (a broker
/// with more than 128 triggers never got its partitions).
fn block_on<F: std::future::Future>(work: F) -> F::Output {
    futures::executor::block_on(tokio::task::unconstrained(work))
}

impl Rebalancer {
    /// Sets every partition's start (the lowest egress position) in `tpl`
    /// and gives each egress a lane on it.
    async fn assigned(&self, tpl: &mut TopicPartitionList) -> KafkaResult<()> {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let specs: Vec<Arc<EgressSpec>> = {
            let state = self.state.lock();
            state.egresses.values().map(|e| e.spec.clone()).collect()
        };
        let listed = positions::start_all(&self.topic, &specs, &partitions).await?;
        let mut state = self.state.lock();
        let State {
            next,
            egresses,
            laggards,
            epoch,
            assigned,
            paused_since,
            gaps,
            ..
        } = &mut *state;
        next.clear();
        gaps.clear();
        for &partition in &partitions {
            // A paused egress does not hold the reader back at its position.
            let start = (specs.iter().zip(&listed))
                .filter(|(spec, _)| !spec.paused)
                .filter_map(|(_, p)| p.get(&partition).copied())
                .min();
            let start = match start {
                Some(start) => start,
                None => self.topic.offsets.end(&self.topic.name, partition)?,
            };
            next.insert(partition, start);
            tpl.set_partition_offset(&self.topic.name, partition, Offset::Offset(start))?;
        }
        for (spec, positions) in specs.iter().zip(listed) {
            let Some(egress) = egresses.get_mut(spec.key.as_str()) else {
                continue;
            };
            for (partition, from) in positions {
                *epoch += 1;
                egress
                    .lanes
                    .insert(partition, Lane::new(*epoch, from, false));
            }
            laggards.stop(&egress.key);
            egress.started.store(true, Ordering::Release);
        }
        *assigned = true;
        *paused_since = None;
        tracing::debug!(topic = %self.topic.name, partitions = partitions.len(), "partitions assigned");
        Ok(())
    }

    /// Commits the revoked partitions' positions and drops their lanes.
    async fn revoked(&self, tpl: &TopicPartitionList) {
        let batch: Commits = {
            let mut state = self.state.lock();
            let State {
                next,
                egresses,
                laggards,
                paused_since,
                ..
            } = &mut *state;
            *paused_since = None;
            let mut batch = Vec::new();
            for element in tpl.elements() {
                next.remove(&element.partition());
            }
            for egress in egresses.values_mut() {
                let mut positions = Vec::new();
                for element in tpl.elements() {
                    let Some(lane) = egress.lanes.remove(&element.partition()) else {
                        continue;
                    };
                    if let Some(offset) = lane.tracker.committable() {
                        positions.push((element.partition(), offset));
                    }
                }
                laggards.settle(egress);
                if !positions.is_empty() {
                    batch.push((egress.spec.clone(), positions));
                }
            }
            batch
        };
        tracing::debug!(topic = %self.topic.name, partitions = tpl.count(), "partitions revoked");
        positions::commit(self.topic.clone(), batch).await;
    }
}
