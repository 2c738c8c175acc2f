//! One topic's reader, and the delivery loop: each partition is read once
//! for all of the topic's egresses (a broker's triggers, a channel's
//! subscriptions), and each egress keeps its own position, committed to
//! its own consumer group (`knative-trigger-<namespace>-<name>`, as the
//! reference names them).
//!
//! One event, in the order of this file: [`Reader::run`] fetches it →
//! [`Reader::read`] offers it to each egress, whose lane filters and queues
//! it → [`Reader::spawn`] starts what may run → [`Reader::deliver`] sends
//! with retries → the reply, or else the dead-letter sink →
//! [`Reader::finish`] → [`Reader::commit`].
//!
//! - The reader's consumer joins `ferry-reader.<topic>`, which shares the
//!   partitions among the dispatcher's replicas; on assignment each
//!   partition starts at the lowest egress position (see `rebalance`), and
//!   records an egress already took are skipped for it.
//! - A full egress pauses the reader; if it still holds the others back
//!   after `detach_after`, it gets a catch-up consumer of its own until it
//!   is back with the reader (see `laggards`).
//! - Positions are committed every `commit_interval`, as soon as an egress
//!   has finished a window's worth (`max_in_flight`) of deliveries since
//!   its last commit, on revocation and at stop, never past a delivery
//!   still running. So a crash delivers again only what was in flight and
//!   what finished after the last commit that reached Kafka: about a window
//!   more however fast the egress goes, when commits land promptly.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_common::kafka::ConsumerSettings;
use futures::FutureExt;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::KafkaResult,
    message::BorrowedMessage,
    Message, Offset,
};
use tokio::{
    sync::{mpsc, watch, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    catch_up::Fetched,
    deliver::{Deliverer, Failure, Target},
    egress::EgressSpec,
    gap::Arrival,
    lag,
    laggards::Laggards,
    lanes::{EgressLanes, Lane, Offer, Start},
    metrics::Metrics,
    positions::{self, Commits, Topic, KAFKA_TIMEOUT},
    rebalance::Rebalancer,
    record::Record,
    report::Report,
    state::{SharedState, State},
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

const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The most records, or finished deliveries, taken in one turn of the
/// delivery loop: each turn polls every branch of its select, and a
/// burst spares that per event without starving the other branches.
const BURST: usize = 64;

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

struct Reader {
    topic: Topic,
    deliverer: Arc<Deliverer>,
    settings: Arc<Settings>,
    state: SharedState,
    done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    fetched: mpsc::UnboundedReceiver<Fetched>,
    /// Deliveries spawned and not yet reported.
    outstanding: usize,
    /// Shared by the topic's deliveries in flight.
    budget: Arc<Semaphore>,
    /// An egress has a window of finished deliveries to commit.
    commit_due: bool,
    /// High watermarks of the reader's partitions, measured off the task.
    highs: (
        mpsc::UnboundedSender<lag::Highs>,
        mpsc::UnboundedReceiver<lag::Highs>,
    ),
}

/// A finished (or interrupted) delivery.
struct Done {
    key: Arc<str>,
    partition: i32,
    epoch: u64,
    offset: i64,
    /// Ordered by key: the key whose turn it held.
    key_held: Option<u64>,
    report: Option<Report>,
    caught_up: bool,
}

/// The record as the egress takes it: a KafkaSource makes an event of a
/// record that is not one.
fn taken_by(spec: &EgressSpec, record: &Arc<Record>, metrics: &Metrics) -> Arc<Record> {
    match spec
        .plain_records
        .as_ref()
        .and_then(|s| record.as_source(s))
    {
        Some((made, skipped_headers)) => {
            if skipped_headers > 0 {
                metrics.skipped_headers(spec, skipped_headers);
            }
            Arc::new(made)
        }
        None => record.clone(),
    }
}

// === the delivery loop, in event order ===

impl Reader {
    fn new(topic: &Topic, deliverer: &Arc<Deliverer>, settings: &Arc<Settings>) -> Self {
        let (fetched_tx, fetched) = mpsc::unbounded_channel();
        let laggards = Laggards::new(
            settings.consumer.clone(),
            settings.max_in_flight,
            fetched_tx,
            deliverer.metrics.clone(),
        );
        Reader {
            topic: topic.clone(),
            deliverer: deliverer.clone(),
            settings: settings.clone(),
            state: SharedState::new(laggards),
            budget: Arc::new(Semaphore::new(settings.max_deliveries)),
            done: mpsc::unbounded_channel(),
            fetched,
            outstanding: 0,
            commit_due: false,
            highs: mpsc::unbounded_channel(),
        }
    }

    async fn run(mut self, wanted: &mut WantedRx, stop: &CancellationToken) -> KafkaResult<()> {
        let context = Rebalancer {
            topic: self.topic.clone(),
            state: self.state.clone(),
        };
        let consumer: StreamConsumer<Rebalancer> = self
            .settings
            .consumer
            .client_config(&self.topic.cluster, &reader_group(&self.topic.name))
            .create_with_context(context)?;
        let _gauge = self.deliverer.metrics.consumer_opened("reader");
        let first = wanted.borrow_and_update().clone();
        self.sync(&consumer, &first).await?;
        consumer.subscribe(&[&self.topic.name])?;
        tracing::info!(topic = %self.topic.name, group = %reader_group(&self.topic.name), "topic reader started");

        let mut commit_tick = tokio::time::interval(self.settings.commit_interval);
        let mut commit_round: Option<JoinHandle<()>> = None;
        let mut lag_tick = tokio::time::interval(self.settings.lag_interval);
        let mut lag_round: Option<JoinHandle<()>> = None;
        loop {
            // librdkafka's pause drops what it fetched and may resume past
            // it, so a full reader just stops taking records.
            let full = self.full();
            let detach_at = self
                .state
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
                        let partitions = self.state.lock().next.keys().copied().collect();
                        lag_round = Some(lag::measure_highs(&self.topic, partitions, self.highs.0.clone()));
                    }
                }
                Some(highs) = self.highs.1.recv() => lag::record(&self.state.lock(), &self.deliverer, &highs),
                changed = wanted.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let wanted = wanted.borrow_and_update().clone();
                    self.sync(&consumer, &wanted).await?;
                }
                Some(done) = self.done.1.recv() => {
                    self.finish(done);
                    // Deliveries end in bursts: those already over are
                    // taken before going round the select again.
                    for _ in 1..BURST {
                        let Ok(done) = self.done.1.try_recv() else { break };
                        self.finish(done);
                    }
                }
                Some(fetched) = self.fetched.recv() => self.caught_up(fetched),
                _ = sleep_until(detach_at) => self.detach_laggards(),
                message = consumer.recv(), if !full => match message {
                    Ok(message) => {
                        self.take(&consumer, &message);
                        // Records come in fetched batches: those already
                        // here are taken while the egresses have room.
                        for _ in 1..BURST {
                            if self.full() {
                                break;
                            }
                            match consumer.recv().now_or_never() {
                                Some(Ok(message)) => self.take(&consumer, &message),
                                // An error waits for the select above.
                                Some(Err(_)) | None => break,
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
            if let Some(error) = self.state.lock().failed.take() {
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
        for egress in self.state.lock().egresses.values() {
            lag::forget(&self.deliverer, &egress.spec);
        }
        tracing::info!(topic = %self.topic.name, "topic reader stopped");
        Ok(())
    }

    /// A record from the reader's consumer, decoded once and offered to
    /// the egresses; read again from where records skipped ahead.
    fn take(&mut self, consumer: &StreamConsumer<Rebalancer>, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let record = Arc::new(Record::decode(message));
        if let Some(from) = self.read(partition, offset, record) {
            if let Err(error) = consumer.seek(
                &self.topic.name,
                partition,
                Offset::Offset(from),
                KAFKA_TIMEOUT,
            ) {
                tracing::error!(topic = %self.topic.name, partition, from, %error, "cannot read the skipped offsets again");
            }
        }
    }

    /// A record from the reader's consumer, offered to every egress that
    /// takes the reader's records on its partition; or, when records
    /// skipped ahead, the offset to read again from (see `gap`).
    fn read(&mut self, partition: i32, offset: i64, record: Arc<Record>) -> Option<i64> {
        let topic = &self.topic.name;
        let metrics = &self.deliverer.metrics;
        let mut starts = Vec::new();
        {
            let mut state = self.state.lock();
            let State {
                next,
                egresses,
                laggards,
                starved,
                gaps,
                ..
            } = &mut *state;
            let Some(at) = next.get_mut(&partition) else {
                return None; // from before a revocation
            };
            let expected = *at;
            match gaps.arrival(partition, expected, offset) {
                Arrival::InOrder => {}
                Arrival::ReadAgainFrom(from) => {
                    tracing::warn!(%topic, partition, expected, offset, from, "records skipped ahead; reading again from earlier");
                    metrics.offset_gap(topic);
                    return Some(from);
                }
                Arrival::ReadPast => {
                    tracing::warn!(%topic, partition, expected, offset, "offsets still missing after every re-read (compacted or transactional topic?); reading on");
                }
            }
            *at = offset + 1;
            if let Err(invalid) = &record.event {
                if egresses.values().any(|e| e.spec.plain_records.is_none()) {
                    tracing::warn!(%topic, partition, offset, %invalid, "skipping a record that is not a CloudEvent");
                }
            }
            if let Some(conflict) = &record.content_type_conflict {
                tracing::warn!(
                    %topic, partition, offset,
                    content_type = %conflict.content_type, ce_datacontenttype = %conflict.datacontenttype,
                    "record headers disagree on the content type; content-type is used"
                );
                metrics.content_type_conflict(topic);
            }
            for egress in egresses.values_mut() {
                let Some(lane) = egress.lanes.get_mut(&partition) else {
                    continue;
                };
                if egress.spec.paused {
                    continue; // its position stays; lag shows what waits
                }
                if lane.behind {
                    // The reader moved on: it may have come back to it.
                    laggards.rejoin(egress, next);
                    continue;
                }
                let record = taken_by(&egress.spec, &record, metrics);
                let offer = lane.offer(&egress.spec, offset, &record, false);
                self.count(&egress.spec, &offer);
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

    /// A record from an egress's catch-up consumer, offered to its lane.
    fn caught_up(&mut self, fetched: Fetched) {
        self.update(&fetched.key, |reader, egress, laggards| {
            let offer = match egress.lanes.get_mut(&fetched.partition) {
                Some(lane) if lane.behind => {
                    let record = taken_by(&egress.spec, &fetched.record, &reader.deliverer.metrics);
                    lane.offer(&egress.spec, fetched.offset, &record, true)
                }
                _ => Offer::Skipped,
            };
            reader.count(&egress.spec, &offer);
            // A queued record holds its place in the catch-up window
            // until its delivery ends.
            if offer != Offer::Queued {
                laggards.give_back(&egress.key);
            }
        });
    }

    /// Counts what the lane's filter made of a record.
    fn count(&self, spec: &EgressSpec, offer: &Offer) {
        match offer {
            Offer::Filtered => self.deliverer.metrics.report(spec, Report::Filtered),
            Offer::NotAnEvent => self.deliverer.metrics.invalid(spec),
            Offer::Queued | Offer::Skipped => {}
        }
    }

    /// Starts the deliveries; each reports to [`Reader::finish`].
    fn spawn(&mut self, key: &Arc<str>, starts: Vec<Start>) {
        if starts.is_empty() {
            return;
        }
        let (spec, stop) = {
            let state = self.state.lock();
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
                let report = Self::deliver(&deliverer, &spec, &start.queued.record, &stop).await;
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
                    key_held: start.queued.key,
                    report,
                    caught_up: start.queued.caught_up,
                });
            });
        }
    }

    /// One delivery, start to end: send with retries → hand the reply on
    /// → or else the dead-letter sink (see `deliver` for each step).
    /// `None` when `stop` interrupted a retry wait: the event is then not
    /// committed and is delivered again by whoever reads the partition
    /// next.
    async fn deliver(
        deliverer: &Deliverer,
        spec: &EgressSpec,
        record: &Record,
        stop: &CancellationToken,
    ) -> Option<Report> {
        let outgoing = deliverer.outgoing(spec, record);
        let (event, trace) = (outgoing.event.as_ref(), outgoing.trace());
        let sent = deliverer
            .send(
                spec,
                Target {
                    url: &spec.destination,
                    ca_certs: spec.destination_ca.as_deref(),
                    audience: spec.destination_audience.as_deref(),
                },
                event,
                &spec.delivery,
                trace,
                stop,
            )
            .await?;
        let failure = match sent {
            Ok(answer) => match answer.reply() {
                Ok(None) => return Some(outgoing.end(Report::Delivered)),
                // The rarer paths boxed, so that their state does not
                // enlarge every delivery task (moved whole on spawn).
                Ok(Some(reply)) => match Box::pin(deliverer.reply(spec, reply, trace, stop)).await?
                {
                    Ok(()) => return Some(outgoing.end(Report::Delivered)),
                    Err(failure) => failure,
                },
                Err(invalid) => Failure::malformed_reply(spec, answer, invalid),
            },
            Err(failure) => failure,
        };
        let report =
            Box::pin(deliverer.dead_letter(spec, event.clone(), failure, trace, stop)).await?;
        Some(outgoing.end(report))
    }

    /// A delivery ended: its lane moves on, a window's worth of finished
    /// deliveries makes a commit due, and freed budget starts more.
    fn finish(&mut self, done: Done) {
        self.outstanding -= 1;
        let window = self.settings.max_in_flight;
        let mut due = false;
        self.update(&done.key, |_, egress, laggards| {
            egress.finish(
                done.partition,
                done.epoch,
                done.offset,
                done.key_held,
                done.report.is_some(),
            );
            due = egress.uncommitted >= window;
            if done.caught_up {
                laggards.give_back(&egress.key);
            }
        });
        self.commit_due |= due;
        self.feed_starved();
    }

    /// Commits the egresses' positions: those that moved, or (`all`) all.
    fn commit(&self, all: bool) -> impl std::future::Future<Output = ()> + 'static {
        let batch: Commits = self
            .state
            .lock()
            .egresses
            .values_mut()
            .map(|e| (e.spec.clone(), e.positions(all)))
            .filter(|(_, positions)| !positions.is_empty())
            .collect();
        positions::commit(self.topic.clone(), batch)
    }
}

// === the egresses: starting deliveries, laggards, changes ===

impl Reader {
    /// Changes one egress, lets lanes behind rejoin, and starts what is
    /// ready.
    fn update(
        &mut self,
        key: &Arc<str>,
        change: impl FnOnce(&Self, &mut EgressLanes, &mut Laggards),
    ) {
        let starts = {
            let mut state = self.state.lock();
            let State {
                next,
                egresses,
                laggards,
                starved,
                ..
            } = &mut *state;
            let Some(egress) = egresses.get_mut(key) else {
                return;
            };
            change(self, egress, laggards);
            laggards.rejoin(egress, next);
            self.ready(egress, starved)
        };
        self.spawn(key, starts);
    }

    /// The deliveries of `egress` that may start now; if the budget ran
    /// out, it waits its turn.
    fn ready(&self, egress: &mut EgressLanes, starved: &mut VecDeque<Arc<str>>) -> Vec<Start> {
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
                let mut state = self.state.lock();
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

    /// Whether an egress is full, so that the reader stops taking records;
    /// notes since when, for `detach_laggards`.
    fn full(&self) -> bool {
        let mut state = self.state.lock();
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
        let mut state = self.state.lock();
        state.paused_since = Some(Instant::now());
        let State {
            egresses, laggards, ..
        } = &mut *state;
        laggards.detach(egresses.values_mut());
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
        let (removed, changed): (Vec<EgressLanes>, Vec<EgressLanes>) = {
            let mut state = self.state.lock();
            let stale: Vec<Arc<str>> = state
                .egresses
                .iter()
                .filter(|(key, e)| wanted.get(key.as_ref()).is_none_or(|w| *w.spec != *e.spec))
                .map(|(key, _)| key.clone())
                .collect();
            for key in &stale {
                state.laggards.stop(key);
            }
            stale
                .into_iter()
                .filter_map(|key| state.egresses.remove(&key))
                .partition(|e| !wanted.contains_key(&*e.key))
        };
        for egress in removed.iter().chain(&changed) {
            egress.stop.cancel();
            lag::forget(&self.deliverer, &egress.spec);
        }
        for mut egress in changed {
            let positions = egress.positions(true);
            if positions.is_empty() {
                continue; // it took nothing: its group is where it was
            }
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
            if self.state.lock().egresses.contains_key(w.spec.key.as_str()) {
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
        let mut egress = EgressLanes::new(wanted.spec.clone(), wanted.started.clone());
        // Every partition, not only those this replica holds: the others'
        // owners may not have seen the egress yet.
        let all = positions::partitions(consumer, &self.topic.name)?;
        let positions = positions::start(&self.topic, &egress.spec, &all).await?;
        let mut state = self.state.lock();
        if state.assigned {
            let State {
                next,
                epoch,
                laggards,
                ..
            } = &mut *state;
            for (partition, from) in positions {
                let Some(&next) = next.get(&partition) else {
                    continue;
                };
                *epoch += 1;
                // A paused egress takes nothing: no catch-up consumer.
                let behind = from < next && !egress.spec.paused;
                egress
                    .lanes
                    .insert(partition, Lane::new(*epoch, from, behind));
            }
            laggards.follow(&mut egress);
            egress.started.store(true, Ordering::Release);
        }
        tracing::info!(egress = %egress.spec.name, group = %egress.spec.consumer_group, topic = %self.topic.name, order = ?egress.spec.order, paused = egress.spec.paused, "egress started");
        state.egresses.insert(egress.key.clone(), egress);
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
