//! One task fires every PingSource's ticks (not a task per source that
//! drifts on its own): it sleeps until the earliest tick due, sends each
//! due source's event off the loop, and computes that source's next tick.
//!
//! - A tick is fired once: the next one is always strictly after the one
//!   just fired, and a (re)started scheduler starts after now, so the
//!   ticks missed while it was down are not fired (as Knative does).
//! - Edits apply at the next tick; a changed schedule is re-planned from
//!   now; a removed source fires no more.
//! - Each tick is counted in `ferry_source_events_total` by outcome; a
//!   failed send is logged with its reason.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    ping::Ping,
    sink::{Origin, Sender, SourceMetrics},
    WorkRx,
};

/// Sends in flight at once: a thousand sources ticking on the same second
/// share a few kept-alive connections instead of opening a thousand
/// (which made the last ticks half a second late; BENCHMARKS.md, 7).
const SENDS_IN_FLIGHT: usize = 64;

struct Entry {
    ping: Arc<Ping>,
    next: Option<DateTime<Utc>>,
}

/// Fires every PingSource's ticks until `stop`.
pub async fn run(mut work: WorkRx, metrics: SourceMetrics, stop: CancellationToken) {
    let sender = Arc::new(Sender::new(metrics));
    let sending = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
    let mut table: HashMap<String, Entry> = HashMap::new();
    sync(&mut table, &work.borrow_and_update().pings, Utc::now());
    loop {
        let due = table.values().filter_map(|e| e.next).min();
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = work.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = work.borrow_and_update().clone();
                sync(&mut table, &current.pings, Utc::now());
            }
            _ = sleep_until(due) => {
                let now = Utc::now();
                for entry in table.values_mut() {
                    let Some(tick) = entry.next.filter(|t| *t <= now) else {
                        continue;
                    };
                    fire(entry.ping.clone(), tick, &sender, &sending, &stop);
                    // Late by more than a period (a busy machine): on from
                    // now, not a burst of the ticks passed.
                    entry.next = entry.ping.schedule.next_after(tick.max(now));
                }
            }
        }
    }
}

/// Brings the table in line with `list`: new sources and changed schedules
/// start after `now`; other edits keep the next tick.
fn sync(table: &mut HashMap<String, Entry>, list: &[Ping], now: DateTime<Utc>) {
    let mut kept = HashMap::new();
    for ping in list {
        let key = ping.key();
        let next = match table.remove(&key) {
            Some(old) if old.ping.schedule == ping.schedule => old.next,
            _ => ping.schedule.next_after(now),
        };
        kept.insert(
            key,
            Entry {
                ping: Arc::new(ping.clone()),
                next,
            },
        );
    }
    *table = kept;
}

fn fire(
    ping: Arc<Ping>,
    tick: DateTime<Utc>,
    sender: &Arc<Sender>,
    sending: &Arc<Semaphore>,
    stop: &CancellationToken,
) {
    let (sender, sending, stop) = (sender.clone(), sending.clone(), stop.clone());
    tokio::spawn(async move {
        let Ok(_turn) = sending.acquire().await else {
            return;
        };
        let origin = Origin {
            kind: "PingSource",
            namespace: &ping.namespace,
            name: &ping.name,
        };
        sender
            .deliver(origin, &ping.sink, &ping.event(tick), &stop)
            .await;
    });
}

async fn sleep_until(at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn ping(name: &str, schedule: &str, data: &str) -> Ping {
        Ping {
            namespace: "ns".into(),
            name: name.into(),
            schedule: Schedule::parse(schedule, None).unwrap(),
            content_type: None,
            data: Some(bytes::Bytes::copy_from_slice(data.as_bytes())),
            extensions: vec![],
            sink: "http://sink/".into(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn edits_keep_the_next_tick_a_new_schedule_starts_from_now_removed_ones_go() {
        let mut table = HashMap::new();
        sync(
            &mut table,
            &[ping("a", "*/10 * * * * *", "1"), ping("b", "@hourly", "1")],
            at("2026-12-03T12:00:01Z"),
        );
        assert_eq!(table["ns/a"].next, Some(at("2026-12-03T12:00:10Z")));
        assert_eq!(table["ns/b"].next, Some(at("2026-12-03T13:00:00Z")));

        sync(
            &mut table,
            &[
                ping("a", "*/10 * * * * *", "2"),
                ping("b", "*/5 * * * * *", "1"),
            ],
            at("2026-12-03T12:00:07Z"),
        );
        assert_eq!(
            table["ns/a"].next,
            Some(at("2026-12-03T12:00:10Z")),
            "data edited: same tick"
        );
        assert_eq!(
            table["ns/a"].ping.data.as_deref(),
            Some(&b"2"[..]),
            "with the new data"
        );
        assert_eq!(
            table["ns/b"].next,
            Some(at("2026-12-03T12:00:10Z")),
            "new schedule, from now"
        );

        sync(
            &mut table,
            &[ping("b", "*/5 * * * * *", "1")],
            at("2026-12-03T12:00:08Z"),
        );
        assert!(!table.contains_key("ns/a"), "deleted: no more ticks");
        assert_eq!(table.len(), 1);
    }
}
