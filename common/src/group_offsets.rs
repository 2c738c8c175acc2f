//! Reading and writing consumer groups' committed offsets from one client.
//!
//! The dispatcher reads each partition once for all of a broker's triggers,
//! and each trigger keeps its committed position in its own consumer group
//! (`knative-trigger-<namespace>-<name>`), as the reference does. Those
//! groups have no members: their offsets are written and read with Kafka's
//! admin requests (OffsetCommit with no generation, OffsetFetch), which
//! librdkafka offers as `AlterConsumerGroupOffsets` and
//! `ListConsumerGroupOffsets` but rust-rdkafka does not wrap. This module is
//! the one place Ferry calls librdkafka's C API directly.
//!
//! Requests are asynchronous: each carries a boxed reply channel as its
//! opaque, and one thread per client polls the result queue.

#![allow(unsafe_code)]

use std::{
    collections::HashMap,
    ffi::{c_void, CStr, CString},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    admin::AdminClient,
    bindings as rd,
    client::DefaultClientContext,
    error::{KafkaError, KafkaResult},
    types::RDKafkaErrorCode,
    ClientConfig, Offset, TopicPartitionList,
};
use tokio::sync::oneshot;

/// How long a request may take before librdkafka gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the polling thread checks whether it should stop.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a dropped client waits for requests still in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A partition's committed offset in one group: `None` when it has none.
pub type Committed = HashMap<i32, Option<i64>>;

/// One partition of a result: its offset (negative when none) and error.
struct PartitionResult {
    partition: i32,
    offset: i64,
    error: rd::rd_kafka_resp_err_t,
}

type Reply = oneshot::Sender<KafkaResult<Vec<PartitionResult>>>;

/// A client for many consumer groups' offsets. Cheap to clone.
#[derive(Clone)]
pub struct GroupOffsets {
    handle: Arc<Handle>,
}

struct Inner {
    /// For the consumer `at_time` may check an answer with.
    config: ClientConfig,
    queue: Queue,
    pending: AtomicUsize,
    stop: AtomicBool,
    // Dropped after `queue` (field order), which needs the client alive.
    admin: AdminClient<DefaultClientContext>,
}

/// librdkafka's queues may be used from any thread.
struct Queue(*mut rd::rd_kafka_queue_t);

// SAFETY: librdkafka queues are thread-safe; the pointer is only destroyed
// in `Drop`, when no other reference exists.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_queue_new`, destroyed once.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// Ends the polling thread when the last clone goes.
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

// === impl GroupOffsets ===

impl GroupOffsets {
    pub fn new(config: &ClientConfig) -> KafkaResult<Self> {
        let admin: AdminClient<DefaultClientContext> = config.create()?;
        // SAFETY: the client pointer is valid while `admin` lives, and the
        // queue is destroyed before it (see `Inner`).
        let queue = Queue(unsafe { rd::rd_kafka_queue_new(admin.inner().native_ptr()) });
        let inner = Arc::new(Inner {
            config: config.clone(),
            queue,
            pending: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            admin,
        });
        let poller = inner.clone();
        std::thread::Builder::new()
            .name("ferry-offsets".into())
            .spawn(move || poll(&poller))
            .map_err(|_| KafkaError::ClientCreation("cannot start the offsets thread".into()))?;
        Ok(GroupOffsets {
            handle: Arc::new(Handle(inner)),
        })
    }

    /// The committed offsets of `group` on `partitions` of `topic`.
    pub async fn list(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> KafkaResult<Committed> {
        let tpl = partition_list(topic, partitions.iter().map(|&p| (p, Offset::Invalid)))?;
        let group = c_string(group)?;
        let (tx, rx) = oneshot::channel();
        // SAFETY: `new` copies the group id and the list; the request array
        // is consumed by the call and destroyed after it.
        unsafe {
            let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), tpl.ptr());
            let options = self.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
                tx,
            );
            rd::rd_kafka_ListConsumerGroupOffsets(
                self.handle.0.admin.inner().native_ptr(),
                &mut request,
                1,
                options,
                self.handle.0.queue.0,
            );
            rd::rd_kafka_AdminOptions_destroy(options);
            rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
        }
        let result = wait(rx).await?;
        Ok(result
            .into_iter()
            .map(|r| (r.partition, (r.offset >= 0).then_some(r.offset)))
            .collect())
    }

    /// Commits `offsets` (partition, next offset to read) for `group`,
    /// which must have no active members.
    pub async fn alter(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) -> KafkaResult<()> {
        let tpl = partition_list(topic, offsets.iter().map(|&(p, o)| (p, Offset::Offset(o))))?;
        let group = c_string(group)?;
        let (tx, rx) = oneshot::channel();
        // SAFETY: as in `list`.
        unsafe {
            let mut request = rd::rd_kafka_AlterConsumerGroupOffsets_new(group.as_ptr(), tpl.ptr());
            let options = self.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
                tx,
            );
            rd::rd_kafka_AlterConsumerGroupOffsets(
                self.handle.0.admin.inner().native_ptr(),
                &mut request,
                1,
                options,
                self.handle.0.queue.0,
            );
            rd::rd_kafka_AdminOptions_destroy(options);
            rd::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
        }
        let result = wait(rx).await?;
        match result
            .iter()
            .find(|r| r.error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
        {
            Some(failed) => Err(KafkaError::AdminOp(failed.error.into())),
            None => Ok(()),
        }
    }

    /// The beginning and end (low and high watermarks) of a partition.
    /// Blocking. Asked through this client because a consumer cannot be
    /// asked from inside its own rebalance callback.
    pub fn watermarks(&self, topic: &str, partition: i32) -> KafkaResult<(i64, i64)> {
        let client = self.handle.0.admin.inner();
        client.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
    }

    /// The end (high watermark) of a partition. Blocking.
    pub fn end(&self, topic: &str, partition: i32) -> KafkaResult<i64> {
        Ok(self.watermarks(topic, partition)?.1)
    }

    /// Each partition's first offset written at or after `ms` (since the
    /// epoch), or its end when none was: (partition, offset). Blocking.
    pub fn at_time(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> KafkaResult<Vec<(i32, i64)>> {
        let tpl = partition_list(topic, partitions.iter().map(|&p| (p, Offset::Offset(ms))))?;
        // SAFETY: the list is valid and owned by `tpl`; librdkafka writes
        // each element's offset and error in place.
        let code = unsafe {
            rd::rd_kafka_offsets_for_times(
                self.handle.0.admin.inner().native_ptr(),
                tpl.ptr(),
                REQUEST_TIMEOUT.as_millis() as i32,
            )
        };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::OffsetFetch(code.into()));
        }
        tpl.elements()
            .iter()
            .map(|e| {
                e.error()?;
                let partition = e.partition();
                let (low, high) = self.watermarks(topic, partition)?;
                let offset = match e.offset() {
                    // Tansu answers 0 for a time after a partition's last
                    // record, where Kafka answers "none": the record there
                    // says which.
                    Offset::Offset(o) if o == low && o < high => {
                        if self.written_before(topic, partition, o, ms)? {
                            high
                        } else {
                            o
                        }
                    }
                    Offset::Offset(o) if o >= 0 => o,
                    _ => high,
                };
                Ok((partition, offset))
            })
            .collect()
    }

    /// Whether the record at `offset` was written before `ms`. Blocking.
    fn written_before(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        ms: i64,
    ) -> KafkaResult<bool> {
        use rdkafka::{
            consumer::{BaseConsumer, Consumer},
            Message,
        };
        let consumer: BaseConsumer = (self.handle.0.config.clone())
            .set("group.id", "ferry-offsets-check")
            .set("enable.auto.commit", "false")
            .create()?;
        consumer.assign(&partition_list(
            topic,
            [(partition, Offset::Offset(offset))].into_iter(),
        )?)?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let at = message.timestamp().to_millis();
                    return Ok(at.is_some_and(|at| at < ms));
                }
                Some(Err(error)) => return Err(error),
                None => {}
            }
        }
        Err(KafkaError::OffsetFetch(RDKafkaErrorCode::RequestTimedOut))
    }

    /// Options carrying `reply` as the request's opaque; the polling thread
    /// takes the box back.
    unsafe fn options(
        &self,
        op: rd::rd_kafka_admin_op_t,
        reply: Reply,
    ) -> *mut rd::rd_kafka_AdminOptions_t {
        let rk = self.handle.0.admin.inner().native_ptr();
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            REQUEST_TIMEOUT.as_millis() as i32,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        self.handle.0.pending.fetch_add(1, Ordering::AcqRel);
        rd::rd_kafka_AdminOptions_set_opaque(
            options,
            Box::into_raw(Box::new(reply)) as *mut c_void,
        );
        options
    }
}

async fn wait(
    rx: oneshot::Receiver<KafkaResult<Vec<PartitionResult>>>,
) -> KafkaResult<Vec<PartitionResult>> {
    rx.await.unwrap_or_else(|_| Err(KafkaError::Canceled))
}

fn c_string(s: &str) -> KafkaResult<CString> {
    CString::new(s).map_err(|_| KafkaError::ClientCreation(format!("{s:?} contains a NUL byte")))
}

fn partition_list(
    topic: &str,
    entries: impl Iterator<Item = (i32, Offset)>,
) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in entries {
        tpl.add_partition_offset(topic, partition, offset)?;
    }
    Ok(tpl)
}

/// Answers requests until the client is dropped and nothing is pending.
fn poll(inner: &Inner) {
    let mut drain_deadline = None;
    loop {
        if inner.stop.load(Ordering::Acquire) {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if inner.pending.load(Ordering::Acquire) == 0 || Instant::now() > deadline {
                return;
            }
        }
        // SAFETY: the queue lives as long as `inner`.
        let event =
            unsafe { rd::rd_kafka_queue_poll(inner.queue.0, POLL_INTERVAL.as_millis() as i32) };
        if event.is_null() {
            continue;
        }
        // SAFETY: a non-null event from our queue; its opaque is the box
        // made in `options`, taken back exactly once; the event is
        // destroyed after its results were copied out.
        unsafe {
            let reply = rd::rd_kafka_event_opaque(event) as *mut Reply;
            let result = event_result(event);
            rd::rd_kafka_event_destroy(event);
            if !reply.is_null() {
                inner.pending.fetch_sub(1, Ordering::AcqRel);
                let _ = Box::from_raw(reply).send(result);
            }
        }
    }
}

/// The one group's partitions from a List or Alter result event.
unsafe fn event_result(event: *mut rd::rd_kafka_event_t) -> KafkaResult<Vec<PartitionResult>> {
    let code = rd::rd_kafka_event_error(event);
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(KafkaError::AdminOp(code.into()));
    }
    let mut count = 0usize;
    let groups = match rd::rd_kafka_event_type(event) {
        rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT => {
            let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
            rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count)
        }
        rd::RD_KAFKA_EVENT_ALTERCONSUMERGROUPOFFSETS_RESULT => {
            let result = rd::rd_kafka_event_AlterConsumerGroupOffsets_result(event);
            rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count)
        }
        _ => return Err(KafkaError::AdminOpCreation("unexpected admin event".into())),
    };
    if groups.is_null() || count == 0 {
        return Err(KafkaError::AdminOpCreation(
            "no group in the admin result".into(),
        ));
    }
    let group = *groups;
    let error = rd::rd_kafka_group_result_error(group);
    if !error.is_null() {
        let code: RDKafkaErrorCode = rd::rd_kafka_error_code(error).into();
        let reason = CStr::from_ptr(rd::rd_kafka_error_string(error)).to_string_lossy();
        tracing::debug!(%code, %reason, "group offsets request failed");
        return Err(KafkaError::AdminOp(code));
    }
    let list = rd::rd_kafka_group_result_partitions(group);
    if list.is_null() || (*list).cnt <= 0 {
        return Ok(Vec::new());
    }
    let elements = std::slice::from_raw_parts((*list).elems, (*list).cnt as usize);
    Ok(elements
        .iter()
        .map(|e| PartitionResult {
            partition: e.partition,
            offset: e.offset,
            error: e.err,
        })
        .collect())
}
