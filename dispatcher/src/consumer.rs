//! One egress's consumer: fetch → deliver (see `deliver`) → commit.
//!
//! Records are queued per partition ("lanes"). Unordered egresses run up to
//! `max_in_flight` deliveries at once across lanes; ordered ones run one per
//! partition, in offset order. A lane's offset tracker commits only up to
//! the lowest delivery not yet finished: periodically, when the partition
//! is revoked, and at stop.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use ferry_common::{
    cloudevent::{kafka, Event},
    kafka::ConsumerSettings,
    trace::{self, TraceContext},
};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Headers},
    ClientContext, Message, Offset, TopicPartitionList,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    deliver::{Deliverer, Report},
    egress::EgressSpec,
    offsets::OffsetTracker,
};

/// How every egress consumer runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub consumer: ConsumerSettings,
    /// Deliveries in flight per unordered egress; also the most records
    /// buffered per egress.
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    /// How long a stopping egress waits for deliveries in flight.
    pub drain_timeout: Duration,
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs an egress until `stop`, restarting its consumer after errors.
pub async fn run(
    spec: Arc<EgressSpec>,
    deliverer: Arc<Deliverer>,
    settings: Arc<Settings>,
    stop: CancellationToken,
    started: Arc<AtomicBool>,
) {
    while !stop.is_cancelled() {
        match run_consumer(&spec, &deliverer, &settings, &stop, &started).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(egress = %spec.name, group = %spec.consumer_group, %error, "egress consumer failed; restarting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESTART_DELAY) => {}
                }
            }
        }
    }
}

struct Lane {
    /// Which assignment this lane belongs to: completions of a revoked
    /// lane's deliveries are ignored.
    epoch: u64,
    queue: VecDeque<(i64, Event, Option<TraceContext>)>,
    running: usize,
    tracker: OffsetTracker,
}

type Lanes = Arc<Mutex<HashMap<i32, Lane>>>;

/// A finished (or interrupted) delivery.
struct Done {
    partition: i32,
    epoch: u64,
    offset: i64,
    report: Option<Report>,
}

/// Commits a partition's position when it is taken away, so its next owner
/// starts where this one finished.
struct RebalanceContext {
    topic: String,
    name: String,
    lanes: Lanes,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let mut commit = TopicPartitionList::new();
        for element in revoked.elements() {
            let Some(lane) = lanes.remove(&element.partition()) else {
                continue;
            };
            if let Some(offset) = lane.tracker.committable() {
                let _ = commit.add_partition_offset(
                    &self.topic,
                    element.partition(),
                    Offset::Offset(offset),
                );
            }
        }
        drop(lanes);
        tracing::debug!(egress = %self.name, partitions = revoked.count(), "partitions revoked");
        if commit.count() > 0 {
            if let Err(error) = consumer.commit(&commit, CommitMode::Sync) {
                tracing::warn!(egress = %self.name, %error, "commit on revoke failed; the new owner may deliver again");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(egress = %self.name, %error, "offset commit failed");
        }
    }
}

async fn run_consumer(
    spec: &Arc<EgressSpec>,
    deliverer: &Arc<Deliverer>,
    settings: &Settings,
    stop: &CancellationToken,
    started: &AtomicBool,
) -> Result<(), KafkaError> {
    let lanes = Lanes::default();
    let context = RebalanceContext {
        topic: spec.topic.clone(),
        name: spec.name.clone(),
        lanes: lanes.clone(),
    };
    let mut config = settings
        .consumer
        .client_config(&spec.bootstrap, &spec.consumer_group);
    // Start positions are pinned below; partitions added later are read whole.
    config.set("auto.offset.reset", "earliest");
    let consumer: Arc<StreamConsumer<RebalanceContext>> =
        Arc::new(config.create_with_context(context)?);
    {
        let (consumer, topic, name) = (consumer.clone(), spec.topic.clone(), spec.name.clone());
        tokio::task::spawn_blocking(move || pin_start_offsets(&consumer, &topic, &name))
            .await
            .expect("pinning does not panic")?;
    }
    consumer.subscribe(&[&spec.topic])?;
    started.store(true, Ordering::Release);
    tracing::info!(egress = %spec.name, group = %spec.consumer_group, topic = %spec.topic, ordered = spec.ordered, "egress started");

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut outstanding = 0usize; // spawned deliveries not yet reported, revoked lanes' too
    let mut epoch = 0u64;
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    let dispatch = |lanes: &mut HashMap<i32, Lane>, outstanding: &mut usize| {
        let mut running: usize = lanes.values().map(|l| l.running).sum();
        for (&partition, lane) in lanes.iter_mut() {
            while !lane.queue.is_empty() {
                let allowed = if spec.ordered {
                    lane.running == 0
                } else {
                    running < settings.max_in_flight
                };
                if !allowed {
                    break;
                }
                let (offset, event, trace) = lane.queue.pop_front().expect("not empty");
                lane.running += 1;
                running += 1;
                *outstanding += 1;
                let (spec, deliverer, done_tx, stop) = (
                    spec.clone(),
                    deliverer.clone(),
                    done_tx.clone(),
                    stop.clone(),
                );
                let epoch = lane.epoch;
                tokio::spawn(async move {
                    let report = deliverer.deliver(&spec, event, trace.as_ref(), &stop).await;
                    let _ = done_tx.send(Done {
                        partition,
                        epoch,
                        offset,
                        report,
                    });
                });
            }
        }
    };

    loop {
        let buffered: usize = lanes
            .lock()
            .expect("lanes lock")
            .values()
            .map(|l| l.queue.len() + l.running)
            .sum();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            // Before the work below: under a steady stream there is always
            // a completion or a record ready, and commits must not starve.
            _ = commit_tick.tick() => commit(&consumer, spec, &lanes, CommitMode::Async, false),
            Some(done) = done_rx.recv() => {
                outstanding -= 1;
                let mut lanes = lanes.lock().expect("lanes lock");
                finish(&mut lanes, &done, spec, deliverer);
                dispatch(&mut lanes, &mut outstanding);
            }
            message = consumer.recv(), if buffered < settings.max_in_flight => {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(egress = %spec.name, %error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let event = decode(&message);
                let mut lanes = lanes.lock().expect("lanes lock");
                let lane = lanes.entry(partition).or_insert_with(|| {
                    epoch += 1;
                    Lane { epoch, queue: VecDeque::new(), running: 0, tracker: OffsetTracker::default() }
                });
                lane.tracker.start(offset);
                match event {
                    Ok((event, trace)) => lane.queue.push_back((offset, event, trace)),
                    Err(error) => {
                        tracing::warn!(egress = %spec.name, partition, offset, %error, "skipping a record that is not a CloudEvent");
                        deliverer.metrics.invalid(spec);
                        lane.tracker.finish(offset);
                    }
                }
                dispatch(&mut lanes, &mut outstanding);
            }
        }
    }

    // Stop fetching; let deliveries in flight finish, then commit.
    let deadline = tokio::time::Instant::now() + settings.drain_timeout;
    while outstanding > 0 {
        tokio::select! {
            Some(done) = done_rx.recv() => {
                outstanding -= 1;
                finish(&mut lanes.lock().expect("lanes lock"), &done, spec, deliverer);
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(egress = %spec.name, outstanding, "deliveries still running at the drain deadline; they will be delivered again");
                break;
            }
        }
    }
    commit(&consumer, spec, &lanes, CommitMode::Sync, true);
    tracing::info!(egress = %spec.name, "egress stopped");
    Ok(())
}

fn finish(lanes: &mut HashMap<i32, Lane>, done: &Done, spec: &EgressSpec, deliverer: &Deliverer) {
    if let Some(report) = done.report {
        deliverer.metrics.report(spec, report);
    }
    let Some(lane) = lanes
        .get_mut(&done.partition)
        .filter(|l| l.epoch == done.epoch)
    else {
        return;
    };
    lane.running -= 1;
    // An interrupted delivery stays in flight, so it is not committed.
    if done.report.is_some() {
        lane.tracker.finish(done.offset);
    }
}

/// The record's event, and the trace context that travelled with it.
fn decode(
    message: &BorrowedMessage<'_>,
) -> Result<(Event, Option<TraceContext>), ferry_common::cloudevent::InvalidEvent> {
    let headers = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
        .unwrap_or_default();
    let text = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| std::str::from_utf8((*v)?).ok())
    };
    let trace =
        text(trace::TRACEPARENT).and_then(|tp| TraceContext::parse(tp, text(trace::TRACESTATE)));
    let event = kafka::decode(headers.iter().copied(), message.payload())?;
    Ok((event, trace))
}

/// Commits each lane's position: only what moved, or (`all`) everything.
fn commit(
    consumer: &StreamConsumer<RebalanceContext>,
    spec: &EgressSpec,
    lanes: &Lanes,
    mode: CommitMode,
    all: bool,
) {
    let mut tpl = TopicPartitionList::new();
    for (&partition, lane) in lanes.lock().expect("lanes lock").iter_mut() {
        let offset = if all {
            lane.tracker.committable()
        } else {
            lane.tracker.take_commit()
        };
        if let Some(offset) = offset {
            let _ = tpl.add_partition_offset(&spec.topic, partition, Offset::Offset(offset));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        tracing::warn!(egress = %spec.name, %error, "offset commit failed");
    }
}

/// A new consumer group starts at the end of every partition, as of now:
/// it gets every event accepted from now on and none from before, however
/// long the group takes to join. Partitions with a committed position are
/// left alone, so this only acts the first time an egress runs.
fn pin_start_offsets(
    consumer: &StreamConsumer<RebalanceContext>,
    topic: &str,
    name: &str,
) -> KafkaResult<()> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if partitions == 0 {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut all = TopicPartitionList::new();
    for p in 0..partitions {
        all.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(all, KAFKA_TIMEOUT)?;
    let mut pin = TopicPartitionList::new();
    for element in committed.elements() {
        if let Offset::Offset(_) = element.offset() {
            continue;
        }
        let (_, high) = consumer.fetch_watermarks(topic, element.partition(), KAFKA_TIMEOUT)?;
        pin.add_partition_offset(topic, element.partition(), Offset::Offset(high))?;
    }
    if pin.count() > 0 {
        consumer.commit(&pin, CommitMode::Sync)?;
        tracing::info!(egress = %name, partitions = pin.count(), "new consumer group: start positions pinned at the end of the topic");
    }
    Ok(())
}
