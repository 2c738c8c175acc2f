//! What one egress of a reader holds: per partition (a "lane"), the records
//! waiting and running, the next offset it takes, and the position it may
//! commit; which records it takes (its filter) and which deliveries may
//! start. Pure bookkeeping: the reader reads, counts and delivers.
//!
//! Ordered by key, a lane's queue holds only records whose key has no
//! delivery running or queued ahead of them; the others wait in `held`,
//! per key, and move to the queue one at a time as their key's delivery
//! ends. So a key's records go in offset order, and a record being
//! retried holds back its own key only.

use std::{
    collections::{hash_map::Entry, HashMap, VecDeque},
    sync::{atomic::AtomicBool, Arc},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    egress::{EgressSpec, Order},
    offsets::OffsetTracker,
    record::Record,
};

pub struct EgressLanes {
    pub key: Arc<str>,
    pub spec: Arc<EgressSpec>,
    /// Set once it has a lane on every partition the reader holds.
    pub started: Arc<AtomicBool>,
    /// Interrupts its deliveries' retry waits when it is removed.
    pub stop: CancellationToken,
    pub lanes: HashMap<i32, Lane>,
    /// Waiting for the reader's delivery budget (see `ready`).
    pub starved: bool,
    /// Deliveries finished since its positions were last taken for a
    /// commit: what a crash now would deliver again.
    pub uncommitted: usize,
}

pub struct Lane {
    /// Which assignment this lane belongs to: completions of a revoked
    /// lane's deliveries are ignored.
    pub epoch: u64,
    /// The next offset this egress takes; lower ones are done or queued.
    pub from: i64,
    /// Fed by the egress's catch-up consumer instead of the reader.
    pub behind: bool,
    /// Records that may start, in the order they became free to.
    pub queue: VecDeque<Queued>,
    /// Ordered by key: each key with a record queued or running, and its
    /// records waiting behind that one.
    held: HashMap<u64, VecDeque<Queued>>,
    /// Records in `held`.
    held_count: usize,
    pub running: usize,
    pub tracker: OffsetTracker,
}

pub struct Queued {
    pub offset: i64,
    pub record: Arc<Record>,
    /// Read by the catch-up consumer, whose window it holds until done.
    pub caught_up: bool,
    /// Ordered by key: the key whose turn this delivery holds.
    pub key: Option<u64>,
}

/// What became of a record offered to a lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued for delivery.
    Queued,
    /// Done at once: its filter did not match.
    Filtered,
    /// Done at once: the record is not a CloudEvent.
    NotAnEvent,
    /// Below the lane's position: already taken.
    Skipped,
}

/// A delivery to start, holding its share of the reader's budget.
pub struct Start {
    pub partition: i32,
    pub epoch: u64,
    pub queued: Queued,
    pub permit: OwnedSemaphorePermit,
}

// === impl EgressLanes ===

impl EgressLanes {
    pub fn new(spec: Arc<EgressSpec>, started: Arc<AtomicBool>) -> Self {
        EgressLanes {
            key: spec.key.as_str().into(),
            spec,
            started,
            stop: CancellationToken::new(),
            lanes: HashMap::new(),
            starved: false,
            uncommitted: 0,
        }
    }

    /// Records queued or running, on every lane.
    pub fn buffered(&self) -> usize {
        self.lanes
            .values()
            .map(|l| l.queue.len() + l.held_count + l.running)
            .sum()
    }

    /// Whether it holds the reader back: its window is full and some lane
    /// still takes the reader's records.
    pub fn holds_reader(&self, window: usize) -> bool {
        self.buffered() >= window && self.lanes.values().any(|l| !l.behind)
    }

    /// Takes the deliveries that may start now: one per partition at a
    /// time when ordered, else up to `window` running in all (ordered by
    /// key, the queue holds only records whose key is free), and each with
    /// a permit of `budget`; none while paused. The flag says it stopped
    /// for want of a permit.
    pub fn ready(&mut self, window: usize, budget: &Arc<Semaphore>) -> (Vec<Start>, bool) {
        if self.spec.paused {
            return (Vec::new(), false);
        }
        let ordered = self.spec.order == Order::Ordered;
        // The trigger's own limit, under the dispatcher's window.
        let limit = match self.spec.max_in_flight {
            0 => window,
            own => own.min(window),
        };
        let mut running: usize = self.lanes.values().map(|l| l.running).sum();
        let mut starts = Vec::new();
        for (&partition, lane) in &mut self.lanes {
            while !lane.queue.is_empty() {
                let allowed = if ordered {
                    lane.running == 0 && running < limit
                } else {
                    running < limit
                };
                if !allowed {
                    break;
                }
                let Ok(permit) = budget.clone().try_acquire_owned() else {
                    return (starts, true);
                };
                let queued = lane.queue.pop_front().expect("not empty");
                lane.running += 1;
                running += 1;
                starts.push(Start {
                    partition,
                    epoch: lane.epoch,
                    queued,
                    permit,
                });
            }
        }
        (starts, false)
    }

    /// A delivery finished, or was interrupted (`finished` false: it stays
    /// uncommitted). Completions of a lane since revoked are ignored.
    pub fn finish(
        &mut self,
        partition: i32,
        epoch: u64,
        offset: i64,
        key: Option<u64>,
        finished: bool,
    ) {
        let Some(lane) = self.lanes.get_mut(&partition).filter(|l| l.epoch == epoch) else {
            return;
        };
        lane.running -= 1;
        if let Some(key) = key {
            lane.release(key);
        }
        if finished {
            lane.tracker.finish(offset);
            self.uncommitted += 1;
        }
    }

    /// Lanes behind the reader that reached it go back to the reader's
    /// records, once the egress has room again (so that it does not fall
    /// behind at once). `next` is the reader's next offset per partition.
    /// True when any lane came back.
    pub fn rejoin(&mut self, next: &HashMap<i32, i64>, window: usize) -> bool {
        if self.buffered() > window / 2 {
            return false;
        }
        let mut rejoined = false;
        for (partition, lane) in &mut self.lanes {
            if lane.behind && next.get(partition).is_some_and(|&n| lane.from >= n) {
                lane.behind = false;
                rejoined = true;
            }
        }
        rejoined
    }

    /// Where each lane behind the reader is.
    pub fn behind(&self) -> Vec<(i32, i64)> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.behind)
            .map(|(&p, l)| (p, l.from))
            .collect()
    }

    /// Committable positions: those that moved since the last call, or
    /// (`all`) every one.
    pub fn positions(&mut self, all: bool) -> Vec<(i32, i64)> {
        self.uncommitted = 0;
        self.lanes
            .iter_mut()
            .filter_map(|(&p, l)| {
                let offset = if all {
                    l.tracker.committable()
                } else {
                    l.tracker.take_commit()
                };
                offset.map(|o| (p, o))
            })
            .collect()
    }
}

// === impl Lane ===

impl Lane {
    /// Where the egress stands on this partition: the offset it would
    /// commit, or where it starts when it has taken nothing yet.
    pub fn position(&self) -> i64 {
        self.tracker.committable().unwrap_or(self.from)
    }

    pub fn new(epoch: u64, from: i64, behind: bool) -> Self {
        Lane {
            epoch,
            from,
            behind,
            queue: VecDeque::new(),
            held: HashMap::new(),
            held_count: 0,
            running: 0,
            tracker: OffsetTracker::default(),
        }
    }

    /// Offers the record at `offset` to this lane.
    pub fn offer(
        &mut self,
        spec: &EgressSpec,
        offset: i64,
        record: &Arc<Record>,
        caught_up: bool,
    ) -> Offer {
        if offset < self.from {
            return Offer::Skipped;
        }
        self.from = offset + 1;
        match &record.event {
            Ok(event) if spec.filter.matches(event) => {
                self.tracker.start(offset);
                let key = record.key.filter(|_| spec.order == Order::ByKey);
                let queued = Queued {
                    offset,
                    record: record.clone(),
                    caught_up,
                    key,
                };
                match key.map(|k| self.held.entry(k)) {
                    Some(Entry::Occupied(mut waiting)) => {
                        waiting.get_mut().push_back(queued);
                        self.held_count += 1;
                    }
                    Some(Entry::Vacant(free)) => {
                        free.insert(VecDeque::new());
                        self.queue.push_back(queued);
                    }
                    None => self.queue.push_back(queued),
                }
                Offer::Queued
            }
            Ok(_) => {
                self.tracker.pass(offset);
                Offer::Filtered
            }
            Err(_) => {
                self.tracker.pass(offset);
                Offer::NotAnEvent
            }
        }
    }
}

impl Lane {
    /// A delivery of `key` ended: its next record may start.
    fn release(&mut self, key: u64) {
        let Some(waiting) = self.held.get_mut(&key) else {
            return;
        };
        match waiting.pop_front() {
            Some(next) => {
                self.held_count -= 1;
                self.queue.push_back(next);
            }
            None => {
                self.held.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_event::Event;
    use ferry_proto::{
        Contract, DeliveryOrder, Egress as ProtoEgress, Filter as LegacyFilter, Resource,
    };

    /// An egress taking events of type `t` from a broker's topic.
    fn egress(ordered: bool) -> EgressLanes {
        let contract = Contract {
            resources: vec![Resource {
                uid: "b".into(),
                topics: vec!["topic".into()],
                egresses: vec![ProtoEgress {
                    uid: "t1".into(),
                    consumer_group: "knative-trigger-ns-t1".into(),
                    destination: "http://sub.ns/".into(),
                    filter: Some(LegacyFilter {
                        attributes: [("type".to_owned(), "t".to_owned())].into(),
                    }),
                    delivery_order: if ordered {
                        DeliveryOrder::Ordered as i32
                    } else {
                        DeliveryOrder::Unordered as i32
                    },
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let defaults = crate::egress::Defaults {
            bootstrap: "k:9092".into(),
            timeout: std::time::Duration::from_secs(1),
            retry_after_max: std::time::Duration::from_secs(1),
        };
        let (mut specs, rejected) =
            crate::egress::resolve(&contract, &defaults, &Default::default());
        assert!(rejected.is_empty(), "{rejected:?}");
        let spec = specs.pop().expect("one egress");
        assert_eq!(spec.order == Order::Ordered, ordered);
        EgressLanes::new(Arc::new(spec), Arc::default())
    }

    fn record(ty: &str) -> Arc<Record> {
        keyed(ty, None)
    }

    fn keyed(ty: &str, key: Option<u64>) -> Arc<Record> {
        Arc::new(Record {
            event: Ok(Event::new("1", "/s", ty)),
            content_type_conflict: None,
            trace: None,
            written_ms: None,
            raw: None,
            key,
        })
    }

    fn with_spec(mut e: EgressLanes, change: impl FnOnce(&mut EgressSpec)) -> EgressLanes {
        let mut spec = (*e.spec).clone();
        change(&mut spec);
        e.spec = Arc::new(spec);
        e
    }

    #[test]
    fn ordered_by_key_runs_keys_at_once_and_each_key_in_offset_order() {
        let mut e = with_spec(egress(true), |s| s.order = Order::ByKey);
        let mut lane = Lane::new(1, 0, false);
        // Offsets 0..6: keys a b a a c (no key).
        for (offset, key) in [
            (0, Some(1)),
            (1, Some(2)),
            (2, Some(1)),
            (3, Some(1)),
            (4, Some(3)),
            (5, None),
        ] {
            lane.offer(&e.spec, offset, &keyed("t", key), false);
        }
        e.lanes.insert(0, lane);
        let budget = budget(100);
        let offsets = |starts: &[Start]| starts.iter().map(|s| s.queued.offset).collect::<Vec<_>>();
        let first = e.ready(10, &budget).0;
        assert_eq!(
            offsets(&first),
            [0, 1, 4, 5],
            "the first of each key, and the keyless one"
        );
        assert_eq!(e.buffered(), 6);
        assert!(
            e.ready(10, &budget).0.is_empty(),
            "key 1 waits for offset 0"
        );
        // Key 2 ends: key 1 still waits.
        e.finish(0, 1, 1, Some(2), true);
        assert!(e.ready(10, &budget).0.is_empty());
        // Offset 0 ends (however many attempts it took): key 1 goes on.
        e.finish(0, 1, 0, Some(1), true);
        assert_eq!(offsets(&e.ready(10, &budget).0), [2]);
        e.finish(0, 1, 2, Some(1), true);
        assert_eq!(offsets(&e.ready(10, &budget).0), [3]);
        e.finish(0, 1, 3, Some(1), true);
        assert!(e.ready(10, &budget).0.is_empty());
        assert_eq!(e.positions(true), vec![(0, 4)], "4 and 5 still run");
        e.finish(0, 1, 4, Some(3), true);
        e.finish(0, 1, 5, None, true);
        assert_eq!(e.positions(true), vec![(0, 6)]);
        assert_eq!(e.buffered(), 0);
        assert!(e.lanes[&0].held.is_empty(), "no key is held once all ended");
    }

    #[test]
    fn ordered_by_key_keeps_the_limit_and_the_window() {
        let mut e = with_spec(egress(false), |s| {
            s.order = Order::ByKey;
            s.max_in_flight = 3;
        });
        let mut lane = Lane::new(1, 0, false);
        for offset in 0..20 {
            lane.offer(
                &e.spec,
                offset,
                &keyed("t", Some(offset as u64 % 10)),
                false,
            );
        }
        e.lanes.insert(0, lane);
        assert_eq!(e.ready(100, &budget(100)).0.len(), 3);
        assert!(e.holds_reader(20), "held records count in the window");
    }

    #[test]
    fn a_paused_egress_starts_nothing() {
        let mut e = with_spec(egress(false), |s| s.paused = true);
        let mut lane = Lane::new(1, 0, false);
        lane.offer(&e.spec, 0, &record("t"), false);
        e.lanes.insert(0, lane);
        assert_eq!(e.ready(10, &budget(10)).0.len(), 0);
    }

    fn budget(n: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(n))
    }

    #[test]
    fn a_lane_queues_matches_passes_the_rest_and_skips_what_it_took() {
        let e = egress(false);
        let mut lane = Lane::new(1, 10, false);
        assert_eq!(lane.offer(&e.spec, 9, &record("t"), false), Offer::Skipped);
        assert_eq!(lane.offer(&e.spec, 10, &record("t"), false), Offer::Queued);
        assert_eq!(
            lane.offer(&e.spec, 11, &record("other"), false),
            Offer::Filtered
        );
        assert_eq!(
            lane.offer(&e.spec, 11, &record("t"), false),
            Offer::Skipped,
            "read twice"
        );
        assert_eq!(lane.from, 12);
        assert_eq!(
            lane.tracker.committable(),
            Some(10),
            "10 is not delivered yet"
        );
    }

    #[test]
    fn unordered_runs_up_to_the_window_ordered_one_per_partition() {
        for (ordered, expected) in [(false, 3), (true, 2)] {
            let mut e = egress(ordered);
            for partition in [0, 1] {
                let mut lane = Lane::new(1, 0, false);
                for offset in 0..3 {
                    lane.offer(&e.spec, offset, &record("t"), false);
                }
                e.lanes.insert(partition, lane);
            }
            let budget = budget(100);
            let (starts, starved) = e.ready(3, &budget);
            assert_eq!(starts.len(), expected, "ordered: {ordered}");
            assert!(!starved);
            assert!(
                e.ready(3, &budget).0.is_empty(),
                "nothing more until one finishes"
            );
            let first = &starts[0];
            e.finish(
                first.partition,
                first.epoch,
                first.queued.offset,
                None,
                true,
            );
            assert_eq!(e.ready(3, &budget).0.len(), 1);
        }
    }

    #[test]
    fn a_triggers_own_limit_holds_under_the_window() {
        for ordered in [false, true] {
            let mut e = egress(ordered);
            let mut spec = (*e.spec).clone();
            spec.max_in_flight = 2;
            e.spec = Arc::new(spec);
            for partition in 0..4 {
                let mut lane = Lane::new(1, 0, false);
                for offset in 0..3 {
                    lane.offer(&e.spec, offset, &record("t"), false);
                }
                e.lanes.insert(partition, lane);
            }
            let (starts, _) = e.ready(10, &budget(100));
            assert_eq!(starts.len(), 2, "ordered: {ordered}");
            let mut e = egress(ordered);
            let mut spec = (*e.spec).clone();
            spec.max_in_flight = 50;
            e.spec = Arc::new(spec);
            let mut lane = Lane::new(1, 0, false);
            for offset in 0..20 {
                lane.offer(&e.spec, offset, &record("t"), false);
            }
            e.lanes.insert(0, lane);
            let expected = if ordered { 1 } else { 10 };
            assert_eq!(
                e.ready(10, &budget(100)).0.len(),
                expected,
                "never above the dispatcher's window"
            );
        }
    }

    #[test]
    fn deliveries_wait_for_the_readers_budget() {
        let mut e = egress(false);
        let mut lane = Lane::new(1, 0, false);
        for offset in 0..5 {
            lane.offer(&e.spec, offset, &record("t"), false);
        }
        e.lanes.insert(0, lane);
        let budget = budget(2);
        let (starts, starved) = e.ready(10, &budget);
        assert_eq!((starts.len(), starved), (2, true));
        drop(starts);
        let (starts, starved) = e.ready(10, &budget);
        assert_eq!(
            (starts.len(), starved),
            (2, true),
            "permits come back when deliveries end"
        );
    }

    #[test]
    fn a_full_egress_holds_the_reader_until_it_is_behind() {
        let mut e = egress(false);
        let mut lane = Lane::new(1, 0, false);
        for offset in 0..4 {
            lane.offer(&e.spec, offset, &record("t"), false);
        }
        e.lanes.insert(0, lane);
        assert!(e.holds_reader(4));
        assert!(!e.holds_reader(5));
        e.lanes.get_mut(&0).unwrap().behind = true;
        assert!(!e.holds_reader(4), "a lane behind reads for itself");
    }

    #[test]
    fn a_lane_behind_rejoins_at_the_readers_position_with_room_to_spare() {
        let mut e = egress(false);
        let mut lane = Lane::new(1, 0, true);
        for offset in 0..3 {
            lane.offer(&e.spec, offset, &record("t"), true);
        }
        e.lanes.insert(0, lane);
        let next: HashMap<i32, i64> = [(0, 5)].into();
        assert!(!e.rejoin(&next, 100), "at 3, the reader is at 5");
        let mut lane = e.lanes.remove(&0).unwrap();
        lane.offer(&e.spec, 3, &record("t"), true);
        lane.offer(&e.spec, 4, &record("t"), true);
        e.lanes.insert(0, lane);
        assert!(
            !e.rejoin(&next, 8),
            "caught up, but 5 buffered of a window of 8"
        );
        assert!(e.rejoin(&next, 10));
        assert!(e.behind().is_empty());
        assert!(!e.lanes[&0].behind);
    }

    #[test]
    fn only_finished_deliveries_of_the_current_lane_move_the_position() {
        let mut e = egress(false);
        let mut lane = Lane::new(7, 0, false);
        lane.offer(&e.spec, 0, &record("t"), false);
        e.lanes.insert(0, lane);
        let start = e.ready(10, &budget(1)).0.pop().unwrap();
        e.finish(0, 6, 0, None, true);
        assert_eq!(
            e.positions(true),
            vec![(0, 0)],
            "a revoked lane's completion"
        );
        e.finish(0, start.epoch, 0, None, false);
        assert_eq!(
            e.positions(true),
            vec![(0, 0)],
            "interrupted: delivered again later"
        );
        assert_eq!(e.lanes[&0].running, 0);
    }
}
