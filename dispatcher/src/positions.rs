//! Where each egress stands in Kafka: the committed positions of its
//! consumer group, read (pinning a new group at the end of the topic) and
//! committed, in batches bounded for the group coordinators.

use ferry_common::kafka::{replay_group, Cluster};
use std::{collections::HashMap, sync::Arc, time::Duration};

use ferry_common::kafka::partition_count;
use futures::{stream, StreamExt};
use rdkafka::{
    consumer::{Consumer, ConsumerContext},
    error::{KafkaError, KafkaResult},
};

use crate::egress::{EgressSpec, Replay};
use ferry_common::{
    group_offsets::GroupOffsets,
    group_start::{self, REQUESTS_AT_ONCE},
};

pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

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
/// without one are pinned at the egress's start point (by default their
/// end, as of now, so that a new egress gets every event accepted from now
/// on and none from before). An egress with a replay not yet done is moved
/// to the replay's point on every partition first.
pub async fn start(
    topic: &Topic,
    spec: &EgressSpec,
    partitions: &[i32],
) -> KafkaResult<HashMap<i32, i64>> {
    if let Some(replay) = &spec.replay {
        if let Some(to) = replay_once(topic, spec, replay, partitions).await? {
            return Ok(to);
        }
    }
    let pinned = group_start::pin_new(
        &topic.offsets,
        &spec.consumer_group,
        &topic.name,
        partitions,
        spec.start,
    )
    .await?;
    if pinned.pinned > 0 {
        tracing::info!(egress = %spec.name, partitions = pinned.pinned, start = ?spec.start, "new consumer group: start positions pinned");
    }
    Ok(pinned.positions)
}

/// Moves the egress's group to the replay's point, unless that replay was
/// done already; the positions it moved to. A replay is done once: its
/// mark (a hash of its id) is committed as partition 0's offset of a group
/// of its own beside the egress's ([`replay_group`]). Commit metadata
/// would be the natural place, but Tansu does not return it.
async fn replay_once(
    topic: &Topic,
    spec: &EgressSpec,
    replay: &Replay,
    partitions: &[i32],
) -> KafkaResult<Option<HashMap<i32, i64>>> {
    let marker = replay_group(&spec.consumer_group);
    let mark = replay_mark(&replay.id);
    let marked = topic.offsets.list(&marker, &topic.name, &[0]).await?;
    if marked.get(&0).copied().flatten() == Some(mark) {
        return Ok(None);
    }
    let to = group_start::point(&topic.offsets, &topic.name, partitions, replay.to)?;
    topic
        .offsets
        .alter(&spec.consumer_group, &topic.name, &to)
        .await?;
    topic
        .offsets
        .alter(&marker, &topic.name, &[(0, mark)])
        .await?;
    tracing::info!(egress = %spec.name, replay = %replay.id, to = ?replay.to, "positions replayed");
    Ok(Some(to.into_iter().collect()))
}

/// A replay's id as an offset: FNV-1a, stable across builds, kept
/// non-negative.
fn replay_mark(id: &str) -> i64 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash >> 1) as i64
}

/// [`start`] for each egress, a bounded number at a time.
pub async fn start_all(
    topic: &Topic,
    specs: &[Arc<EgressSpec>],
    partitions: &[i32],
) -> KafkaResult<Vec<HashMap<i32, i64>>> {
    stream::iter(specs)
        .map(|spec| start(topic, spec, partitions))
        .buffered(REQUESTS_AT_ONCE)
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
        .buffer_unordered(REQUESTS_AT_ONCE)
        .collect::<()>()
        .await;
}
