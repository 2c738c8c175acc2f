//! Kafka admin work in the background, one worker per cluster, so that a
//! cluster that does not answer never holds up planning, the contract or
//! statuses, nor another cluster's work.
//!
//! The reconciler says what each cluster should look like (topics that
//! must exist, deletions still to do); each cluster's worker applies the
//! latest of that, retries with backoff while something fails, and reports
//! every result back, waking the reconciler.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry_common::{kafka::ClusterRef, secrets::Secrets};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    kafka_admin::KafkaAdmin,
    plan::{
        group_starts::{GroupStart, Pins},
        TopicSpec,
    },
};

/// How long a consumer group outlives its trigger, and a topic its
/// broker: the dispatcher sees the contract within its poll interval, a
/// commit of the trigger's position may be in flight, and a reader may
/// still be fetching from the topic. On Tansu, a Fetch in flight for a
/// deleted topic crashes librdkafka 2.12 (README, Known problems).
pub const LET_GO_GRACE: Duration = Duration::from_secs(5);

/// Topics are checked again this often when nothing failed, so that one
/// deleted behind Ferry's back is noticed.
const RECHECK: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deletion {
    Topic(String),
    Group(String),
}

/// What one cluster should look like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterWork {
    pub topics: Vec<TopicSpec>,
    /// Consumer groups to pin at their start, once their topic exists.
    pub groups: Vec<GroupStart>,
    /// Each with when it was decided.
    pub deletions: BTreeMap<Deletion, Instant>,
}

/// What the workers found, per cluster.
#[derive(Debug, Default)]
pub struct Reports {
    /// (cluster, topic) → whether it exists, or why not.
    pub topics: HashMap<(ClusterRef, String), Result<(), String>>,
    /// (cluster, group) → whether it is pinned at its start, or why not.
    pub pins: Pins,
    /// Deletions done, to be dropped from the pending list.
    pub deleted: Vec<(ClusterRef, Deletion)>,
}

pub struct KafkaWork {
    overrides: ferry_common::kafka::Overrides,
    secrets: Secrets,
    workers: HashMap<ClusterRef, watch::Sender<Arc<ClusterWork>>>,
    reports: Arc<Mutex<Reports>>,
    reported: Arc<Notify>,
    shutdown: CancellationToken,
}

impl KafkaWork {
    pub fn new(overrides: ferry_common::kafka::Overrides, secrets: Secrets) -> Self {
        KafkaWork {
            overrides,
            secrets,
            workers: HashMap::new(),
            reports: Arc::default(),
            reported: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Hands each cluster its work; a cluster not named has nothing left
    /// to do, and its worker stops.
    pub fn assign(&mut self, work: BTreeMap<ClusterRef, ClusterWork>) {
        self.workers.retain(|cluster, _| work.contains_key(cluster));
        for (cluster, work) in work {
            let work = Arc::new(work);
            match self.workers.get(&cluster) {
                Some(tx) => {
                    tx.send_if_modified(|current| {
                        let changed = **current != *work;
                        if changed {
                            *current = work.clone();
                        }
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(work);
                    tokio::spawn(worker(
                        cluster.clone(),
                        KafkaAdmin::new(self.overrides.clone(), self.secrets.clone()),
                        rx,
                        self.reports.clone(),
                        self.reported.clone(),
                        self.shutdown.child_token(),
                    ));
                    self.workers.insert(cluster, tx);
                }
            }
        }
    }

    /// Takes what the workers reported since the last call.
    pub fn take_reports(&self) -> Reports {
        std::mem::take(&mut *self.reports.lock().expect("reports"))
    }

    /// Resolves once a worker has reported something.
    pub fn reported(&self) -> Arc<Notify> {
        self.reported.clone()
    }
}

impl Drop for KafkaWork {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Applies one cluster's latest work until it is taken away.
async fn worker(
    cluster: ClusterRef,
    mut admin: KafkaAdmin,
    mut work: watch::Receiver<Arc<ClusterWork>>,
    reports: Arc<Mutex<Reports>>,
    reported: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut last: HashMap<String, Result<(), String>> = HashMap::new();
    // Each group is pinned once; its result is reported once.
    let mut pinned: HashMap<GroupStart, Result<(), String>> = HashMap::new();
    loop {
        let current = work.borrow_and_update().clone();
        let mut unfinished = false;
        // The earliest end of a grace still running: a wait, not a failure.
        let mut grace_ends: Option<Instant> = None;
        for topic in &current.topics {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = admin.ensure_topic(&cluster, topic) => r,
            };
            if let Err(why) = &result {
                tracing::warn!(cluster = %cluster, topic = %topic.name, %why, "topic not ready");
                unfinished = true;
            }
            if last.get(&topic.name) != Some(&result) {
                last.insert(topic.name.clone(), result.clone());
                report(&reports, &reported, |r| {
                    r.topics
                        .insert((cluster.clone(), topic.name.clone()), result);
                });
            }
        }
        let wanted: HashSet<&GroupStart> = current.groups.iter().collect();
        pinned.retain(|group, _| wanted.contains(group));
        // By topic: one metadata lookup, and one lookup of each start
        // point, for all of a topic's groups.
        let mut due: BTreeMap<&str, Vec<&GroupStart>> = BTreeMap::new();
        for group in &current.groups {
            // A topic not there yet is reported, and tried again, above.
            if pinned.get(group) != Some(&Ok(())) && last.get(&group.topic) == Some(&Ok(())) {
                due.entry(group.topic.as_str()).or_default().push(group);
            }
        }
        for (topic, groups) in due {
            let results = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = admin.pin_groups(&cluster, topic, &groups) => r,
            };
            for (group, result) in groups.into_iter().zip(results) {
                if let Err(why) = &result {
                    tracing::warn!(cluster = %cluster, group = %group.group, %topic, %why, "consumer group not pinned at its start");
                    unfinished = true;
                }
                if pinned.get(group) != Some(&result) {
                    pinned.insert(group.clone(), result.clone());
                    report(&reports, &reported, |r| {
                        r.pins.insert((cluster.clone(), group.clone()), result);
                    });
                }
            }
        }
        for (deletion, decided) in &current.deletions {
            let done = match deletion {
                // The dispatcher commits a trigger's position from outside
                // its group, and reads a topic in a group of its own, so no
                // membership says when it let go: give it time to see the
                // contract, stop reading and finish a commit in flight.
                _ if decided.elapsed() < LET_GO_GRACE => {
                    let ends = *decided + LET_GO_GRACE;
                    grace_ends = Some(grace_ends.map_or(ends, |e| e.min(ends)));
                    continue;
                }
                Deletion::Group(name) => tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = admin.delete_group(&cluster, name) => r,
                },
                Deletion::Topic(name) => tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = admin.delete_topic(&cluster, name) => r,
                },
            };
            match done {
                Ok(()) => report(&reports, &reported, |r| {
                    r.deleted.push((cluster.clone(), deletion.clone()))
                }),
                Err(why) => {
                    tracing::debug!(cluster = %cluster, ?deletion, %why, "deletion deferred");
                    unfinished = true;
                }
            }
        }
        let wait = if unfinished {
            let wait = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            wait
        } else {
            backoff = FIRST_BACKOFF;
            RECHECK
        };
        let wait = grace_ends.map_or(wait, |ends| {
            wait.min(ends.saturating_duration_since(Instant::now()))
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = work.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn report(reports: &Mutex<Reports>, reported: &Notify, add: impl FnOnce(&mut Reports)) {
    add(&mut reports.lock().expect("reports"));
    reported.notify_one();
}
