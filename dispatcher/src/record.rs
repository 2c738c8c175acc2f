//! A record of a broker's or channel's topic, decoded once for all of the
//! egresses that read it.

use ferry_event::{
    kafka,
    trace::{self, TraceContext},
    Event, InvalidEvent, Value,
};
use rdkafka::message::{BorrowedMessage, Headers, Message};

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
        let (event, content_type_conflict) =
            match kafka::decode_noting(headers.iter().copied(), message.payload()) {
                Ok((mut event, conflict)) => {
                    event.set(PARTITION, Value::Integer(message.partition().into()));
                    event.set(OFFSET, Value::Integer(message.offset()));
                    (Ok(event), conflict)
                }
                Err(invalid) => (Err(invalid), None),
            };
        Record {
            event,
            content_type_conflict,
            trace,
            written_ms: message.timestamp().to_millis(),
        }
    }
}
