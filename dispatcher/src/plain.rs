//! A KafkaSource's record that is not a CloudEvent, made into one as the
//! reference makes it (its `InvalidCloudEventInterceptor`, compatible with
//! the older eventing-kafka): the record's place becomes the id and the
//! subject, its key and headers extensions, its value the data. Pure.

use base64::Engine;
use bytes::Bytes;
use ferry_event::{Event, Value, PARTITIONKEY};
use ferry_proto::KeyType;

pub const TYPE: &str = "dev.knative.kafka.event";
const KEY: &str = "key";
const HEADER_PREFIX: &str = "kafkaheader";

/// What is kept of a record that did not decode as a CloudEvent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Raw {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub value: Option<Bytes>,
}

/// The KafkaSource whose records these are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainRecords {
    pub namespace: String,
    pub name: String,
    /// How the record key is read (the source's
    /// `kafkasources.sources.knative.dev/key-type` label).
    pub key_type: KeyType,
}

/// The event made of a record, and how many headers were left out because
/// their values are not UTF-8.
#[derive(Debug, PartialEq)]
pub struct Made {
    pub event: Event,
    pub skipped_headers: usize,
}

/// The `source` of the events a KafkaSource makes of a topic's records.
pub fn source(namespace: &str, name: &str, topic: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/kafkasources/{name}#{topic}")
}

impl PlainRecords {
    pub fn event(&self, raw: &Raw) -> Made {
        let (p, o) = (raw.partition, raw.offset);
        let source = source(&self.namespace, &self.name, &raw.topic);
        let mut event = Event::new(&format!("partition:{p}/offset:{o}"), &source, TYPE);
        event.set("subject", Value::String(format!("partition:{p}#{o}")));
        if let Some(time) = raw
            .timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
        {
            let time = time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            event.set(ferry_event::TIME, Value::String(time));
        }
        if let Some(key) = raw.key.as_ref().filter(|k| !k.is_empty()) {
            let key = self.key(key);
            event.set(PARTITIONKEY, key.clone());
            event.set(KEY, key);
        }
        let mut content_type = None;
        let mut skipped_headers = 0;
        for (name, value) in &raw.headers {
            let value = value.as_deref().unwrap_or_default();
            let Ok(value) = std::str::from_utf8(value) else {
                skipped_headers += 1;
                continue;
            };
            if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_lowercase());
                continue;
            }
            let name = format!("{HEADER_PREFIX}{}", extension_name(name));
            event.set(&name, Value::String(value.to_owned()));
        }
        event.set_data(content_type.as_deref(), raw.value.clone());
        Made {
            event,
            skipped_headers,
        }
    }

    /// The key as the reference's key deserializer reads it: a string, or a
    /// big-endian number of the right width, or bytes (base64, as binary
    /// attributes travel); a number of another width falls back to a string.
    fn key(&self, key: &[u8]) -> Value {
        let string = || Value::String(String::from_utf8_lossy(key).into_owned());
        match (self.key_type, key.len()) {
            (KeyType::Integer, 4) => {
                Value::Integer(i32::from_be_bytes(key.try_into().expect("4 bytes")).into())
            }
            // Debug keeps the `.0` of a whole number, as Java's toString does.
            (KeyType::Double, 4) => Value::String(format!(
                "{:?}",
                f32::from_be_bytes(key.try_into().expect("4 bytes"))
            )),
            (KeyType::Double, 8) => Value::String(format!(
                "{:?}",
                f64::from_be_bytes(key.try_into().expect("8 bytes"))
            )),
            (KeyType::ByteArray, _) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(key))
            }
            _ => string(),
        }
    }
}

/// A header name as an extension name: lower case, and only `[a-z0-9]`.
fn extension_name(header: &str) -> String {
    header
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(key_type: KeyType) -> PlainRecords {
        PlainRecords {
            namespace: "ns".into(),
            name: "src".into(),
            key_type,
        }
    }

    fn raw() -> Raw {
        Raw {
            topic: "orders".into(),
            partition: 2,
            offset: 17,
            timestamp_ms: Some(1_700_000_000_123),
            key: None,
            headers: Vec::new(),
            value: Some(Bytes::from_static(b"hello")),
        }
    }

    fn attributes(event: &Event) -> Vec<(String, String)> {
        event
            .attributes()
            .map(|(n, v)| (n.to_owned(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_plain_record_gets_the_references_attributes() {
        let made = source(KeyType::String).event(&raw());
        assert_eq!(made.skipped_headers, 0);
        assert_eq!(
            attributes(&made.event),
            [
                ("specversion", "1.0"),
                ("id", "partition:2/offset:17"),
                ("source", "/apis/v1/namespaces/ns/kafkasources/src#orders"),
                ("type", "dev.knative.kafka.event"),
                ("subject", "partition:2#17"),
                ("time", "2023-11-14T22:13:20.123Z"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(made.event.data().unwrap().as_ref(), b"hello");
        assert_eq!(made.event.datacontenttype(), None);
        made.event.validate().unwrap();
    }

    #[test]
    fn headers_become_extensions_and_content_type_the_data_content_type() {
        let mut r = raw();
        r.headers = vec![
            (
                "Content-Type".into(),
                Some(Bytes::from_static(b"Application/JSON")),
            ),
            ("X-Trace_ID.2".into(), Some(Bytes::from_static(b"abc"))),
            ("binary".into(), Some(Bytes::from_static(&[0xff, 0xfe]))),
            ("empty".into(), None),
        ];
        let made = source(KeyType::String).event(&r);
        assert_eq!(made.skipped_headers, 1, "the non-UTF-8 value");
        let e = &made.event;
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(e.get_str("kafkaheaderxtraceid2"), Some("abc"));
        assert_eq!(e.get_str("kafkaheaderempty"), Some(""));
        assert_eq!(e.get("kafkaheaderbinary"), None);
        assert_eq!(e.get("kafkaheadercontenttype"), None);
        e.validate().unwrap();
    }

    #[test]
    fn keys_are_read_by_the_key_type() {
        let key = |key_type, bytes: &[u8]| {
            let mut r = raw();
            r.key = Some(Bytes::copy_from_slice(bytes));
            let e = source(key_type).event(&r).event;
            assert_eq!(e.get("key"), e.get("partitionkey"));
            e.get("key").cloned()
        };
        assert_eq!(key(KeyType::String, b"k1"), Some("k1".into()));
        assert_eq!(
            key(KeyType::Integer, &[0, 0, 1, 0]),
            Some(Value::Integer(256))
        );
        assert_eq!(
            key(KeyType::Integer, b"12345"),
            Some("12345".into()),
            "not 4 bytes: a string"
        );
        assert_eq!(
            key(KeyType::Double, &1.5f64.to_be_bytes()),
            Some("1.5".into())
        );
        assert_eq!(
            key(KeyType::Double, &2.25f32.to_be_bytes()),
            Some("2.25".into())
        );
        assert_eq!(
            key(KeyType::Double, &3.0f64.to_be_bytes()),
            Some("3.0".into())
        );
        assert_eq!(key(KeyType::ByteArray, &[0, 1, 2]), Some("AAEC".into()));
        assert_eq!(key(KeyType::String, b""), None, "an empty key is none");
    }

    #[test]
    fn a_tombstone_has_no_data() {
        let mut r = raw();
        r.value = None;
        r.timestamp_ms = None;
        let e = source(KeyType::String).event(&r).event;
        assert_eq!(e.data(), None);
        assert_eq!(e.get("time"), None);
        e.validate().unwrap();
    }
}
