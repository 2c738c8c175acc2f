//! Where each egress stands in Kafka: the committed positions of its
//! consumer group, read (pinning a new group at the end of the topic) and
//! committed, in batches bounded for the group coordinators.

use ferry_common::kafka::Cluster;
use std::{collections::HashMap, sync::Arc, time::Duration};

use ferry_common::kafka::partition_count;
use futures::{stream, StreamExt};
use rdkafka::{
    consumer::{Consumer, ConsumerContext},
    error::{KafkaError, KafkaResult},
};

use crate::{egress::EgressSpec, group_offsets::GroupOffsets};

pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// Offset requests in flight at once, so that a topic with a thousand
/// egresses does not queue a thousand requests at the group coordinators.
pub const OFFSET_REQUESTS: usize = 32;

/// Where a reader reads.
#[derive(Clone)]
pub struct Topic {
    pub name: String,
    pub cluster: Cluster,
    pub offsets: GroupOffsets,
}

/// Positions to commit, per egress: (partition, next offset to read).
pub type Commits = Vec<(Arc<EgressSpec>, Vec<(i32, i64)>)>;

/// The topic's partitions.
pub fn partitions<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
) -> KafkaResult<Vec<i32>> {
    let count = partition_count(consumer.client(), topic, KAFKA_TIMEOUT)? as i32;
    if count == 0 {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok((0..count).collect())
}

/// Each partition's committed position of the egress's group; partitions
/// without one are pinned at their end, as of now, so that a new egress
/// gets every event accepted from now on and none from before (or at their
/// beginning, for an egress that starts at the earliest).
pub async fn start(
    topic: &Topic,
    spec: &EgressSpec,
    partitions: &[i32],
) -> KafkaResult<HashMap<i32, i64>> {
    let group = &spec.consumer_group;
    let committed = topic.offsets.list(group, &topic.name, partitions).await?;
    let mut positions = HashMap::new();
    let mut pins = Vec::new();
    for &partition in partitions {
        let from = match committed.get(&partition).copied().flatten() {
            Some(offset) => offset,
            None => {
                let (low, high) = topic.offsets.watermarks(&topic.name, partition)?;
                let start = if spec.from_earliest { low } else { high };
                pins.push((partition, start));
                start
            }
        };
        positions.insert(partition, from);
    }
    if !pins.is_empty() {
        topic.offsets.alter(group, &topic.name, &pins).await?;
        tracing::info!(egress = %spec.name, partitions = pins.len(), from_earliest = spec.from_earliest, "new consumer group: start positions pinned");
    }
    Ok(positions)
}

/// [`start`] for each egress, a bounded number at a time.
pub async fn start_all(
    topic: &Topic,
    specs: &[Arc<EgressSpec>],
    partitions: &[i32],
) -> KafkaResult<Vec<HashMap<i32, i64>>> {
    stream::iter(specs)
        .map(|spec| start(topic, spec, partitions))
        .buffered(OFFSET_REQUESTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Commits each egress's positions to its group. A failure is logged: the
/// egress's next commit, or the one at revocation or stop, carries a
/// position at least as far.
pub async fn commit(topic: Topic, batch: Commits) {
    let commits = batch.into_iter().map(|(spec, positions)| {
        let topic = topic.clone();
        async move {
            let group = &spec.consumer_group;
            if let Err(error) = topic.offsets.alter(group, &topic.name, &positions).await {
                tracing::warn!(egress = %spec.name, %error, "offset commit failed");
            }
        }
    });
    stream::iter(commits)
        .buffer_unordered(OFFSET_REQUESTS)
        .collect::<()>()
        .await;
}
