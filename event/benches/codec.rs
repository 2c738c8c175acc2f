//! What each event costs Ferry's codecs, in nanoseconds: the receiver
//! decodes a binary-mode request and encodes a Kafka record; the
//! dispatcher decodes the record and encodes the delivery's headers. The
//! baseline, in the same run, is copying the request's header map, the
//! least any of them could do. `cargo bench -p ferry-event --bench codec`

use std::{hint::black_box, time::Instant};

use bytes::Bytes;
use ferry_event::{http, kafka, Event, Value};

const EVENTS: u32 = 500_000;

fn main() {
    // A typical delivery: the required attributes, a time, two extensions,
    // and the two the dispatcher adds (the record's place).
    let mut event = Event::new(
        "a-fairly-typical-id-1234",
        "/orders/eu-west/shop-7",
        "com.example.order.created",
    );
    event.set("time", Value::String("2026-12-07T10:00:00.123Z".into()));
    event.set("partitionkey", "order-12345".into());
    event.set("region", "eu-west".into());
    event.set("knativekafkapartition", Value::Integer(3));
    event.set("knativekafkaoffset", Value::Integer(123_456));
    event.set_data(
        Some("application/json"),
        Some(Bytes::from(vec![b'x'; 1024])),
    );

    let headers = http::encode_binary_headers(&event);
    let body = event.data().cloned().unwrap_or_default();
    let record = kafka::encode(&event, kafka::ContentMode::Binary);
    let record_headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_ref())))
        .collect();

    let rows = [
        (
            "copy the request's header map (baseline)",
            time(|| {
                black_box(headers.clone());
            }),
        ),
        (
            "receiver: decode a binary-mode request",
            time(|| {
                black_box(http::decode(&headers, body.clone()).unwrap());
            }),
        ),
        (
            "receiver: encode the Kafka record",
            time(|| {
                black_box(kafka::encode(&event, kafka::ContentMode::Binary));
            }),
        ),
        (
            "dispatcher: decode the Kafka record",
            time(|| {
                black_box(
                    kafka::decode(record_headers.iter().copied(), record.value.as_deref()).unwrap(),
                );
            }),
        ),
        (
            "dispatcher: encode the delivery's headers",
            time(|| {
                black_box(http::encode_binary_headers(&event));
            }),
        ),
    ];
    let baseline = rows[0].1;
    println!("{:<45} {:>10} {:>10}", "", "ns/event", "of baseline");
    for (name, ns) in rows {
        println!("{name:<45} {ns:>10.1} {:>9.1}x", ns / baseline);
    }
}

/// Nanoseconds per call, after a warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..EVENTS / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..EVENTS {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(EVENTS)
}
