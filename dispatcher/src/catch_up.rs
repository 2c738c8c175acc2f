//! A consumer of its own for an egress that fell behind its topic's reader
//! (a slow or failing subscriber): it reads the egress's partitions from
//! where the egress is, at the egress's pace, until the egress is back with
//! the reader. It joins no group: the reader owns the partitions, and says
//! which ones to read from where.

use std::sync::Arc;

use ferry_common::kafka::ConsumerSettings;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::KafkaResult,
    Message, Offset, TopicPartitionList,
};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{egress::EgressSpec, metrics::Held, record::Record};

/// How many records before the egress's position a catch-up consumer
/// starts: a fetch that starts inside a produce batch may get only the
/// batches after it (see `gap`), and the egress skips what is
/// below its position anyway.
const REWIND: i64 = 1024;

/// A record read for a behind egress.
pub struct Fetched {
    pub key: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub record: Arc<Record>,
}

/// A running catch-up consumer; stops when dropped.
pub struct CatchUp {
    positions: watch::Sender<Vec<(i32, i64)>>,
    /// Records it may still hand over; the reader gives one back for each
    /// of them that it is done with.
    permits: Arc<Semaphore>,
    stop: CancellationToken,
}

impl CatchUp {
    pub fn start(
        spec: &EgressSpec,
        key: Arc<str>,
        settings: &ConsumerSettings,
        positions: Vec<(i32, i64)>,
        window: usize,
        out: mpsc::UnboundedSender<Fetched>,
        gauge: Held,
    ) -> KafkaResult<Self> {
        // The group id is never joined or committed to (`assign` only).
        let consumer: StreamConsumer = settings
            .client_config(&spec.cluster, &spec.consumer_group)
            .create()?;
        let (tx, rx) = watch::channel(positions);
        let permits = Arc::new(Semaphore::new(window));
        let stop = CancellationToken::new();
        tracing::info!(egress = %spec.name, "egress fell behind its topic's reader; reading for it separately");
        let feed = Feed {
            consumer,
            topic: spec.topic.clone(),
            key,
            permits: permits.clone(),
            out,
            _gauge: gauge,
        };
        tokio::spawn(feed.run(rx, stop.clone()));
        Ok(CatchUp {
            positions: tx,
            permits,
            stop,
        })
    }

    /// Reads these partitions from these offsets instead.
    pub fn reposition(&self, positions: Vec<(i32, i64)>) {
        self.positions.send_replace(positions);
    }

    pub fn give_back(&self, records: usize) {
        self.permits.add_permits(records);
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The catch-up consumer's task.
struct Feed {
    consumer: StreamConsumer,
    topic: String,
    key: Arc<str>,
    permits: Arc<Semaphore>,
    out: mpsc::UnboundedSender<Fetched>,
    _gauge: Held,
}

impl Feed {
    async fn run(self, mut positions: watch::Receiver<Vec<(i32, i64)>>, stop: CancellationToken) {
        self.assign(&positions.borrow_and_update());
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                changed = positions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.assign(&positions.borrow_and_update());
                }
                permit = self.permits.clone().acquire_owned() => {
                    let Ok(permit) = permit else { return };
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        // The permit goes back.
                        changed = positions.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            self.assign(&positions.borrow_and_update());
                            continue;
                        }
                        message = self.consumer.recv() => message,
                    };
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(key = %self.key, %error, "catch-up consumer error");
                            continue;
                        }
                    };
                    permit.forget();
                    let fetched = Fetched {
                        key: self.key.clone(),
                        partition: message.partition(),
                        offset: message.offset(),
                        record: Arc::new(Record::decode(&message)),
                    };
                    if self.out.send(fetched).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Assigns the partitions at their positions. Positions on partitions
    /// it already holds (a lane rejoined the reader, or was revoked) leave
    /// the assignment as it is, and the reader skips the records it no
    /// longer wants: librdkafka aborts when a partition still starting is
    /// taken away. Lanes behind only move forward, so nothing is missed.
    fn assign(&self, positions: &[(i32, i64)]) {
        let assigned = self.consumer.assignment().unwrap_or_default();
        let held = |p: i32| assigned.find_partition(&self.topic, p).is_some();
        if assigned.count() > 0 && positions.iter().all(|&(p, _)| held(p)) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in positions {
            let from = Offset::Offset((offset - REWIND).max(0));
            let _ = tpl.add_partition_offset(&self.topic, partition, from);
        }
        if let Err(error) = self.consumer.assign(&tpl) {
            tracing::warn!(topic = %self.topic, %error, "catch-up consumer cannot assign");
        }
    }
}
