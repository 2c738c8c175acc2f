//! A record of a broker's or channel's topic, decoded once for all of the
//! egresses that read it.

use ferry_common::{
    cloudevent::{kafka, Event, InvalidEvent},
    trace::{self, TraceContext},
};
use rdkafka::message::{BorrowedMessage, Headers, Message};

pub struct Record {
    /// The event, or why the record is not one.
    pub event: Result<Event, InvalidEvent>,
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
        Record {
            event: kafka::decode(headers.iter().copied(), message.payload()),
            trace,
            written_ms: message.timestamp().to_millis(),
        }
    }
}
