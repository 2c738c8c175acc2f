//! Kafka helpers for tests: topics, and reading records back.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    message::{Headers, OwnedMessage},
    ClientConfig, Message, Offset, TopicPartitionList,
};

/// Creates a topic and waits until its metadata is visible.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for result in results {
        if let Err((name, code)) = result {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating {name}"
            );
        }
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    crate::eventually(&format!("topic {topic}"), Duration::from_secs(20), || {
        let found = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .is_ok_and(|m| {
                m.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                })
            });
        async move { found.then_some(()) }
    })
    .await;
}

/// Writes a plain record (no CloudEvent headers) to a partition.
pub async fn produce_raw(bootstrap: &str, topic: &str, partition: i32, payload: &str) {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            rdkafka::producer::FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("record written");
}

/// Writes a record with these headers, as any Kafka producer might.
pub async fn produce_record(
    bootstrap: &str,
    topic: &str,
    key: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    value: &[u8],
) {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let mut owned = rdkafka::message::OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(rdkafka::message::Header {
            key: name,
            value: Some(*value),
        });
    }
    let mut record = rdkafka::producer::FutureRecord::<[u8], _>::to(topic)
        .partition(0)
        .payload(value)
        .headers(owned);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("record written");
}

/// Writes binary-mode CloudEvents with these ids to partition 0 in one
/// produce request, so they share one record batch: librdkafka holds them
/// (`linger.ms`) until the batch is full (`batch.num.messages`).
pub async fn produce_batch(bootstrap: &str, topic: &str, ids: &[String]) {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "10000")
        .set("batch.num.messages", ids.len().to_string())
        .create()
        .expect("producer");
    let sends = ids.iter().map(|id| {
        let owned = event_headers(id);
        let payload = format!("{{\"id\":\"{id}\"}}");
        let producer = producer.clone();
        async move {
            let record = rdkafka::producer::FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&payload)
                .headers(owned);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .expect("record written")
        }
    });
    futures::future::join_all(sends).await;
}

/// A binary-mode CloudEvent's headers: id `id`, type `t`, JSON data.
fn event_headers(id: &str) -> rdkafka::message::OwnedHeaders {
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/ferry/tests"),
        ("ce_type", "t"),
        ("content-type", "application/json"),
    ];
    let mut owned = rdkafka::message::OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(rdkafka::message::Header {
            key,
            value: Some(value),
        });
    }
    owned
}

/// Writes one binary-mode CloudEvent per id to partition 0, in order,
/// each acknowledged before the next.
pub async fn produce_ids(bootstrap: &str, topic: &str, ids: &[String]) {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for id in ids {
        let payload = format!("{{\"id\":\"{id}\"}}");
        let record = rdkafka::producer::FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload(&payload)
            .headers(event_headers(id));
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("record written");
    }
}

/// A time (ms since the epoch) after every record written so far and
/// before any written from now on: the clock is waited past it. A broker
/// may date records by when it stored them (Tansu does) or by when they
/// were made (Kafka's CreateTime); a millisecond on either side holds for
/// both.
pub async fn a_moment_later() -> i64 {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64
    };
    let moment = now() + 1;
    crate::eventually(
        "the clock to pass a moment",
        Duration::from_secs(1),
        || async { (now() > moment).then_some(()) },
    )
    .await;
    moment
}

/// Reads a topic from the beginning of every partition without a consumer
/// group, so it reads at once.
pub struct TopicReader {
    consumer: StreamConsumer,
}

impl TopicReader {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        TopicReader::with(config, topic, partitions)
    }

    /// A reader of a cluster `config` reaches (its credentials, say).
    pub fn with(mut config: ClientConfig, topic: &str, partitions: i32) -> Self {
        let consumer: StreamConsumer = config
            .set("group.id", crate::unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        TopicReader { consumer }
    }

    /// The next `n` records, failing the test if they do not come in time.
    pub async fn read(&self, n: usize, deadline: Duration) -> Vec<OwnedMessage> {
        let mut out = Vec::with_capacity(n);
        let until = tokio::time::Instant::now() + deadline;
        while out.len() < n {
            match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Ok(Ok(message)) => out.push(message.detach()),
                Ok(Err(error)) => panic!("consumer error: {error}"),
                Err(_) => panic!(
                    "timed out after {deadline:?} with {} of {n} records",
                    out.len()
                ),
            }
        }
        out
    }
}

/// A record's headers as (name, value) pairs, in order.
pub fn headers(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// One header's value as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    headers(message)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8(v).expect("UTF-8 header"))
}

pub fn value(message: &OwnedMessage) -> Vec<u8> {
    message.payload().unwrap_or_default().to_vec()
}

/// The committed position of a consumer group on each partition of a topic
/// (`None` where it has none).
pub async fn group_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    tokio::task::spawn_blocking(move || {
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("blocking task")
}

/// Waits until a consumer group has a position on every partition: a new
/// trigger's start positions are pinned.
pub async fn wait_for_group(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    crate::eventually(
        &format!("group {group} positions"),
        Duration::from_secs(30),
        || async move {
            group_offsets(bootstrap, group, topic, partitions)
                .await
                .iter()
                .all(Option::is_some)
                .then_some(())
        },
    )
    .await
}

/// How many partitions the cluster lists for the topic (0 when it does not
/// list it).
pub fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// Whether the cluster lists the topic.
pub fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none())
}

/// The end (high watermark) of each partition of a topic.
pub async fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    })
    .await
    .expect("blocking task")
}

/// Waits until a consumer group has no position on any partition of the
/// topic: the controller deleted it.
pub async fn wait_for_group_deleted(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    crate::eventually(
        &format!("group {group} deleted"),
        Duration::from_secs(45),
        || async move {
            group_offsets(bootstrap, group, topic, partitions)
                .await
                .iter()
                .all(Option::is_none)
                .then_some(())
        },
    )
    .await
}
