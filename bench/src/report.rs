//! A run's figures: what was sent and accepted, what arrived, what was lost
//! or duplicated, and the latencies.

use std::{collections::BTreeMap, fmt};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{load::Sent, sink::Received};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<u16, u64>,
    pub errors: u64,
    /// Arrivals at the sink, duplicates included.
    pub received: u64,
    /// Accepted events that some expected path never received.
    pub lost: u64,
    /// The first lost events' sequence numbers, with how many paths
    /// missed each: what to look for in the topic.
    pub lost_examples: Vec<(u64, usize)>,
    /// Arrivals beyond the first of an event on a path.
    pub duplicates: u64,
    /// Accepted events per second while sending.
    pub ingress_rate: f64,
    /// Arrivals per second between the first and the last.
    pub delivered_rate: f64,
    /// Request round trip at the ingress (milliseconds).
    pub ingress_latency: Percentiles,
    /// Send to arrival at the sink (milliseconds).
    pub end_to_end: Percentiles,
}

/// How many lost events a report names.
const LOST_EXAMPLES: usize = 20;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

impl Report {
    /// `copies`: how many paths (triggers) each accepted event must reach.
    pub fn new(sent: &Sent, received: &Received, copies: usize) -> Self {
        let accepted = sent.accepted_count();
        let mut lost = accepted * copies.saturating_sub(received.paths.len()) as u64;
        let mut duplicates = 0;
        let mut missed: BTreeMap<u64, usize> = BTreeMap::new();
        for counts in received.paths.values() {
            for seq in sent.accepted.difference(&counts.seen) {
                lost += 1;
                *missed.entry(seq as u64).or_default() += 1;
            }
            duplicates += counts.arrivals - counts.distinct();
        }
        Report {
            sent: sent.sent,
            accepted,
            rejected: sent.rejected.clone(),
            errors: sent.errors,
            received: received.arrivals(),
            lost,
            lost_examples: missed.into_iter().take(LOST_EXAMPLES).collect(),
            duplicates,
            ingress_rate: sent.rate(),
            delivered_rate: received.rate(),
            ingress_latency: Percentiles::of(&sent.latency),
            end_to_end: Percentiles::of(&received.latency),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50, self.p90, self.p99, self.max
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {}, accepted {}, rejected {:?}, errors {}",
            self.sent, self.accepted, self.rejected, self.errors
        )?;
        writeln!(
            f,
            "received {}, lost {}, duplicates {}",
            self.received, self.lost, self.duplicates
        )?;
        writeln!(
            f,
            "ingress {:.0} events/s ({}), delivered {:.0} events/s",
            self.ingress_rate, self.ingress_latency, self.delivered_rate
        )?;
        write!(f, "end to end: {}", self.end_to_end)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fixedbitset::FixedBitSet;

    use super::*;
    use crate::sink::{new_histogram, PathCounts};

    fn bits(seqs: &[usize]) -> FixedBitSet {
        let mut set = FixedBitSet::with_capacity(16);
        for &s in seqs {
            set.insert(s);
        }
        set
    }

    #[test]
    fn counts_lost_and_duplicated_events_per_path() {
        let sent = Sent {
            sent: 5,
            accepted: bits(&[0, 1, 2, 3]),
            rejected: BTreeMap::from([(503, 1)]),
            errors: 0,
            latency: new_histogram(),
            elapsed: Duration::from_secs(1),
        };
        let path = |seen: &[usize], arrivals| PathCounts {
            seen: bits(seen),
            arrivals,
        };
        let received = Received {
            // a: all four, 0 twice; b: misses 3.
            paths: [
                ("/a".to_owned(), path(&[0, 1, 2, 3], 5)),
                ("/b".to_owned(), path(&[0, 1, 2], 3)),
            ]
            .into(),
            latency: new_histogram(),
            first: None,
            last: None,
            foreign: 0,
        };
        let report = Report::new(&sent, &received, 2);
        assert_eq!((report.accepted, report.received), (4, 8));
        assert_eq!((report.lost, report.duplicates), (1, 1));
        // A third trigger that received nothing lost all four.
        assert_eq!(Report::new(&sent, &received, 3).lost, 5);
    }
}
