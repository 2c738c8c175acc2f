//! A PingSource, validated, and the event each of its ticks sends: type
//! `dev.knative.sources.ping`, source `/apis/v1/namespaces/<ns>/pingsources/<name>`,
//! a new UUID, the tick's time, the declared content type and data, and
//! the overrides' extensions, as Knative's ping adapter sends it.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ferry_event::{Event, Value};

use crate::schedule::{Schedule, ScheduleError};

pub const PING_TYPE: &str = "dev.knative.sources.ping";

/// The `source` of a PingSource's events.
pub fn source(namespace: &str, name: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/pingsources/{name}")
}

/// What a PingSource's spec says about its events.
#[derive(Clone, Copy, Debug, Default)]
pub struct PingSpec<'a> {
    pub schedule: &'a str,
    pub timezone: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: Option<&'a str>,
    pub data_base64: Option<&'a str>,
}

/// Why a spec is not valid: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl From<ScheduleError> for Invalid {
    fn from(error: ScheduleError) -> Self {
        Invalid {
            field: error.field(),
            message: error.to_string(),
        }
    }
}

/// A valid PingSource, ready to fire.
#[derive(Clone, Debug, PartialEq)]
pub struct Ping {
    pub namespace: String,
    pub name: String,
    pub schedule: Schedule,
    pub content_type: Option<String>,
    pub data: Option<Bytes>,
    /// `ceOverrides.extensions`, set on every event.
    pub extensions: Vec<(String, String)>,
    /// Where its events go.
    pub sink: String,
}

/// The schedule and the data of a spec, or the first thing wrong with it.
pub fn validate(spec: &PingSpec) -> Result<(Schedule, Option<Bytes>), Invalid> {
    let schedule = Schedule::parse(spec.schedule, spec.timezone)?;
    let invalid = |field, message: String| Invalid { field, message };
    let data = match (spec.data, spec.data_base64) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.data, spec.dataBase64",
                "expected exactly one, got both".into(),
            ))
        }
        (Some(text), None) => Some(Bytes::copy_from_slice(text.as_bytes())),
        (None, Some(encoded)) => Some(
            BASE64
                .decode(encoded.trim())
                .map(Bytes::from)
                .map_err(|e| invalid("spec.dataBase64", format!("not base64: {e}")))?,
        ),
        (None, None) => None,
    };
    let json = spec
        .content_type
        .is_some_and(|ct| ferry_event::media_type_essence(ct) == "application/json");
    if let (true, Some(data)) = (json, &data) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(data);
        if !matches!(parsed, Ok(serde_json::Value::Object(_))) {
            let field = if spec.data.is_some() {
                "spec.data"
            } else {
                "spec.dataBase64"
            };
            return Err(invalid(
                field,
                "contentType is application/json, so the data must be a JSON object".into(),
            ));
        }
    }
    Ok((schedule, data))
}

impl Ping {
    /// `namespace/name`, for logs and the scheduler's table.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The event the tick at `tick` sends.
    pub fn event(&self, tick: DateTime<Utc>) -> Event {
        let id = uuid::Uuid::new_v4().to_string();
        let mut event = Event::new(&id, &source(&self.namespace, &self.name), PING_TYPE);
        event.set(
            "time",
            Value::String(tick.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        event.set_data(self.content_type.as_deref(), self.data.clone());
        for (name, value) in &self.extensions {
            event.set(name, Value::String(value.clone()));
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(
        content_type: Option<&'a str>,
        data: Option<&'a str>,
        b64: Option<&'a str>,
    ) -> PingSpec<'a> {
        PingSpec {
            schedule: "* * * * *",
            timezone: None,
            content_type,
            data,
            data_base64: b64,
        }
    }

    #[test]
    fn data_is_one_of_data_and_data_base64_and_json_data_is_an_object() {
        let ok = [
            (spec(None, None, None), None),
            (
                spec(Some("text/plain"), Some("hello"), None),
                Some(&b"hello"[..]),
            ),
            (
                spec(Some("application/json"), Some(r#"{"a":1}"#), None),
                Some(&br#"{"a":1}"#[..]),
            ),
            (spec(None, None, Some("aGVsbG8=")), Some(&b"hello"[..])),
        ];
        for (spec, want) in ok {
            let (_, data) = validate(&spec).unwrap();
            assert_eq!(data.as_deref(), want);
        }
        let bad = [
            (
                spec(None, Some("x"), Some("eA==")),
                "spec.data, spec.dataBase64",
            ),
            (spec(None, None, Some("not base64!")), "spec.dataBase64"),
            (
                spec(Some("application/json"), Some("[1, 2]"), None),
                "spec.data",
            ),
            (
                spec(Some("application/json; charset=utf-8"), Some("{nope"), None),
                "spec.data",
            ),
            (
                spec(Some("application/json"), None, Some("WzFd")),
                "spec.dataBase64",
            ),
            (
                PingSpec {
                    schedule: "@every 5s",
                    ..spec(None, None, None)
                },
                "spec.schedule",
            ),
            (
                PingSpec {
                    timezone: Some("Nowhere/Else"),
                    ..spec(None, None, None)
                },
                "spec.timezone",
            ),
        ];
        for (spec, field) in bad {
            assert_eq!(validate(&spec).unwrap_err().field, field, "{spec:?}");
        }
    }

    #[test]
    fn a_tick_sends_knatives_ping_event_with_the_overrides() {
        let ping = Ping {
            namespace: "ns".into(),
            name: "every-minute".into(),
            schedule: Schedule::parse("* * * * *", None).unwrap(),
            content_type: Some("application/json".into()),
            data: Some(Bytes::from_static(br#"{"hello":"world"}"#)),
            extensions: vec![("team".into(), "ferry".into())],
            sink: "http://sink/".into(),
        };
        let tick = DateTime::parse_from_rfc3339("2026-12-03T12:05:00Z")
            .unwrap()
            .to_utc();
        let a = ping.event(tick);
        let b = ping.event(tick);
        assert_eq!(a.ty(), "dev.knative.sources.ping");
        assert_eq!(
            a.source(),
            "/apis/v1/namespaces/ns/pingsources/every-minute"
        );
        assert_eq!(a.specversion(), "1.0");
        assert_eq!(a.get_str("time"), Some("2026-12-03T12:05:00Z"));
        assert_eq!(a.datacontenttype(), Some("application/json"));
        assert_eq!(a.data().map(|d| &d[..]), Some(&br#"{"hello":"world"}"#[..]));
        assert_eq!(a.get_str("team"), Some("ferry"));
        assert!(uuid::Uuid::parse_str(a.id()).is_ok(), "{}", a.id());
        assert_ne!(a.id(), b.id(), "each event has an id of its own");
        assert!(a.validate().is_ok());
    }
}
