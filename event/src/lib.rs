//! Ferry's CloudEvents: the event as it travels (attributes and data
//! exactly as received, so an event reaches Kafka and the subscriber
//! unchanged), its wire codecs and the specification's rules, and the W3C
//! trace context that travels with it.
//!
//! - [`Event`], [`Value`]: the event and an attribute's value.
//! - [`http`] (binary, structured, batch), [`json`] (the JSON format) and
//!   [`kafka`] (the Kafka protocol binding): wire messages to events and
//!   back.
//! - `validate`: what makes an event valid; [`is_valid_name`], the one
//!   attribute-name rule every component uses.
//! - [`trace`]: `traceparent` / `tracestate`.
//! - [`display`]: an event as a person reads it (`ferry topic tail`).
//!
//! Pure: no I/O, no Kafka client, no server, no async runtime, so the
//! CESQL crate and the fuzz targets build without librdkafka.

pub mod display;
pub mod http;
pub mod json;
pub mod kafka;
pub mod trace;
mod validate;

use std::fmt;

use bytes::Bytes;

pub use validate::{is_valid_name, InvalidEvent};

pub const SPECVERSION: &str = "specversion";
pub const ID: &str = "id";
pub const SOURCE: &str = "source";
pub const TYPE: &str = "type";
pub const DATACONTENTTYPE: &str = "datacontenttype";
pub const TIME: &str = "time";
/// The extension whose value becomes the Kafka record key.
pub const PARTITIONKEY: &str = "partitionkey";

/// A context attribute's value in the CloudEvents type system as far as the
/// wire formats keep it apart: binary modes carry strings only, the JSON
/// format can also carry integers and booleans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

/// One CloudEvent. Attribute names are lower case; their order is the order
/// they arrived in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    attributes: Vec<(String, Value)>,
    data: Option<Bytes>,
    /// The structured-mode JSON this event was decoded from, while the event
    /// is unchanged, so it can be written on byte for byte.
    structured: Option<Bytes>,
}

// === impl Event ===

impl Event {
    /// A CloudEvents 1.0 event with its required attributes.
    pub fn new(id: &str, source: &str, ty: &str) -> Self {
        let mut event = Event::default();
        event.set(SPECVERSION, "1.0".into());
        event.set(ID, id.into());
        event.set(SOURCE, source.into());
        event.set(TYPE, ty.into());
        event
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// A string attribute's value; `None` when absent or not a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Sets or replaces an attribute.
    pub fn set(&mut self, name: &str, value: Value) {
        self.structured = None;
        match self.attributes.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.attributes.iter().position(|(n, _)| n == name)?;
        self.structured = None;
        Some(self.attributes.remove(at).1)
    }

    pub fn attributes(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.attributes.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn id(&self) -> &str {
        self.get_str(ID).unwrap_or_default()
    }

    pub fn source(&self) -> &str {
        self.get_str(SOURCE).unwrap_or_default()
    }

    pub fn ty(&self) -> &str {
        self.get_str(TYPE).unwrap_or_default()
    }

    pub fn specversion(&self) -> &str {
        self.get_str(SPECVERSION).unwrap_or_default()
    }

    pub fn datacontenttype(&self) -> Option<&str> {
        self.get_str(DATACONTENTTYPE)
    }

    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    pub fn set_data(&mut self, datacontenttype: Option<&str>, data: Option<Bytes>) {
        self.structured = None;
        match datacontenttype {
            Some(ct) => self.set(DATACONTENTTYPE, ct.into()),
            None => {
                self.remove(DATACONTENTTYPE);
            }
        }
        self.data = data;
    }

    /// Checks the event against the CloudEvents specification.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        validate::event(self)
    }

    fn push_attribute(&mut self, name: String, value: Value) -> Result<(), InvalidEvent> {
        if self.get(&name).is_some() {
            return Err(InvalidEvent::Duplicate(name));
        }
        self.attributes.push((name, value));
        Ok(())
    }
}

/// Whether a media type carries JSON: `application/json`, `text/json` or a
/// `+json` suffix. The JSON format treats an absent content type as JSON.
pub fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let essence = media_type_essence(ct);
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// `type/subtype` of a media type, lower case, without parameters.
pub fn media_type_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}
