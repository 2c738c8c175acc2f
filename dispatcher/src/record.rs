//! A record of a topic, decoded once for all of the egresses that read it.

use ferry_event::{
    kafka,
    trace::{self, TraceContext},
    Event, InvalidEvent, Value,
};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use bytes::Bytes;

use crate::plain::{PlainRecords, Raw};

const PARTITION: &str = "knativekafkapartition";
const OFFSET: &str = "knativekafkaoffset";

pub struct Record {
    /// The event, or why the record is not one. It carries the record's
    /// place as the reference's `knativekafkapartition` and
    /// `knativekafkaoffset` extensions.
    pub event: Result<Event, InvalidEvent>,
    /// The record's two content-type headers, when they differed.
    pub content_type_conflict: Option<kafka::ContentTypeConflict>,
    /// The trace context that travelled with it.
    pub trace: Option<TraceContext>,
    /// When Kafka took it (milliseconds since the epoch), if it says.
    pub written_ms: Option<i64>,
    /// The record itself, when it is not a CloudEvent: a KafkaSource makes
    /// one of it (see `plain`).
    pub raw: Option<Raw>,
    /// A hash of the record's key (the event's `partitionkey`): what
    /// `ordered-by-key` delivery keeps in order.
    pub key: Option<u64>,
}

/// Hashes a record key; a collision only orders two keys together.
pub fn key_hash(key: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

impl Record {
    pub fn decode(message: &BorrowedMessage<'_>) -> Self {
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
        let trace = text(trace::TRACEPARENT)
            .and_then(|tp| TraceContext::parse(tp, text(trace::TRACESTATE)));
        let written_ms = message.timestamp().to_millis();
        let (event, content_type_conflict, raw) =
            match kafka::decode_noting(headers.iter().copied(), message.payload()) {
                Ok((mut event, conflict)) => {
                    event.set(PARTITION, Value::Integer(message.partition().into()));
                    event.set(OFFSET, Value::Integer(message.offset()));
                    (Ok(event), conflict, None)
                }
                Err(invalid) => {
                    let raw = Raw {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: written_ms,
                        key: message.key().map(Bytes::copy_from_slice),
                        headers: headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), v.map(Bytes::copy_from_slice)))
                            .collect(),
                        value: message.payload().map(Bytes::copy_from_slice),
                    };
                    (Err(invalid), None, Some(raw))
                }
            };
        Record {
            event,
            content_type_conflict,
            trace,
            written_ms,
            raw,
            key: message.key().map(key_hash),
        }
    }

    /// The record as a KafkaSource's egress takes it: a record that is not
    /// a CloudEvent made into one, with the count of headers left out.
    pub fn as_source(&self, source: &PlainRecords) -> Option<(Record, usize)> {
        let raw = self.raw.as_ref()?;
        let made = source.event(raw);
        let mut event = made.event;
        event.set(PARTITION, Value::Integer(raw.partition.into()));
        event.set(OFFSET, Value::Integer(raw.offset));
        let record = Record {
            event: Ok(event),
            content_type_conflict: None,
            trace: self.trace.clone(),
            written_ms: self.written_ms,
            raw: None,
            key: self.key,
        };
        Some((record, made.skipped_headers))
    }
}
