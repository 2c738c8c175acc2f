//! Writing event records to Kafka: one idempotent producer per cluster,
//! shared by every resource on that cluster.
//!
//! A producer is rebuilt when librdkafka reports a fatal error, and when it
//! has written nothing for two timeout periods while writes fail: an
//! idempotent producer whose broker lost its state (a restart with
//! in-memory storage, a recreated topic) can retry forever without ever
//! raising a fatal error.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};

use ferry_event::kafka::Record;

use crate::kafka::{partition_count, Cluster, ProducerSettings};

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The producer could not be created from its settings.
    #[error("cannot create Kafka producer for {cluster}: {source}")]
    Create {
        cluster: String,
        #[source]
        source: KafkaError,
    },
    /// Kafka did not acknowledge the record.
    #[error("Kafka did not acknowledge the write: {0}")]
    Write(#[source] KafkaError),
    /// No acknowledgement within the bound.
    #[error("Kafka did not acknowledge the write within {0:?}")]
    Timeout(Duration),
}

/// A producer for one cluster that replaces itself after a fatal error.
pub struct ClusterProducer {
    cluster: Cluster,
    settings: ProducerSettings,
    current: ArcSwap<FutureProducer>,
    /// Milliseconds since `created` of the last acknowledged write, or of
    /// the last rebuild.
    last_progress: AtomicU64,
    created: Instant,
}

// === impl ClusterProducer ===

impl ClusterProducer {
    pub fn new(cluster: &Cluster, settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let producer = create(cluster, settings)?;
        Ok(ClusterProducer {
            cluster: cluster.clone(),
            settings: settings.clone(),
            current: ArcSwap::from_pointee(producer),
            last_progress: AtomicU64::new(0),
            created: Instant::now(),
        })
    }

    /// Writes one record and waits for Kafka's acknowledgement (acks=all).
    pub async fn send(&self, topic: &str, record: &Record) -> Result<(), ProduceError> {
        let producer = self.current.load_full();
        let future = future_record(topic, record);
        let bound = self.settings.timeout;
        // message.timeout.ms bounds delivery; the outer timeout also bounds
        // waiting for room in a full queue.
        let result = tokio::time::timeout(
            bound + Duration::from_millis(500),
            producer.send(future, Timeout::After(bound)),
        )
        .await
        .map_err(|_| ProduceError::Timeout(bound))?;
        match result {
            Ok(_) => {
                self.last_progress
                    .store(self.elapsed_ms(), Ordering::Relaxed);
                Ok(())
            }
            Err((error, _)) => {
                self.recover(&producer);
                Err(ProduceError::Write(error))
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    /// Asks for metadata of `topic`; true when it exists with partitions.
    pub async fn has_topic(&self, topic: &str, timeout: Duration) -> bool {
        let producer = self.current.load_full();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            partition_count(producer.client(), &topic, timeout).is_ok_and(|n| n > 0)
        })
        .await
        .unwrap_or(false)
    }

    /// Replaces a producer after a fatal error, or when it has made no
    /// progress for two timeout periods.
    fn recover(&self, failed: &Arc<FutureProducer>) {
        let now = self.elapsed_ms();
        let stalled_for = now.saturating_sub(self.last_progress.load(Ordering::Relaxed));
        let reason = match failed.client().fatal_error() {
            Some((code, reason)) => format!("fatal error {code:?}: {reason}"),
            None if stalled_for >= 2 * self.settings.timeout.as_millis() as u64 => {
                format!("no write acknowledged for {stalled_for} ms")
            }
            None => return,
        };
        match create(&self.cluster, &self.settings) {
            Ok(fresh) => {
                // Only replace the producer that failed, not one a concurrent
                // request already replaced.
                let previous = self.current.compare_and_swap(failed, Arc::new(fresh));
                if Arc::ptr_eq(&previous, failed) {
                    self.last_progress.store(now, Ordering::Relaxed);
                    tracing::warn!(cluster = %self.cluster, %reason, "replaced the Kafka producer");
                }
            }
            Err(error) => tracing::error!(%error, "cannot recreate producer"),
        }
    }
}

fn create(cluster: &Cluster, settings: &ProducerSettings) -> Result<FutureProducer, ProduceError> {
    settings
        .client_config(cluster)
        .create()
        .map_err(|source| ProduceError::Create {
            cluster: cluster.to_string(),
            source,
        })
}

/// A record as rdkafka sends it.
pub fn future_record<'a>(topic: &'a str, record: &'a Record) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_ref()),
        });
    }
    let mut future = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.key {
        future = future.key(key.as_ref());
    }
    if let Some(value) = &record.value {
        future = future.payload(value.as_ref());
    }
    future
}

/// Producers by cluster, so every resource on a cluster (with the same
/// credentials) shares one.
pub struct ProducerPool {
    settings: ProducerSettings,
    producers: Mutex<HashMap<Cluster, Arc<ClusterProducer>>>,
}

impl ProducerPool {
    pub fn new(settings: ProducerSettings) -> Self {
        ProducerPool {
            settings,
            producers: Mutex::default(),
        }
    }

    /// The producer for a cluster, created on first use.
    pub fn get(&self, cluster: &Cluster) -> Result<Arc<ClusterProducer>, ProduceError> {
        let mut producers = self.producers.lock().expect("producer pool lock");
        if let Some(p) = producers.get(cluster) {
            return Ok(p.clone());
        }
        let producer = Arc::new(ClusterProducer::new(cluster, &self.settings)?);
        producers.insert(cluster.clone(), producer.clone());
        Ok(producer)
    }

    /// Records waiting in librdkafka's queues for an acknowledgement, over
    /// every cluster.
    pub fn queued(&self) -> i64 {
        self.producers
            .lock()
            .expect("producer pool lock")
            .values()
            .map(|p| i64::from(p.current.load().in_flight_count()))
            .sum()
    }

    /// Drops producers of clusters no resource uses any more.
    pub fn retain(&self, in_use: impl Fn(&Cluster) -> bool) {
        self.producers
            .lock()
            .expect("producer pool lock")
            .retain(|k, _| in_use(k));
    }
}
