//! Where a consumer group without committed positions starts, and pinning
//! it there. The dispatcher pins an egress's group when it adds the
//! egress; the controller pins it first, before it marks the egress's
//! object Ready, as the reference's control plane commits a new trigger's
//! initial offsets: an event accepted once the trigger is Ready is then
//! delivered to it, however late the dispatcher adds it.

use std::collections::HashMap;

use ferry_proto::{Egress, InitialOffset, Resource};
use futures::{stream, StreamExt};
use rdkafka::error::{KafkaError, KafkaResult};

use crate::{contract, group_offsets::GroupOffsets};

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
pub fn start_point(resource: &Resource, egress: &Egress) -> Point {
    let kafka_source = contract::is_kafka_source(resource);
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
    let (mut positions, new) = listed(offsets, group, topic, partitions).await?;
    let pinned = new.len();
    if !new.is_empty() {
        let pins = point(offsets, topic, &new, start)?;
        offsets.alter(group, topic, &pins).await?;
        positions.extend(pins);
    }
    Ok(PinnedPositions { positions, pinned })
}

/// Offset requests in flight at once, so that a topic with a thousand
/// groups does not queue a thousand requests at the group coordinators.
pub const REQUESTS_AT_ONCE: usize = 32;

/// [`pin_new`] for many groups of one topic: each start point is looked up
/// once for all of them (a thousand triggers of a broker, pinned at its end
/// as of now, need one lookup, not a thousand). How many partitions each
/// group had pinned, or why not.
pub async fn pin_all(
    offsets: &GroupOffsets,
    topic: &str,
    partitions: &[i32],
    groups: &[(&str, Point)],
) -> Vec<KafkaResult<usize>> {
    // Futures made first and then run: a stream's closure that makes them
    // would be too general for the compiler to call the whole Send.
    let lists: Vec<_> = groups
        .iter()
        .map(|&(group, _)| unpinned(offsets, group, topic, partitions))
        .collect();
    let listed: Vec<KafkaResult<Vec<i32>>> = stream::iter(lists)
        .buffered(REQUESTS_AT_ONCE)
        .collect()
        .await;
    let mut points: HashMap<Point, KafkaResult<HashMap<i32, i64>>> = HashMap::new();
    for (&(_, start), new) in groups.iter().zip(&listed) {
        if matches!(new, Ok(new) if !new.is_empty()) && !points.contains_key(&start) {
            let (offsets, topic, partitions) =
                (offsets.clone(), topic.to_owned(), partitions.to_vec());
            // Watermark and time lookups block: off the async workers.
            let found = tokio::task::spawn_blocking(move || {
                point(&offsets, &topic, &partitions, start).map(|at| at.into_iter().collect())
            })
            .await
            .unwrap_or(Err(KafkaError::Canceled));
            points.insert(start, found);
        }
    }
    let alters: Vec<_> = groups
        .iter()
        .zip(listed)
        .map(|(&(group, start), new)| {
            let at = points.get(&start);
            pin_at(offsets, group, topic, new, at)
        })
        .collect();
    stream::iter(alters)
        .buffered(REQUESTS_AT_ONCE)
        .collect()
        .await
}

/// The partitions on which `group` has no committed position.
async fn unpinned(
    offsets: &GroupOffsets,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<Vec<i32>> {
    Ok(listed(offsets, group, topic, partitions).await?.1)
}

/// `group`'s committed positions on `partitions`, and the partitions
/// without one.
async fn listed(
    offsets: &GroupOffsets,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<(HashMap<i32, i64>, Vec<i32>)> {
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
    Ok((positions, new))
}

/// Commits `group`'s position on the `new` partitions at `at`; how many.
async fn pin_at(
    offsets: &GroupOffsets,
    group: &str,
    topic: &str,
    new: KafkaResult<Vec<i32>>,
    at: Option<&KafkaResult<HashMap<i32, i64>>>,
) -> KafkaResult<usize> {
    let new = new?;
    let Some(at) = at.filter(|_| !new.is_empty()) else {
        return Ok(0);
    };
    let at = at.as_ref().map_err(Clone::clone)?;
    // A partition the lookup did not answer for is left to the dispatcher,
    // which pins what has no position when it adds the egress.
    let pins: Vec<(i32, i64)> = new
        .iter()
        .filter_map(|p| at.get(p).map(|&offset| (*p, offset)))
        .collect();
    if pins.is_empty() {
        return Ok(0);
    }
    offsets.alter(group, topic, &pins).await?;
    Ok(pins.len())
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
