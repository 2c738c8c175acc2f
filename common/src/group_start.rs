//! Where a consumer group without committed positions starts, and pinning
//! it there. The dispatcher pins an egress's group when it adds the
//! egress; the controller pins it first, before it marks the egress's
//! object Ready, as the reference's control plane commits a new trigger's
//! initial offsets: an event accepted once the trigger is Ready is then
//! delivered to it, however late the dispatcher adds it.

use std::collections::HashMap;

use ferry_proto::{Egress, InitialOffset};
use rdkafka::error::KafkaResult;

use crate::group_offsets::GroupOffsets;

/// A place in every partition of a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Point {
    Earliest,
    Latest,
    /// The first record written at or after this time (ms since the
    /// epoch), else the end.
    Time(i64),
}

/// Where the egress's group starts when it has no positions: its start
/// time, else its initial offset, else the end of the topic (the
/// beginning for a KafkaSource, whose `initialOffset` defaults to
/// earliest).
pub fn start_point(egress: &Egress, kafka_source: bool) -> Point {
    match egress.initial_offset() {
        _ if egress.start_time > 0 => Point::Time(egress.start_time),
        InitialOffset::Earliest => Point::Earliest,
        InitialOffset::Latest => Point::Latest,
        InitialOffset::Unset if kafka_source => Point::Earliest,
        InitialOffset::Unset => Point::Latest,
    }
}

/// Each partition's committed position of `group`; partitions without one
/// are pinned at `start` as of now, and committed there.
pub async fn pin_new(
    offsets: &GroupOffsets,
    group: &str,
    topic: &str,
    partitions: &[i32],
    start: Point,
) -> KafkaResult<PinnedPositions> {
    let committed = offsets.list(group, topic, partitions).await?;
    let mut positions = HashMap::new();
    let mut new = Vec::new();
    for &partition in partitions {
        match committed.get(&partition).copied().flatten() {
            Some(offset) => {
                positions.insert(partition, offset);
            }
            None => new.push(partition),
        }
    }
    let pinned = new.len();
    if !new.is_empty() {
        let pins = point(offsets, topic, &new, start)?;
        offsets.alter(group, topic, &pins).await?;
        positions.extend(pins);
    }
    Ok(PinnedPositions { positions, pinned })
}

/// A group's positions, and how many of them were pinned just now.
pub struct PinnedPositions {
    pub positions: HashMap<i32, i64>,
    pub pinned: usize,
}

/// Where `point` is on each of `partitions`. Blocking. A time still to
/// come is the end: no record was written at or after it yet.
pub fn point(
    offsets: &GroupOffsets,
    topic: &str,
    partitions: &[i32],
    point: Point,
) -> KafkaResult<Vec<(i32, i64)>> {
    match point {
        Point::Time(ms) if ms <= chrono::Utc::now().timestamp_millis() => {
            offsets.at_time(topic, partitions, ms)
        }
        _ => partitions
            .iter()
            .map(|&partition| {
                let (low, high) = offsets.watermarks(topic, partition)?;
                Ok((partition, if point == Point::Earliest { low } else { high }))
            })
            .collect(),
    }
}
