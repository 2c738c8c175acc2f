//! The ceilings Ferry is measured against, on the same machine in the same
//! run: an HTTP server that does nothing, a raw rdkafka producer writing the
//! same records, and a raw consumer posting them to the same sink.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferry_common::{
    kafka::Overrides,
    producer::future_record,
    server::{self, Body, Handler},
    shutdown::Shutdown,
};
use ferry_event::kafka::Record;
use futures::{stream::FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    producer::FutureProducer,
    ClientConfig, Message, Offset, TopicPartitionList,
};

use crate::{
    event::{self, RunId},
    sink::new_histogram,
};

/// Answers 202 to every request, after reading its body.
struct Noop;

impl Handler for Noop {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let _ = request.into_body().collect().await;
        server::text(StatusCode::ACCEPTED, "")
    }
}

/// Serves [`Noop`] on `listener` until `stop`.
pub async fn noop_server(listener: tokio::net::TcpListener, stop: Shutdown) {
    server::serve(listener, Arc::new(Noop), stop).await;
}

/// Producer settings as the receiver's: idempotent, acks=all, linger 1 ms,
/// and the same `FERRY_RDKAFKA_*` overrides Ferry's processes get.
pub fn producer_config(bootstrap: &str) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1");
    Overrides::load(None, std::env::vars())?.apply_to(&mut config);
    Ok(config)
}

/// A consumer in a fresh group, with the overrides Ferry's processes get.
fn consumer(bootstrap: &str, reset: &str) -> anyhow::Result<StreamConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("ferry-bench-{}", rand::random::<u32>()))
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "false");
    Overrides::load(None, std::env::vars())?.apply_to(&mut config);
    Ok(config.create()?)
}

/// Writes `count` bench records into `topic` with up to `in_flight`
/// unacknowledged at once; returns acknowledged records per second.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    run: RunId,
    count: u64,
    size: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let producer: FutureProducer = producer_config(bootstrap)?.create()?;
    let data = event::data(size);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for seq in 0..count {
        if pending.len() >= in_flight {
            if let Some(result) = pending.next().await {
                result?;
            }
        }
        let record = event::record(run, seq, &data);
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(async move { send(&producer, &topic, &record).await });
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    // Every record was acknowledged: an error would have returned above.
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn send(producer: &FutureProducer, topic: &str, record: &Record) -> anyhow::Result<()> {
    producer
        .send(future_record(topic, record), Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(error, _)| error.into())
}

/// Which records of a topic the relay posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Everything from the beginning.
    All,
    /// From the beginning, only this bench run's: other runs' (an earlier
    /// scenario's, in a topic read again) are passed over.
    Run(RunId),
    /// Everything written once its group is assigned.
    New,
}

/// The partitions of `topic`, once the cluster has any: a topic just
/// created may not be in every broker's metadata yet.
async fn partitions_of(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| p.id())
            .collect();
        if !partitions.is_empty() {
            return Ok(partitions);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("{topic} has no partitions after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `topic` in a fresh group and posts each record of `records`
/// (binary mode, headers as they are) to `url` with up to `in_flight`
/// requests at once, until `count` records were posted; returns posts per
/// second from the first record read.
pub async fn relay(
    bootstrap: &str,
    topic: &str,
    url: &str,
    count: u64,
    in_flight: usize,
    records: Records,
) -> anyhow::Result<f64> {
    let consumer = consumer(bootstrap, "earliest")?;
    match records {
        Records::All | Records::Run(_) => consumer.subscribe(&[topic])?,
        // Each partition's end, pinned now: a group's `latest` would be
        // looked up per partition when first fetched, and could pass over
        // what was written in between.
        Records::New => {
            let timeout = Duration::from_secs(10);
            let partitions = partitions_of(&consumer, topic, timeout).await?;
            let mut ends = TopicPartitionList::new();
            for partition in partitions {
                let (_, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
                ends.add_partition_offset(topic, partition, Offset::Offset(high))?;
            }
            consumer.assign(&ends)?;
        }
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut pending = FuturesUnordered::new();
    let mut started = None;
    let mut posted = 0u64;
    let mut read = 0u64;
    while read < count {
        if pending.len() >= in_flight {
            if let Some(result) = pending.next().await {
                posted += u64::from(result?);
            }
        }
        // Posts go on while the next record is awaited: at a low rate they
        // would otherwise wait for the window to fill.
        let message = loop {
            tokio::select! {
                biased;
                Some(result) = pending.next(), if !pending.is_empty() => {
                    posted += u64::from(result?);
                }
                message = consumer.recv() => break message?,
            }
        };
        if let Records::Run(run) = records {
            let id = (message.headers().into_iter())
                .flat_map(|h| h.iter())
                .find(|h| h.key == "ce_id")
                .and_then(|h| std::str::from_utf8(h.value?).ok());
            if id.and_then(|id| run.seq(id)).is_none() {
                continue;
            }
        }
        started.get_or_insert_with(Instant::now);
        read += 1;
        let mut request = Request::post(url);
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                // The Kafka binding's ce_ prefix is the HTTP binding's ce-.
                if let Some(value) = header.value {
                    match header.key.strip_prefix("ce_") {
                        Some(name) => request = request.header(format!("ce-{name}"), value),
                        None => request = request.header(header.key, value),
                    }
                }
            }
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(
            message.payload().unwrap_or_default(),
        )))?;
        let client = client.clone();
        pending.push(async move {
            let response = client.request(request).await?;
            let ok = response.status().is_success();
            response.into_body().collect().await?;
            Ok::<_, anyhow::Error>(ok)
        });
    }
    while let Some(result) = pending.next().await {
        posted += u64::from(result?);
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(posted as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// The broker's own latency floor: a raw producer writes bench records at
/// `rate` for `duration` into the first of `topics`, raw relays copy each
/// record on to the next topic, and a raw consumer of the last measures
/// send → read (one topic: one produce → consume hop).
pub async fn kafka_latency(
    bootstrap: &str,
    topics: &[String],
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let run = RunId::fresh();
    let (first, last) = (&topics[0], topics.last().expect("a topic"));
    let consumer = assigned(bootstrap, last).await?;
    let mut relays = Vec::new();
    for pair in topics.windows(2) {
        let from = assigned(bootstrap, &pair[0]).await?;
        let (to, producer): (_, FutureProducer) =
            (pair[1].clone(), producer_config(bootstrap)?.create()?);
        relays.push(tokio::spawn(async move {
            while let Ok(message) = from.recv().await {
                // Queued at once, in order; its acknowledgement awaited apart.
                if let Ok(delivery) = producer.send_result(future_record_of(&to, &message)) {
                    tokio::spawn(delivery);
                }
            }
        }));
    }
    let topic = first;
    let count = (rate * duration.as_secs_f64()) as u64;
    let producer: FutureProducer = producer_config(bootstrap)?.create()?;
    // Connected, with its idempotent producer id, before the clock starts:
    // the receiver's producer is warm too.
    send(
        &producer,
        topic,
        &event::record(RunId::fresh(), 0, &event::data(1)),
    )
    .await?;
    let writer = {
        let topic = topic.to_owned();
        tokio::spawn(async move {
            let data = event::data(1024);
            let started = Instant::now();
            for seq in 0..count {
                let due = started + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let (producer, topic) = (producer.clone(), topic.clone());
                let record = event::record(run, seq, &data);
                tokio::spawn(async move { send(&producer, &topic, &record).await });
            }
        })
    };
    let mut latency = new_histogram();
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    while latency.len() < count && Instant::now() < deadline {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        else {
            continue;
        };
        let message = message?;
        let header = |name: &str| {
            message
                .headers()?
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| std::str::from_utf8(h.value?).ok())
        };
        if header("ce_id").and_then(|id| run.seq(id)).is_none() {
            continue;
        }
        if let Some(sent) = header("ce_benchsent").and_then(|v| v.parse::<u64>().ok()) {
            latency.record(event::now_micros().saturating_sub(sent).max(1))?;
        }
    }
    writer.await?;
    for relay in relays {
        relay.abort();
    }
    Ok(latency)
}

/// A consumer of `topic` in a fresh group, once it has partitions: only
/// records written after that are read ("latest").
async fn assigned(bootstrap: &str, topic: &str) -> anyhow::Result<StreamConsumer> {
    let consumer = consumer(bootstrap, "latest")?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment()?.count() == 0 {
        if Instant::now() >= deadline {
            anyhow::bail!("the raw consumer got no partitions of {topic}");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    Ok(consumer)
}

/// A record to `topic` with `message`'s key, value and headers.
fn future_record_of<'a>(
    topic: &'a str,
    message: &'a rdkafka::message::BorrowedMessage<'_>,
) -> rdkafka::producer::FutureRecord<'a, [u8], [u8]> {
    let mut record = rdkafka::producer::FutureRecord::to(topic);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(value) = message.payload() {
        record = record.payload(value);
    }
    if let Some(headers) = message.headers() {
        record = record.headers(headers.detach());
    }
    record
}

/// Answers every event with itself (binary mode): a Sequence's step that
/// does nothing.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut response = Response::new(server::full(body));
        for (name, value) in &parts.headers {
            if name.as_str().starts_with("ce-") || name == http::header::CONTENT_TYPE {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

/// Serves [`Echo`] on `listener` until `stop`.
pub async fn echo_server(listener: tokio::net::TcpListener, stop: Shutdown) {
    server::serve(listener, Arc::new(Echo), stop).await;
}
