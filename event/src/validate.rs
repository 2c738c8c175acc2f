//! The CloudEvents specification's rules for a valid event (1.0, and 0.3
//! where it differs).

use crate::{Event, Value, DATACONTENTTYPE, ID, SOURCE, SPECVERSION, TIME, TYPE};

/// Why an event is not a valid CloudEvent. The message is what a producer
/// reads in the 400 answer's body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    /// A required attribute is absent.
    #[error("missing required attribute '{0}'")]
    Missing(&'static str),
    /// An attribute is present but empty where the spec forbids it.
    #[error("attribute '{0}' must not be empty")]
    Empty(String),
    /// The spec version is not one Ferry speaks.
    #[error("unsupported specversion '{0}' (expected 1.0 or 0.3)")]
    SpecVersion(String),
    /// An extension name breaks the naming rule.
    #[error("invalid attribute name '{0}': names are lower-case letters a-z and digits 0-9")]
    Name(String),
    /// An attribute appears twice.
    #[error("attribute '{0}' appears more than once")]
    Duplicate(String),
    /// An attribute's value does not have the attribute's type or form.
    #[error("attribute '{name}' is invalid: {reason}")]
    Value { name: String, reason: String },
    /// Structured mode carries both `data` and `data_base64`.
    #[error("an event must not carry both 'data' and 'data_base64'")]
    BothData,
    /// The message cannot be read as a CloudEvent at all.
    #[error("{0}")]
    Malformed(String),
}

impl InvalidEvent {
    pub fn value(name: &str, reason: impl Into<String>) -> Self {
        InvalidEvent::Value {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Attributes every version requires.
const REQUIRED: [&str; 4] = [SPECVERSION, ID, SOURCE, TYPE];

pub(crate) fn event(event: &Event) -> Result<(), InvalidEvent> {
    for name in REQUIRED {
        match event.get(name) {
            None => return Err(InvalidEvent::Missing(name)),
            Some(Value::String(s)) if s.is_empty() => return Err(InvalidEvent::Empty(name.into())),
            Some(Value::String(_)) => {}
            Some(_) => return Err(InvalidEvent::value(name, "must be a string")),
        }
    }
    let version = event.specversion();
    if version != "1.0" && version != "0.3" {
        return Err(InvalidEvent::SpecVersion(version.to_owned()));
    }
    for (name, value) in event.attributes() {
        attribute(version, name, value)?;
    }
    Ok(())
}

fn attribute(version: &str, name: &str, value: &Value) -> Result<(), InvalidEvent> {
    if !is_valid_name(name) {
        return Err(InvalidEvent::Name(name.to_owned()));
    }
    if let Value::String(s) = value {
        if let Some(c) = s.chars().find(|c| is_control(*c)) {
            return Err(InvalidEvent::value(
                name,
                format!("control character U+{:04X} is not allowed", c as u32),
            ));
        }
        if let Some(c) = s.chars().find(|c| is_noncharacter(*c)) {
            return Err(InvalidEvent::value(
                name,
                format!("noncharacter U+{:04X} is not allowed", c as u32),
            ));
        }
    }
    let string = || match value {
        Value::String(s) => Ok(s.as_str()),
        _ => Err(InvalidEvent::value(name, "must be a string")),
    };
    match (version, name) {
        (_, DATACONTENTTYPE) => {
            let ct = string()?;
            if !ct.contains('/') {
                return Err(InvalidEvent::value(
                    name,
                    format!("'{ct}' is not a media type"),
                ));
            }
        }
        (_, "subject") if string()?.is_empty() => return Err(InvalidEvent::Empty(name.into())),
        // 1.0 says `dataschema` is an absolute URI; the reference accepts a
        // relative one, and 0.3's `schemaurl` is a URI-reference, so both
        // are held to URI-reference.
        (_, SOURCE) | ("1.0", "dataschema") | ("0.3", "schemaurl") => {
            let uri = string()?;
            if uri.is_empty() {
                return Err(InvalidEvent::Empty(name.into()));
            }
            if let Some(c) = uri.chars().find(|c| !is_uri_char(*c)) {
                return Err(InvalidEvent::value(
                    name,
                    format!(
                        "'{uri}' is not a URI-reference: '{}' is not allowed",
                        c.escape_default()
                    ),
                ));
            }
        }
        (_, TIME) => {
            let time = string()?;
            if chrono::DateTime::parse_from_rfc3339(time).is_err() {
                return Err(InvalidEvent::value(
                    name,
                    format!("'{time}' is not an RFC 3339 timestamp"),
                ));
            }
        }
        ("0.3", "datacontentencoding") if string()? != "base64" => {
            return Err(InvalidEvent::value(name, "only 'base64' is defined"));
        }
        _ => {}
    }
    Ok(())
}

/// Attribute names are lower-case ASCII letters and digits (CloudEvents 1.0,
/// "Attribute Naming Convention").
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The String type excludes the C0 and C1 control characters.
fn is_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x1F | 0x7F..=0x9F)
}

/// Unicode's noncharacters (U+FDD0..U+FDEF and the last two code points of
/// every plane), which the CloudEvents String type excludes.
fn is_noncharacter(c: char) -> bool {
    let c = c as u32;
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// What may stand in a URI-reference (RFC 3986): no white space, controls
/// or the characters it never allows. Characters beyond ASCII are let
/// through, as IRIs and the reference's parser do; a `%` is not checked
/// for its two hex digits, as senders do not always encode.
fn is_uri_char(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Event {
        Event::new("1", "/s", "t")
    }

    #[test]
    fn accepts_minimal_and_full_events() {
        assert_eq!(valid().validate(), Ok(()));
        let mut e = valid();
        e.set("time", "2024-02-29T12:00:00.123+01:00".into());
        e.set("dataschema", "https://example.com/schema".into());
        assert_eq!(e.validate(), Ok(()));
        e.set("dataschema", "schemas/order.json".into());
        e.set("source", "urn:event:from:myapi/resource/123#frag".into());
        e.set("unicode", "\u{10FFFD} \u{FDCF} ok".into());
        e.set("subject", "s".into());
        e.set("datacontenttype", "application/json; charset=utf-8".into());
        e.set("ext1", Value::Integer(5));
        e.set("flag", Value::Boolean(true));
        e.set("emoji", "Euro € 😀".into());
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn rejects_each_broken_rule() {
        type Mutation = fn(&mut Event);
        let cases: [(Mutation, InvalidEvent); 18] = [
            (|e| drop(e.remove("id")), InvalidEvent::Missing("id")),
            (
                |e| drop(e.remove("source")),
                InvalidEvent::Missing("source"),
            ),
            (|e| drop(e.remove("type")), InvalidEvent::Missing("type")),
            (
                |e| drop(e.remove("specversion")),
                InvalidEvent::Missing("specversion"),
            ),
            (|e| e.set("id", "".into()), InvalidEvent::Empty("id".into())),
            (
                |e| e.set("type", Value::Integer(1)),
                InvalidEvent::value("type", "must be a string"),
            ),
            (
                |e| e.set("specversion", "2.0".into()),
                InvalidEvent::SpecVersion("2.0".into()),
            ),
            (
                |e| e.set("my_ext", "x".into()),
                InvalidEvent::Name("my_ext".into()),
            ),
            (
                |e| e.set("myExt", "x".into()),
                InvalidEvent::Name("myExt".into()),
            ),
            (
                |e| e.set("time", "yesterday".into()),
                InvalidEvent::value("time", "'yesterday' is not an RFC 3339 timestamp"),
            ),
            (
                |e| e.set("time", Value::Integer(3)),
                InvalidEvent::value("time", "must be a string"),
            ),
            (
                |e| e.set("dataschema", "my schema.json".into()),
                InvalidEvent::value(
                    "dataschema",
                    "'my schema.json' is not a URI-reference: ' ' is not allowed",
                ),
            ),
            (
                |e| e.set("source", "/my source".into()),
                InvalidEvent::value(
                    "source",
                    "'/my source' is not a URI-reference: ' ' is not allowed",
                ),
            ),
            (
                |e| e.set("source", "/a{b}".into()),
                InvalidEvent::value(
                    "source",
                    "'/a{b}' is not a URI-reference: '{' is not allowed",
                ),
            ),
            (
                |e| e.set("subject", "x\u{FFFE}".into()),
                InvalidEvent::value("subject", "noncharacter U+FFFE is not allowed"),
            ),
            (
                |e| e.set("datacontenttype", "json".into()),
                InvalidEvent::value("datacontenttype", "'json' is not a media type"),
            ),
            (
                |e| e.set("subject", "".into()),
                InvalidEvent::Empty("subject".into()),
            ),
            (
                |e| e.set("ext", "a\u{7}b".into()),
                InvalidEvent::value("ext", "control character U+0007 is not allowed"),
            ),
        ];
        for (i, (mutate, expected)) in cases.into_iter().enumerate() {
            let mut event = valid();
            mutate(&mut event);
            assert_eq!(event.validate(), Err(expected), "case {i}");
        }
    }

    #[test]
    fn version_03_has_its_own_attributes() {
        let mut e = valid();
        e.set("specversion", "0.3".into());
        e.set("schemaurl", "../x/y".into());
        e.set("datacontentencoding", "base64".into());
        assert_eq!(e.validate(), Ok(()));
        e.set("datacontentencoding", "gzip".into());
        assert_eq!(
            e.validate(),
            Err(InvalidEvent::value(
                "datacontentencoding",
                "only 'base64' is defined"
            ))
        );
    }
}
