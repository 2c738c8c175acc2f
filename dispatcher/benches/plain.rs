//! What a KafkaSource pays to make an event of a record that is not a
//! CloudEvent, in nanoseconds per record, against what every record of a
//! broker's topic pays to be decoded as one (the baseline), in the same
//! run. `cargo bench -p ferry-dispatcher --bench plain`

use std::{hint::black_box, time::Instant};

use bytes::Bytes;
use ferry_dispatcher::plain::{PlainRecords, Raw};
use ferry_event::{kafka, Event};
use ferry_proto::KeyType;

const RECORDS: u32 = 1_000_000;

fn main() {
    let value = Bytes::from(vec![b'x'; 1024]);

    // The baseline: a binary-mode CloudEvent record of the same size, as
    // the receiver writes it.
    let mut event = Event::new(
        "a-fairly-typical-id-1234",
        "/orders/eu-west/shop-7",
        "com.example.order.created",
    );
    event.set("partitionkey", "order-12345".into());
    event.set("region", "eu-west".into());
    event.set_data(Some("application/json"), Some(value.clone()));
    let record = kafka::encode(&event, kafka::ContentMode::Binary);
    let headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_ref())))
        .collect();
    let decode = time(|| {
        black_box(kafka::decode(headers.iter().copied(), record.value.as_deref()).unwrap());
    });

    // A plain record: a key, a content type and two more headers.
    let raw = Raw {
        topic: "orders".into(),
        partition: 3,
        offset: 123_456,
        timestamp_ms: Some(1_700_000_000_123),
        key: Some(Bytes::from_static(b"order-12345")),
        headers: vec![
            (
                "content-type".into(),
                Some(Bytes::from_static(b"application/json")),
            ),
            ("X-Region".into(), Some(Bytes::from_static(b"eu-west"))),
            (
                "trace_id".into(),
                Some(Bytes::from_static(b"4bf92f3577b34da6")),
            ),
        ],
        value: Some(value),
    };
    let source = PlainRecords {
        namespace: "shop".into(),
        name: "orders".into(),
        key_type: KeyType::String,
    };
    let plain = time(|| {
        black_box(source.event(black_box(&raw)));
    });

    println!(
        "{:<48} {:>10} {:>12}",
        "record (1 KiB value)", "ns/record", "vs baseline"
    );
    println!(
        "{:<48} {decode:>10.1} {:>11.1}x",
        "CloudEvent decoded (baseline)", 1.0
    );
    println!(
        "{:<48} {plain:>10.1} {:>11.1}x",
        "plain record made into the reference's event",
        plain / decode
    );
}

/// Nanoseconds per call of `work`, over `RECORDS` calls after a warm-up.
fn time(mut work: impl FnMut()) -> f64 {
    for _ in 0..RECORDS / 10 {
        work();
    }
    let started = Instant::now();
    for _ in 0..RECORDS {
        work();
    }
    started.elapsed().as_nanos() as f64 / f64::from(RECORDS)
}
