//! The events a bench run sends: ids `<run>-<seq>` so the sink can tell
//! this run's events from others and index them, and the send time in the
//! `benchsent` extension (microseconds since the Unix epoch) so end-to-end
//! latency is measured at arrival.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_event::{kafka, Event, Value};
use http::HeaderMap;

pub const SOURCE: &str = "/ferry/bench";
pub const TYPE: &str = "dev.ferry.bench";
pub const SENT: &str = "benchsent";
const SENT_HEADER: &str = "ce-benchsent";

/// Identifies one bench run's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub u32);

impl RunId {
    pub fn fresh() -> Self {
        RunId(rand::random())
    }

    pub fn event_id(self, seq: u64) -> String {
        format!("{:08x}-{seq}", self.0)
    }

    /// The sequence number of one of this run's event ids.
    pub fn seq(self, id: &str) -> Option<u64> {
        let (run, seq) = id.split_once('-')?;
        (u32::from_str_radix(run, 16).ok()? == self.0)
            .then(|| seq.parse().ok())
            .flatten()
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Event `seq` of a run, with `size` bytes of data, stamped now.
pub fn event(run: RunId, seq: u64, data: &Bytes) -> Event {
    let mut event = Event::new(&run.event_id(seq), SOURCE, TYPE);
    event.set(SENT, Value::String(now_micros().to_string()));
    event.set_data(Some("application/octet-stream"), Some(data.clone()));
    event
}

/// The same event as the Kafka record the receiver writes.
pub fn record(run: RunId, seq: u64, data: &Bytes) -> kafka::Record {
    kafka::encode(&event(run, seq, data), kafka::ContentMode::Binary)
}

pub fn data(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

/// What the sink needs of an arriving event: its id and send time.
pub struct Arrival {
    pub id: String,
    pub sent_micros: Option<u64>,
}

/// Reads an arrival from a binary-mode request's headers cheaply, or from
/// a structured body.
pub fn arrival(headers: &HeaderMap, body: Bytes) -> Option<Arrival> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(id) = text("ce-id") {
        return Some(Arrival {
            id: id.to_owned(),
            sent_micros: text(SENT_HEADER).and_then(|v| v.parse().ok()),
        });
    }
    let event = ferry_event::json::decode(body).ok()?;
    Some(Arrival {
        id: event.id().to_owned(),
        sent_micros: event.get_str(SENT).and_then(|v| v.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_run() {
        let run = RunId(0xabc);
        assert_eq!(run.seq(&run.event_id(42)), Some(42));
        assert_eq!(RunId(0xabd).seq(&run.event_id(42)), None);
        assert_eq!(run.seq("not-ours"), None);
    }
}
