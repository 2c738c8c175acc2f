//! One topic's reader: each partition is read once for all of the topic's
//! egresses (a broker's triggers, a channel's subscriptions), and each
//! egress keeps its own position, committed to its own consumer group
//! (`knative-trigger-<namespace>-<name>`, as the reference names them).
//!
//! - The reader's consumer joins `ferry-reader.<topic>`, which shares the
//!   partitions among the dispatcher's replicas. On assignment it reads
//!   each egress's committed position (pinning new egresses at the end of
//!   the partition) and starts from the lowest; records an egress already
//!   took are skipped for it.
//! - Each record is decoded once, filtered per egress, and queued on the
//!   egress's lane (see `lanes`). A full egress pauses the reader; if it
//!   still holds the others back after `detach_after`, it gets a catch-up
//!   consumer of its own (see `catch_up`) until it is back with the reader.
//! - Positions are committed every `commit_interval`, as soon as an egress
//!   has finished a window's worth (`max_in_flight`) of deliveries since
//!   its last commit, on revocation and at stop, never past a delivery
//!   still running. So a crash delivers again at most what was in flight
//!   and about one window more, however fast the egress goes.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use ferry_common::kafka::{partition_count, ConsumerSettings};
use futures::{stream, StreamExt};
use rdkafka::{
    bindings::rd_kafka_resp_err_t as RespErr,
    consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer},
    error::{KafkaError, KafkaResult},
    ClientContext, Message, Offset, TopicPartitionList,
};
use tokio::{
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    catch_up::{CatchUp, Fetched},
    deliver::{Deliverer, Report},
    egress::EgressSpec,
    group_offsets::GroupOffsets,
    lanes::{Egress, Lane, Offer, Start},
    metrics::Metrics,
    record::Record,
};

/// How every reader runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub consumer: ConsumerSettings,
    /// Deliveries in flight per unordered egress; also the most records
    /// buffered per egress.
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    /// How long a stopping reader waits for deliveries in flight.
    pub drain_timeout: Duration,
    /// How long a full egress may hold its topic's other egresses back
    /// before it is read for separately.
    pub detach_after: Duration,
    /// Deliveries in flight for all of a topic's egresses together: what
    /// bounds memory when a broker has many triggers.
    pub max_deliveries: usize,
    /// How often each egress's lag is measured.
    pub lag_interval: Duration,
}

/// An egress the reader should run, and its readiness flag.
#[derive(Clone)]
pub struct Wanted {
    pub spec: Arc<EgressSpec>,
    pub started: Arc<AtomicBool>,
}

pub type WantedRx = watch::Receiver<Vec<Wanted>>;

/// The consumer group that shares a topic's partitions among replicas.
pub fn reader_group(topic: &str) -> String {
    format!("ferry-reader.{topic}")
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// Offset requests in flight at once, so that a topic with a thousand
/// egresses does not queue a thousand requests at the group coordinators.
const OFFSET_REQUESTS: usize = 32;
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs a topic's reader until `stop`, restarting it after errors.
pub async fn run(
    topic: Topic,
    deliverer: Arc<Deliverer>,
    settings: Arc<Settings>,
    mut wanted: WantedRx,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let reader = Reader::new(&topic, &deliverer, &settings);
        match reader.run(&mut wanted, &stop).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(topic = %topic.name, %error, "topic reader failed; restarting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESTART_DELAY) => {}
                }
            }
        }
    }
}

/// Where a reader reads.
#[derive(Clone)]
pub struct Topic {
    pub name: String,
    pub bootstrap: String,
    pub offsets: GroupOffsets,
}

/// What the reader's task and its rebalance callbacks share.
struct State {
    /// Assigned partitions, and the next offset the reader hands out.
    next: HashMap<i32, i64>,
    egresses: HashMap<Arc<str>, Egress>,
    /// Whether the first assignment came: egresses added before it get
    /// their lanes then.
    assigned: bool,
    epoch: u64,
    /// When the reader last paused because an egress was full.
    paused_since: Option<Instant>,
    failed: Option<KafkaError>,
    /// Egresses with deliveries waiting for the budget, in turn.
    starved: VecDeque<Arc<str>>,
    /// Per partition, the offset missing when records skipped ahead, and
    /// how often it was read again (see [`arrival`]).
    refetched: HashMap<i32, (i64, usize)>,
}

/// What the reader does with a record, given the offset it expects next.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    Read,
    /// Offsets were skipped: read again from this one.
    Refetch(i64),
}

/// How far before the missing offset each re-read starts.
const REWIND: [i64; 3] = [64, 1024, 16384];

/// A record at `offset` where `expected` was next, after `tried` re-reads
/// of that gap. A broker may answer a fetch that starts inside a produce
/// batch with the batches after it (Tansu 0.6 does, so a dispatcher that
/// restarts at a position in the middle of a batch lost the rest of it,
/// for every trigger). Kafka leaves gaps only where compaction or
/// transaction markers removed records. So records that skip ahead are
/// read again from a little earlier, then from further back; a gap still
/// there after every re-read is real. Records below an egress's position
/// are skipped for it, so a re-read costs reading, not deliveries.
fn arrival(expected: i64, offset: i64, tried: usize) -> Arrival {
    match REWIND.get(tried) {
        Some(rewind) if offset > expected => Arrival::Refetch((expected - rewind).max(0)),
        _ => Arrival::Read,
    }
}

type Shared = Arc<Mutex<State>>;

/// High watermarks: (partition, offset after the last record).
type Highs = Vec<(i32, i64)>;

/// Positions to commit, per egress: (partition, next offset to read).
type Commits = Vec<(Arc<EgressSpec>, Vec<(i32, i64)>)>;

struct Reader {
    topic: Topic,
    deliverer: Arc<Deliverer>,
    settings: Arc<Settings>,
    state: Shared,
    done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    fetched: (
        mpsc::UnboundedSender<Fetched>,
        mpsc::UnboundedReceiver<Fetched>,
    ),
    /// Deliveries spawned and not yet reported.
    outstanding: usize,
    /// Shared by the topic's deliveries in flight.
    budget: Arc<Semaphore>,
    /// An egress has a window of finished deliveries to commit.
    commit_due: bool,
    /// High watermarks of the reader's partitions, measured off the task.
    highs: (mpsc::UnboundedSender<Highs>, mpsc::UnboundedReceiver<Highs>),
}

/// A finished (or interrupted) delivery.
struct Done {
    key: Arc<str>,
    partition: i32,
    epoch: u64,
    offset: i64,
    report: Option<Report>,
    caught_up: bool,
}

// === impl Reader ===

impl Reader {
    fn new(topic: &Topic, deliverer: &Arc<Deliverer>, settings: &Arc<Settings>) -> Self {
        Reader {
            topic: topic.clone(),
            deliverer: deliverer.clone(),
            settings: settings.clone(),
            state: Arc::new(Mutex::new(State {
                next: HashMap::new(),
                egresses: HashMap::new(),
                assigned: false,
                epoch: 0,
                paused_since: None,
                failed: None,
                starved: VecDeque::new(),
                refetched: HashMap::new(),
            })),
            budget: Arc::new(Semaphore::new(settings.max_deliveries)),
            done: mpsc::unbounded_channel(),
            fetched: mpsc::unbounded_channel(),
            outstanding: 0,
            commit_due: false,
            highs: mpsc::unbounded_channel(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("reader state lock")
    }

    async fn run(mut self, wanted: &mut WantedRx, stop: &CancellationToken) -> KafkaResult<()> {
        let context = Rebalancer {
            topic: self.topic.clone(),
            state: self.state.clone(),
        };
        let consumer: StreamConsumer<Rebalancer> = self
            .settings
            .consumer
            .client_config(&self.topic.bootstrap, &reader_group(&self.topic.name))
            .create_with_context(context)?;
        let _gauge = self.deliverer.metrics.consumer_opened("reader");
        let first = wanted.borrow_and_update().clone();
        self.sync(&consumer, &first).await?;
        consumer.subscribe(&[&self.topic.name])?;
        tracing::info!(topic = %self.topic.name, group = %reader_group(&self.topic.name), "topic reader started");

        let mut commit_tick = tokio::time::interval(self.settings.commit_interval);
        let mut commit_round: Option<tokio::task::JoinHandle<()>> = None;
        let mut lag_tick = tokio::time::interval(self.settings.lag_interval);
        let mut lag_round: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            // librdkafka's pause drops what it fetched and may resume past
            // it, so a full reader just stops taking records.
            let full = self.full();
            let detach_at = self
                .lock()
                .paused_since
                .map(|t| t + self.settings.detach_after);
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                // Before the work below: under a steady stream there is
                // always a completion or a record ready, and commits must
                // not starve.
                _ = commit_tick.tick() => self.commit_due = true,
                _ = lag_tick.tick() => {
                    if lag_round.as_ref().is_none_or(|r| r.is_finished()) {
                        lag_round = Some(self.measure_highs());
                    }
                }
                Some(highs) = self.highs.1.recv() => self.record_lag(&highs),
                changed = wanted.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let wanted = wanted.borrow_and_update().clone();
                    self.sync(&consumer, &wanted).await?;
                }
                Some(done) = self.done.1.recv() => self.finish(done),
                Some(fetched) = self.fetched.1.recv() => self.caught_up(fetched),
                _ = sleep_until(detach_at) => self.detach_laggards(),
                message = consumer.recv(), if !full => match message {
                    Ok(message) => {
                        let (partition, offset) = (message.partition(), message.offset());
                        let record = Arc::new(Record::decode(&message));
                        if let Some(from) = self.read(partition, offset, record) {
                            if let Err(error) = consumer.seek(&self.topic.name, partition, Offset::Offset(from), KAFKA_TIMEOUT) {
                                tracing::error!(topic = %self.topic.name, partition, from, %error, "cannot read the skipped offsets again");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(topic = %self.topic.name, %error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            if self.commit_due && commit_round.as_ref().is_none_or(|r| r.is_finished()) {
                self.commit_due = false;
                commit_round = Some(tokio::spawn(self.commit(false)));
            }
            if let Some(error) = self.lock().failed.take() {
                return Err(error);
            }
        }

        // Stop reading; let deliveries in flight finish, then commit.
        let deadline = Instant::now() + self.settings.drain_timeout;
        while self.outstanding > 0 {
            tokio::select! {
                Some(done) = self.done.1.recv() => self.finish(done),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(topic = %self.topic.name, outstanding = self.outstanding, "deliveries still running at the drain deadline; they will be delivered again");
                    break;
                }
            }
        }
        if let Some(round) = commit_round {
            let _ = round.await;
        }
        self.commit(true).await;
        for egress in self.lock().egresses.values() {
            self.forget(egress);
        }
        tracing::info!(topic = %self.topic.name, "topic reader stopped");
        Ok(())
    }

    /// Reads the high watermarks of the partitions this reader holds, on
    /// the blocking pool (each is a request to the broker).
    fn measure_highs(&self) -> tokio::task::JoinHandle<()> {
        let partitions: Vec<i32> = self.lock().next.keys().copied().collect();
        let (topic, out) = (self.topic.clone(), self.highs.0.clone());
        tokio::task::spawn_blocking(move || {
            let highs = partitions
                .into_iter()
                .filter_map(|p| topic.offsets.end(&topic.name, p).ok().map(|h| (p, h)))
                .collect();
            let _ = out.send(highs);
        })
    }

    /// Each egress's lag: from its position on each partition to the end,
    /// the reader's own position when that is further (Tansu can report a
    /// high watermark short of the last record).
    fn record_lag(&self, highs: &[(i32, i64)]) {
        let state = self.lock();
        let metrics = &self.deliverer.metrics;
        for egress in state.egresses.values() {
            let mut by_partition = std::collections::BTreeMap::new();
            for &(partition, high) in highs {
                let Some(lane) = egress.lanes.get(&partition) else {
                    continue;
                };
                let end = high.max(state.next.get(&partition).copied().unwrap_or(0));
                let lag = (end - lane.position()).max(0) as u64;
                metrics.lag(&egress.spec, partition, lag);
                by_partition.insert(partition, lag);
            }
            let observed = &self.deliverer.observed;
            let before = observed.lag_partitions(&egress.spec);
            let gone = before.into_iter().filter(|p| !by_partition.contains_key(p));
            metrics.forget_lag(&egress.spec, gone);
            observed.lag(&egress.spec, by_partition);
        }
    }

    /// Drops what is shown of an egress that stops running here.
    fn forget(&self, egress: &Egress) {
        self.deliverer.metrics.forget(&egress.spec);
        let observed = &self.deliverer.observed;
        let partitions = observed.lag_partitions(&egress.spec);
        self.deliverer.metrics.forget_lag(&egress.spec, partitions);
        observed.remove(&egress.spec);
    }

    /// Where to read again from when a record comes after the offset
    /// expected on its partition (see [`arrival`]), with its bookkeeping.
    fn gap(
        &self,
        refetched: &mut HashMap<i32, (i64, usize)>,
        partition: i32,
        expected: i64,
        offset: i64,
    ) -> Option<i64> {
        if offset <= expected {
            if offset == expected {
                refetched.remove(&partition);
            }
            return None;
        }
        let tried = refetched
            .get(&partition)
            .filter(|(at, _)| *at == expected)
            .map_or(0, |(_, tried)| *tried);
        let topic = &self.topic.name;
        match arrival(expected, offset, tried) {
            Arrival::Refetch(from) => {
                refetched.insert(partition, (expected, tried + 1));
                tracing::warn!(%topic, partition, expected, offset, from, "records skipped ahead; reading again from earlier");
                self.deliverer.metrics.offset_gap(topic);
                Some(from)
            }
            Arrival::Read => {
                refetched.remove(&partition);
                tracing::warn!(%topic, partition, expected, offset, "offsets still missing after every re-read (compacted or transactional topic?); reading on");
                None
            }
        }
    }

    /// A record from the reader's consumer, offered to every egress that
    /// takes the reader's records on its partition; or, when records
    /// skipped ahead, the offset to read again from.
    fn read(&mut self, partition: i32, offset: i64, record: Arc<Record>) -> Option<i64> {
        let mut starts = Vec::new();
        {
            let mut state = self.lock();
            let State {
                next,
                egresses,
                starved,
                refetched,
                ..
            } = &mut *state;
            let Some(at) = next.get_mut(&partition) else {
                return None; // from before a revocation
            };
            if let Some(from) = self.gap(refetched, partition, *at, offset) {
                return Some(from);
            }
            *at = offset + 1;
            if let Err(invalid) = &record.event {
                tracing::warn!(topic = %self.topic.name, partition, offset, %invalid, "skipping a record that is not a CloudEvent");
            }
            if let Some(conflict) = &record.content_type_conflict {
                tracing::warn!(
                    topic = %self.topic.name, partition, offset,
                    content_type = %conflict.content_type, ce_datacontenttype = %conflict.datacontenttype,
                    "record headers disagree on the content type; content-type is used"
                );
                self.deliverer
                    .metrics
                    .content_type_conflict(&self.topic.name);
            }
            for egress in egresses.values_mut() {
                let Some(lane) = egress.lanes.get_mut(&partition) else {
                    continue;
                };
                if lane.behind {
                    // The reader moved on: it may have come back to it.
                    rejoin(egress, next, self.settings.max_in_flight);
                    continue;
                }
                lane.offer(
                    &egress.spec,
                    &self.deliverer.metrics,
                    offset,
                    &record,
                    false,
                );
                let ready = self.ready(egress, starved);
                if !ready.is_empty() {
                    starts.push((egress.key.clone(), ready));
                }
            }
        }
        for (key, starts) in starts {
            self.spawn(&key, starts);
        }
        None
    }

    /// A record from an egress's catch-up consumer.
    fn caught_up(&mut self, fetched: Fetched) {
        self.update(&fetched.key, |egress, metrics| {
            let offer = match egress.lanes.get_mut(&fetched.partition) {
                Some(lane) if lane.behind => {
                    lane.offer(&egress.spec, metrics, fetched.offset, &fetched.record, true)
                }
                _ => Offer::Skipped,
            };
            // A queued record holds its place in the catch-up window
            // until its delivery ends.
            if offer != Offer::Queued {
                egress.give_back_catch_up();
            }
        });
    }

    fn finish(&mut self, done: Done) {
        self.outstanding -= 1;
        let window = self.settings.max_in_flight;
        let mut due = false;
        self.update(&done.key, |egress, _| {
            egress.finish(done.partition, done.epoch, done.offset, done.report);
            due = egress.uncommitted >= window;
            if done.caught_up {
                egress.give_back_catch_up();
            }
        });
        self.commit_due |= due;
        self.feed_starved();
    }

    /// Changes one egress, lets lanes behind rejoin, and starts what is
    /// ready.
    fn update(&mut self, key: &Arc<str>, change: impl FnOnce(&mut Egress, &Metrics)) {
        let starts = {
            let mut state = self.lock();
            let State {
                next,
                egresses,
                starved,
                ..
            } = &mut *state;
            let Some(egress) = egresses.get_mut(key) else {
                return;
            };
            change(egress, &self.deliverer.metrics);
            rejoin(egress, next, self.settings.max_in_flight);
            self.ready(egress, starved)
        };
        self.spawn(key, starts);
    }

    /// The deliveries of `egress` that may start now; if the budget ran
    /// out, it waits its turn.
    fn ready(&self, egress: &mut Egress, starved: &mut VecDeque<Arc<str>>) -> Vec<Start> {
        let (starts, out_of_budget) = egress.ready(self.settings.max_in_flight, &self.budget);
        if out_of_budget && !egress.starved {
            egress.starved = true;
            starved.push_back(egress.key.clone());
        }
        starts
    }

    /// Budget freed by finished deliveries goes to the egresses that
    /// waited for it, in turn.
    fn feed_starved(&mut self) {
        while self.budget.available_permits() > 0 {
            let (key, starts) = {
                let mut state = self.lock();
                let State {
                    egresses, starved, ..
                } = &mut *state;
                let Some(key) = starved.pop_front() else {
                    return;
                };
                let Some(egress) = egresses.get_mut(&key) else {
                    continue;
                };
                egress.starved = false;
                let starts = self.ready(egress, starved);
                (key, starts)
            };
            self.spawn(&key, starts);
        }
    }

    fn spawn(&mut self, key: &Arc<str>, starts: Vec<Start>) {
        if starts.is_empty() {
            return;
        }
        let (spec, stop) = {
            let state = self.lock();
            let Some(egress) = state.egresses.get(key) else {
                return;
            };
            (egress.spec.clone(), egress.stop.clone())
        };
        for start in starts {
            self.outstanding += 1;
            let (spec, stop, deliverer, done) = (
                spec.clone(),
                stop.clone(),
                self.deliverer.clone(),
                self.done.0.clone(),
            );
            let key = key.clone();
            tokio::spawn(async move {
                let report = deliverer.deliver(&spec, &start.queued.record, &stop).await;
                drop(start.permit);
                if let Some(report) = report {
                    deliverer.metrics.report(&spec, report);
                    deliverer.observed.report(&spec, report);
                }
                let _ = done.send(Done {
                    key,
                    partition: start.partition,
                    epoch: start.epoch,
                    offset: start.queued.offset,
                    report,
                    caught_up: start.queued.caught_up,
                });
            });
        }
    }

    /// Whether an egress is full, so that the reader stops taking records;
    /// notes since when, for `detach_laggards`.
    fn full(&self) -> bool {
        let mut state = self.lock();
        let full = state
            .egresses
            .values()
            .any(|e| e.holds_reader(self.settings.max_in_flight));
        match (full, state.paused_since) {
            (true, None) => state.paused_since = Some(Instant::now()),
            (false, Some(_)) => state.paused_since = None,
            _ => {}
        }
        full
    }

    /// Egresses that held the reader back for `detach_after` while others
    /// could have gone on get a catch-up consumer of their own.
    fn detach_laggards(&mut self) {
        let mut state = self.lock();
        state.paused_since = Some(Instant::now());
        let window = self.settings.max_in_flight;
        if state.egresses.values().all(|e| e.holds_reader(window)) {
            return; // holding back nobody: they are all as full
        }
        for egress in state.egresses.values_mut() {
            // One waiting for the budget is not slow; the topic is busy.
            if !egress.holds_reader(window) || egress.starved {
                continue;
            }
            for lane in egress.lanes.values_mut() {
                lane.behind = true;
            }
            self.follow(egress);
        }
    }

    /// Starts, moves or stops the egress's catch-up consumer to match its
    /// lanes behind the reader.
    fn follow(&self, egress: &mut Egress) {
        follow(
            egress,
            &self.settings,
            &self.fetched.0,
            &self.deliverer.metrics,
        );
    }

    /// Brings the reader's egresses in line with what is wanted: removed
    /// ones stop without committing (their groups are being deleted);
    /// changed ones commit, and start again from there with the new spec.
    async fn sync(
        &mut self,
        consumer: &StreamConsumer<Rebalancer>,
        wanted: &[Wanted],
    ) -> KafkaResult<()> {
        let wanted: HashMap<&str, &Wanted> =
            wanted.iter().map(|w| (w.spec.key.as_str(), w)).collect();
        let (removed, changed): (Vec<Egress>, Vec<Egress>) = {
            let mut state = self.lock();
            let stale: Vec<Arc<str>> = state
                .egresses
                .iter()
                .filter(|(key, e)| wanted.get(key.as_ref()).is_none_or(|w| *w.spec != *e.spec))
                .map(|(key, _)| key.clone())
                .collect();
            stale
                .into_iter()
                .filter_map(|key| state.egresses.remove(&key))
                .partition(|e| !wanted.contains_key(&*e.key))
        };
        for egress in removed.iter().chain(&changed) {
            egress.stop.cancel();
            self.forget(egress);
        }
        for mut egress in changed {
            let positions = egress.positions(true);
            if let Err(error) = self
                .topic
                .offsets
                .alter(&egress.spec.consumer_group, &self.topic.name, &positions)
                .await
            {
                tracing::warn!(egress = %egress.spec.name, %error, "commit before a change failed; events may be delivered again");
            }
        }
        for w in wanted.values() {
            if self.lock().egresses.contains_key(w.spec.key.as_str()) {
                continue;
            }
            self.add(consumer, w).await?;
        }
        Ok(())
    }

    async fn add(
        &mut self,
        consumer: &StreamConsumer<Rebalancer>,
        wanted: &Wanted,
    ) -> KafkaResult<()> {
        let mut egress = Egress::new(wanted.spec.clone(), wanted.started.clone());
        // Every partition, not only those this replica holds: the others'
        // owners may not have seen the egress yet.
        let all = partitions(consumer, &self.topic.name)?;
        let positions = positions(&self.topic, &egress.spec, &all).await?;
        let mut state = self.lock();
        if state.assigned {
            let State { next, epoch, .. } = &mut *state;
            for (partition, from) in positions {
                let Some(&next) = next.get(&partition) else {
                    continue;
                };
                *epoch += 1;
                egress
                    .lanes
                    .insert(partition, Lane::new(*epoch, from, from < next));
            }
            self.follow(&mut egress);
            egress.started.store(true, Ordering::Release);
        }
        drop(state);
        tracing::info!(egress = %egress.spec.name, group = %egress.spec.consumer_group, topic = %self.topic.name, ordered = egress.spec.ordered, "egress started");
        self.lock().egresses.insert(egress.key.clone(), egress);
        Ok(())
    }

    /// Commits the egresses' positions: those that moved, or (`all`) all.
    fn commit(&self, all: bool) -> impl std::future::Future<Output = ()> + 'static {
        let batch: Commits = self
            .lock()
            .egresses
            .values_mut()
            .map(|e| (e.spec.clone(), e.positions(all)))
            .filter(|(_, positions)| !positions.is_empty())
            .collect();
        commit(self.topic.clone(), batch)
    }
}

async fn commit(topic: Topic, batch: Commits) {
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
        .buffer_unordered(OFFSET_REQUESTS)
        .collect::<()>()
        .await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// See [`Egress::rejoin`]; also moves or stops its catch-up consumer.
fn rejoin(egress: &mut Egress, next: &HashMap<i32, i64>, window: usize) {
    if egress.catch_up.is_some() && egress.rejoin(next, window) {
        let behind = egress.behind();
        match &egress.catch_up {
            Some(_) if behind.is_empty() => {
                tracing::info!(egress = %egress.spec.name, "egress is back with its topic's reader");
                egress.catch_up = None;
            }
            Some(catch_up) => catch_up.reposition(behind),
            None => {}
        }
    }
}

fn follow(
    egress: &mut Egress,
    settings: &Settings,
    out: &mpsc::UnboundedSender<Fetched>,
    metrics: &Metrics,
) {
    let behind = egress.behind();
    if behind.is_empty() {
        egress.catch_up = None;
        return;
    }
    if let Some(catch_up) = &egress.catch_up {
        catch_up.reposition(behind);
        return;
    }
    match CatchUp::start(
        &egress.spec,
        egress.key.clone(),
        &settings.consumer,
        behind,
        settings.max_in_flight,
        out.clone(),
        metrics.consumer_opened("catch_up"),
    ) {
        Ok(catch_up) => egress.catch_up = Some(catch_up),
        Err(error) => {
            // It stays with the reader, holding it back, and is tried
            // again after `detach_after`.
            tracing::error!(egress = %egress.spec.name, %error, "cannot start a catch-up consumer");
            for lane in egress.lanes.values_mut() {
                lane.behind = false;
            }
        }
    }
}

/// The topic's partitions.
fn partitions<C: Consumer<X>, X: ConsumerContext>(
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
/// without one are pinned at their end, as of now, so that a new egress
/// gets every event accepted from now on and none from before.
async fn positions(
    topic: &Topic,
    spec: &EgressSpec,
    partitions: &[i32],
) -> KafkaResult<HashMap<i32, i64>> {
    let group = &spec.consumer_group;
    let committed = topic.offsets.list(group, &topic.name, partitions).await?;
    let mut positions = HashMap::new();
    let mut pins = Vec::new();
    for &partition in partitions {
        let from = match committed.get(&partition).copied().flatten() {
            Some(offset) => offset,
            None => {
                let high = topic.offsets.end(&topic.name, partition)?;
                pins.push((partition, high));
                high
            }
        };
        positions.insert(partition, from);
    }
    if !pins.is_empty() {
        topic.offsets.alter(group, &topic.name, &pins).await?;
        tracing::info!(egress = %spec.name, partitions = pins.len(), "new consumer group: start positions pinned at the end of the topic");
    }
    Ok(positions)
}

/// The reader's rebalance callbacks, run inside its consumer's poll.
/// librdkafka waits for them, so they block on the offset requests: the
/// positions must be read before fetching starts, and committed before
/// another replica takes the partitions.
struct Rebalancer {
    topic: Topic,
    state: Shared,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RespErr, tpl: &mut TopicPartitionList) {
        tracing::debug!(topic = %self.topic.name, ?err, partitions = tpl.count(), "rebalance");
        match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(error) = block_on(self.assigned(tpl)) {
                    tracing::error!(topic = %self.topic.name, %error, "cannot read the egresses' positions");
                    self.state.lock().expect("reader state lock").failed = Some(error);
                }
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(topic = %self.topic.name, %error, "cannot assign");
                }
            }
            _ => {
                block_on(self.revoked(tpl));
                if let Err(error) = consumer.unassign() {
                    tracing::error!(topic = %self.topic.name, %error, "cannot unassign");
                }
            }
        }
    }
}

/// Runs a callback's offset requests to the end. The callback runs inside
/// the reader's task, on a tokio worker: tokio's cooperative budget would
/// end that task's turn after 128 awaited replies and defer the wake-up
/// until the task yields, which a blocked callback never does (a broker
/// with more than 128 triggers never got its partitions).
fn block_on<F: std::future::Future>(work: F) -> F::Output {
    futures::executor::block_on(tokio::task::unconstrained(work))
}

impl Rebalancer {
    /// Sets every partition's start (the lowest egress position) in `tpl`
    /// and gives each egress a lane on it.
    async fn assigned(&self, tpl: &mut TopicPartitionList) -> KafkaResult<()> {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let specs: Vec<Arc<EgressSpec>> = {
            let state = self.state.lock().expect("reader state lock");
            state.egresses.values().map(|e| e.spec.clone()).collect()
        };
        let listed: Vec<_> = stream::iter(&specs)
            .map(|spec| positions(&self.topic, spec, &partitions))
            .buffered(OFFSET_REQUESTS)
            .collect()
            .await;
        let mut all = Vec::new();
        for (spec, positions) in specs.iter().zip(listed) {
            all.push((spec.key.clone(), positions?));
        }
        let mut state = self.state.lock().expect("reader state lock");
        let State {
            next,
            egresses,
            epoch,
            assigned,
            paused_since,
            refetched,
            ..
        } = &mut *state;
        next.clear();
        refetched.clear();
        for &partition in &partitions {
            let start = all
                .iter()
                .filter_map(|(_, p)| p.get(&partition).copied())
                .min();
            let start = match start {
                Some(start) => start,
                None => self.topic.offsets.end(&self.topic.name, partition)?,
            };
            next.insert(partition, start);
            tpl.set_partition_offset(&self.topic.name, partition, Offset::Offset(start))?;
        }
        for (key, positions) in all {
            let Some(egress) = egresses.get_mut(key.as_str()) else {
                continue;
            };
            for (partition, from) in positions {
                *epoch += 1;
                egress
                    .lanes
                    .insert(partition, Lane::new(*epoch, from, false));
            }
            egress.catch_up = None;
            egress.started.store(true, Ordering::Release);
        }
        *assigned = true;
        *paused_since = None;
        tracing::debug!(topic = %self.topic.name, partitions = partitions.len(), "partitions assigned");
        Ok(())
    }

    /// Commits the revoked partitions' positions and drops their lanes.
    async fn revoked(&self, tpl: &TopicPartitionList) {
        let batch: Commits = {
            let mut state = self.state.lock().expect("reader state lock");
            let State {
                next,
                egresses,
                paused_since,
                ..
            } = &mut *state;
            *paused_since = None;
            let mut batch = Vec::new();
            for element in tpl.elements() {
                next.remove(&element.partition());
            }
            for egress in egresses.values_mut() {
                let mut positions = Vec::new();
                for element in tpl.elements() {
                    let Some(lane) = egress.lanes.remove(&element.partition()) else {
                        continue;
                    };
                    if let Some(offset) = lane.tracker.committable() {
                        positions.push((element.partition(), offset));
                    }
                }
                if egress.behind().is_empty() {
                    egress.catch_up = None;
                } else if let Some(catch_up) = &egress.catch_up {
                    catch_up.reposition(egress.behind());
                }
                if !positions.is_empty() {
                    batch.push((egress.spec.clone(), positions));
                }
            }
            batch
        };
        tracing::debug!(topic = %self.topic.name, partitions = tpl.count(), "partitions revoked");
        commit(self.topic.clone(), batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_that_skip_ahead_are_read_again_from_further_back_then_read_past() {
        assert_eq!(arrival(100, 100, 0), Arrival::Read);
        assert_eq!(arrival(100, 40, 0), Arrival::Read, "a re-read goes back");
        assert_eq!(arrival(100, 130, 0), Arrival::Refetch(36));
        assert_eq!(arrival(100, 130, 1), Arrival::Refetch(0));
        assert_eq!(
            arrival(20_000, 20_007, 2),
            Arrival::Refetch(20_000 - 16_384)
        );
        assert_eq!(
            arrival(100, 130, 3),
            Arrival::Read,
            "a real gap is read past"
        );
    }
}
