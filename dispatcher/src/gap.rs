//! Whether a record arrived where its partition's reader expected it, and
//! if it skipped ahead, where to read again from. Pure bookkeeping; the
//! reader seeks, logs and counts.
//!
//! A broker may answer a fetch that starts inside a produce batch with the
//! batches after it (Tansu 0.6 does, so a dispatcher that restarted at a
//! position in the middle of a batch lost the rest of it, for every
//! trigger). Kafka leaves gaps only where compaction or transaction markers
//! removed records. So records that skip ahead are read again from a
//! little earlier, then from further back; a gap still there after every
//! re-read is real. Records below an egress's position are skipped for it,
//! so a re-read costs reading, not deliveries.

use std::collections::HashMap;

/// How far before the missing offset each re-read starts.
const REWIND: [i64; 3] = [64, 1024, 16384];

/// What the reader does with a record, given the offset it expects next.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The expected one, or one before it (a re-read going back).
    InOrder,
    /// Offsets were skipped: read again from this one.
    ReadAgainFrom(i64),
    /// Offsets are still missing after every re-read: the gap is real.
    ReadPast,
}

/// Per partition, the offset missing when records skipped ahead, and how
/// often it was read again.
#[derive(Debug, Default)]
pub struct Gaps {
    tried: HashMap<i32, (i64, usize)>,
}

impl Gaps {
    /// A record at `offset` on `partition`, where `expected` was next.
    pub fn arrival(&mut self, partition: i32, expected: i64, offset: i64) -> Arrival {
        if offset <= expected {
            if offset == expected {
                self.tried.remove(&partition);
            }
            return Arrival::InOrder;
        }
        let tried = self
            .tried
            .get(&partition)
            .filter(|(at, _)| *at == expected)
            .map_or(0, |(_, tried)| *tried);
        match REWIND.get(tried) {
            Some(rewind) => {
                self.tried.insert(partition, (expected, tried + 1));
                Arrival::ReadAgainFrom((expected - rewind).max(0))
            }
            None => {
                self.tried.remove(&partition);
                Arrival::ReadPast
            }
        }
    }

    /// Partitions were (re)assigned: reading starts afresh.
    pub fn clear(&mut self) {
        self.tried.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Arrival::*, *};

    /// Records arriving one after another, with what each should cause.
    fn run(steps: &[(i32, i64, i64, Arrival, &str)]) {
        let mut gaps = Gaps::default();
        for (partition, expected, offset, want, why) in steps {
            assert_eq!(
                &gaps.arrival(*partition, *expected, *offset),
                want,
                "partition {partition}, expected {expected}, got {offset}: {why}"
            );
        }
    }

    #[test]
    fn records_that_skip_ahead_are_read_again_from_further_back_then_read_past() {
        run(&[
            (0, 100, 100, InOrder, "the expected one"),
            (0, 100, 40, InOrder, "a re-read goes back"),
            (0, 100, 130, ReadAgainFrom(36), "first re-read: 64 back"),
            (
                0,
                100,
                130,
                ReadAgainFrom(0),
                "second: 1024 back, not below 0",
            ),
            (0, 100, 107, ReadAgainFrom(0), "third: furthest back"),
            (0, 100, 130, ReadPast, "a real gap is read past"),
            (
                0,
                100,
                130,
                ReadAgainFrom(36),
                "a new gap there starts over",
            ),
        ]);
    }

    #[test]
    fn each_partition_and_each_missing_offset_counts_its_own_re_reads() {
        run(&[
            (0, 20_000, 20_007, ReadAgainFrom(19_936), "partition 0"),
            (
                1,
                20_000,
                20_007,
                ReadAgainFrom(19_936),
                "partition 1 apart",
            ),
            (
                0,
                20_000,
                20_007,
                ReadAgainFrom(18_976),
                "partition 0 again",
            ),
            (
                0,
                20_005,
                20_007,
                ReadAgainFrom(19_941),
                "another missing offset",
            ),
            (1, 20_000, 20_000, InOrder, "the gap closed"),
            (
                1,
                20_001,
                20_009,
                ReadAgainFrom(19_937),
                "closed: counts anew",
            ),
        ]);
    }
}
