//! What one egress of a reader holds: per partition (a "lane"), the records
//! waiting and running, the next offset it takes, and the position it may
//! commit. Pure bookkeeping; the reader does the I/O.

use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::AtomicBool, Arc},
};

use tokio_util::sync::CancellationToken;

use crate::{
    catch_up::CatchUp, deliver::Report, egress::EgressSpec, metrics::Metrics,
    offsets::OffsetTracker, record::Record,
};

pub struct Egress {
    pub key: Arc<str>,
    pub spec: Arc<EgressSpec>,
    /// Set once it has a lane on every partition the reader holds.
    pub started: Arc<AtomicBool>,
    /// Interrupts its deliveries' retry waits when it is removed.
    pub stop: CancellationToken,
    pub lanes: HashMap<i32, Lane>,
    /// Reads for it while it is behind the reader on some partition.
    pub catch_up: Option<CatchUp>,
}

pub struct Lane {
    /// Which assignment this lane belongs to: completions of a revoked
    /// lane's deliveries are ignored.
    pub epoch: u64,
    /// The next offset this egress takes; lower ones are done or queued.
    pub from: i64,
    /// Fed by the egress's catch-up consumer instead of the reader.
    pub behind: bool,
    pub queue: VecDeque<Queued>,
    pub running: usize,
    pub tracker: OffsetTracker,
}

pub struct Queued {
    pub offset: i64,
    pub record: Arc<Record>,
    /// Read by the catch-up consumer, whose window it holds until done.
    pub caught_up: bool,
}

/// What became of a record offered to a lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued for delivery.
    Queued,
    /// Done at once: filtered out, or not an event.
    Passed,
    /// Below the lane's position: already taken.
    Skipped,
}

/// A delivery to start.
pub struct Start {
    pub partition: i32,
    pub epoch: u64,
    pub queued: Queued,
}

// === impl Egress ===

impl Egress {
    pub fn new(spec: Arc<EgressSpec>, started: Arc<AtomicBool>) -> Self {
        Egress {
            key: spec.key.as_str().into(),
            spec,
            started,
            stop: CancellationToken::new(),
            lanes: HashMap::new(),
            catch_up: None,
        }
    }

    /// Records queued or running, on every lane.
    pub fn buffered(&self) -> usize {
        self.lanes.values().map(|l| l.queue.len() + l.running).sum()
    }

    /// Whether it holds the reader back: its window is full and some lane
    /// still takes the reader's records.
    pub fn holds_reader(&self, window: usize) -> bool {
        self.buffered() >= window && self.lanes.values().any(|l| !l.behind)
    }

    /// Takes the deliveries that may start now: one per partition at a
    /// time when ordered, else up to `window` running in all.
    pub fn ready(&mut self, window: usize) -> Vec<Start> {
        let ordered = self.spec.ordered;
        let mut running: usize = self.lanes.values().map(|l| l.running).sum();
        let mut starts = Vec::new();
        for (&partition, lane) in &mut self.lanes {
            while !lane.queue.is_empty() {
                let allowed = if ordered {
                    lane.running == 0
                } else {
                    running < window
                };
                if !allowed {
                    break;
                }
                let queued = lane.queue.pop_front().expect("not empty");
                lane.running += 1;
                running += 1;
                starts.push(Start {
                    partition,
                    epoch: lane.epoch,
                    queued,
                });
            }
        }
        starts
    }

    /// A delivery finished (`report`), or was interrupted (`None`: it stays
    /// uncommitted). Completions of a lane since revoked are ignored.
    pub fn finish(&mut self, partition: i32, epoch: u64, offset: i64, report: Option<Report>) {
        let Some(lane) = self.lanes.get_mut(&partition).filter(|l| l.epoch == epoch) else {
            return;
        };
        lane.running -= 1;
        if report.is_some() {
            lane.tracker.finish(offset);
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
    pub fn new(epoch: u64, from: i64, behind: bool) -> Self {
        Lane {
            epoch,
            from,
            behind,
            queue: VecDeque::new(),
            running: 0,
            tracker: OffsetTracker::default(),
        }
    }

    /// Offers the record at `offset` to this lane.
    pub fn offer(
        &mut self,
        spec: &EgressSpec,
        metrics: &Metrics,
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
                self.queue.push_back(Queued {
                    offset,
                    record: record.clone(),
                    caught_up,
                });
                Offer::Queued
            }
            Ok(_) => {
                metrics.report(spec, Report::Filtered);
                self.tracker.pass(offset);
                Offer::Passed
            }
            Err(_) => {
                metrics.invalid(spec);
                self.tracker.pass(offset);
                Offer::Passed
            }
        }
    }
}
