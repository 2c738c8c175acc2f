//! Which offset of a partition may be committed while deliveries finish out
//! of order: the lowest offset still in flight, or one past the highest
//! offset seen when none is. A crash then never skips an undelivered event.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct OffsetTracker {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset started.
    next: Option<i64>,
    committed: Option<i64>,
}

// === impl OffsetTracker ===

impl OffsetTracker {
    pub fn start(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.pass(offset);
    }

    /// An offset that needs no delivery (filtered out, not an event).
    pub fn pass(&mut self, offset: i64) {
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    pub fn finish(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The offset to commit (the next one to read after a restart).
    pub fn committable(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }

    /// The committable offset when it moved since the last call.
    pub fn take_commit(&mut self) -> Option<i64> {
        let offset = self.committable()?;
        if self.committed == Some(offset) {
            return None;
        }
        self.committed = Some(offset);
        Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_before_the_first_event() {
        assert_eq!(OffsetTracker::default().committable(), None);
    }

    #[test]
    fn commits_stop_at_the_lowest_unfinished_offset() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.start(o);
        }
        assert_eq!(t.committable(), Some(10));
        t.finish(12);
        t.finish(11);
        assert_eq!(t.committable(), Some(10), "10 is still in flight");
        t.finish(10);
        assert_eq!(t.committable(), Some(13));
        t.finish(14);
        assert_eq!(t.committable(), Some(13));
        t.finish(13);
        assert_eq!(t.committable(), Some(15), "all done: one past the highest");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn take_commit_reports_each_position_once() {
        let mut t = OffsetTracker::default();
        t.start(0);
        assert_eq!(t.take_commit(), Some(0));
        assert_eq!(t.take_commit(), None);
        t.start(1);
        t.finish(0);
        assert_eq!(t.take_commit(), Some(1));
        t.finish(1);
        assert_eq!(t.take_commit(), Some(2));
        assert_eq!(t.take_commit(), None);
    }

    #[test]
    fn passed_offsets_move_the_position_unless_something_is_in_flight() {
        let mut t = OffsetTracker::default();
        t.pass(3);
        assert_eq!(t.committable(), Some(4));
        t.start(4);
        t.pass(5);
        assert_eq!(t.committable(), Some(4), "4 is still in flight");
        t.finish(4);
        assert_eq!(t.committable(), Some(6));
    }

    #[test]
    fn gaps_from_compaction_or_transactions_are_fine() {
        let mut t = OffsetTracker::default();
        t.start(5);
        t.start(9);
        t.finish(9);
        assert_eq!(t.committable(), Some(5));
        t.finish(5);
        assert_eq!(t.committable(), Some(10));
    }
}
