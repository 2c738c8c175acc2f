//! The CloudEvents JSON event format (structured and batched modes).
//!
//! `data` that is JSON is kept as the exact text it arrived as, so decoding
//! and re-encoding changes no byte of it.

use std::fmt;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{is_json_media_type, Event, InvalidEvent, Value, DATACONTENTTYPE, SPECVERSION};

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// Attributes that are strings in every version, whatever JSON allows.
const STRING_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "schemaurl",
    "datacontentencoding",
];

/// Decodes one structured-mode event, validated. The body is kept so an
/// unchanged event is written on as received.
pub fn decode(body: Bytes) -> Result<Event, InvalidEvent> {
    let members: Members = serde_json::from_slice(&body).map_err(malformed)?;
    let mut event = from_members(members)?;
    event.structured = Some(body);
    Ok(event)
}

/// Decodes a batch: a JSON array of events. Every event is decoded and
/// validated before any is returned.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Event>, InvalidEvent> {
    let batch: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
    batch
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            decode(Bytes::copy_from_slice(raw.get().as_bytes()))
                .map_err(|e| InvalidEvent::Malformed(format!("event {i} of the batch: {e}")))
        })
        .collect()
}

fn malformed(e: serde_json::Error) -> InvalidEvent {
    InvalidEvent::Malformed(format!("body is not a CloudEvent in JSON format: {e}"))
}

fn from_members(members: Members) -> Result<Event, InvalidEvent> {
    let mut event = Event::default();
    let mut data: Option<Box<RawValue>> = None;
    let mut data_base64: Option<Box<RawValue>> = None;
    for (name, raw) in members.0 {
        match name.as_str() {
            "data" => data = Some(raw),
            "data_base64" => data_base64 = Some(raw),
            _ => {
                if let Some(value) = attribute_value(&name, &raw)? {
                    event.push_attribute(name, value)?;
                }
            }
        }
    }
    event.data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err(InvalidEvent::BothData),
        (None, Some(b64)) => Some(decode_base64("data_base64", &b64)?),
        (Some(data), None) => Some(data_bytes(&mut event, &data)?),
        (None, None) => None,
    };
    event.validate()?;
    Ok(event)
}

fn attribute_value(name: &str, raw: &RawValue) -> Result<Option<Value>, InvalidEvent> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(malformed)?;
    let value = match value {
        // The JSON format: null is the same as absent.
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(s) => Value::String(s),
        _ if STRING_ATTRIBUTES.contains(&name) => {
            return Err(InvalidEvent::value(name, "must be a string"))
        }
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
            Some(i) => Value::Integer(i),
            None => {
                return Err(InvalidEvent::value(
                    name,
                    format!("{n} is not a 32-bit integer"),
                ))
            }
        },
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            return Err(InvalidEvent::value(
                name,
                "must be a string, integer or boolean",
            ))
        }
    };
    Ok(Some(value))
}

/// The bytes of `data`: JSON text as it stands when the content type is JSON;
/// a string's characters otherwise; base64-decoded for 0.3's
/// `datacontentencoding: base64`.
///
/// The event is left saying what its bytes are, for the binary modes it may
/// be written in next: 0.3's encoding is dropped once the data is decoded
/// (the bytes are raw now), and JSON data without a content type gets the
/// `application/json` the JSON format implies (the format says it SHOULD be
/// set when re-serialised; SDKs read the data as a string without it).
fn data_bytes(event: &mut Event, data: &RawValue) -> Result<Bytes, InvalidEvent> {
    if event.specversion() == "0.3" && event.get_str("datacontentencoding") == Some("base64") {
        let bytes = decode_base64("data", data)?;
        event.attributes.retain(|(n, _)| n != "datacontentencoding");
        return Ok(bytes);
    }
    match event.datacontenttype() {
        None => event
            .attributes
            .push((DATACONTENTTYPE.to_owned(), "application/json".into())),
        ct if !is_json_media_type(ct) => {
            if let Ok(text) = serde_json::from_str::<String>(data.get()) {
                return Ok(Bytes::from(text));
            }
        }
        _ => {}
    }
    Ok(Bytes::copy_from_slice(data.get().trim().as_bytes()))
}

fn decode_base64(name: &str, raw: &RawValue) -> Result<Bytes, InvalidEvent> {
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| InvalidEvent::value(name, "must be a base64 string"))?;
    BASE64
        .decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(|e| InvalidEvent::value(name, format!("is not valid base64: {e}")))
}

/// Encodes an event in the JSON format. An unchanged structured event is
/// returned as it arrived.
pub fn encode(event: &Event) -> Bytes {
    if let Some(original) = &event.structured {
        return original.clone();
    }
    Bytes::from(encode_object(event))
}

fn encode_object(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.data.as_ref().map_or(0, |d| d.len() * 4 / 3));
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, name).expect("strings serialise");
        out.push(b':');
        out.extend_from_slice(value);
    };
    // specversion first: readers may sniff it.
    let ordered = event
        .attributes()
        .filter(|(n, _)| *n == SPECVERSION)
        .chain(event.attributes().filter(|(n, _)| *n != SPECVERSION));
    for (name, value) in ordered {
        let json = match value {
            Value::String(s) => serde_json::to_vec(s).expect("strings serialise"),
            Value::Integer(i) => i.to_string().into_bytes(),
            Value::Boolean(b) => b.to_string().into_bytes(),
        };
        member(&mut out, name, &json);
    }
    if let Some(data) = &event.data {
        let ct = event.get_str(DATACONTENTTYPE);
        let is_03 = event.specversion() == "0.3";
        if is_json_media_type(ct) && serde_json::from_slice::<&RawValue>(data).is_ok() {
            member(&mut out, "data", data);
        } else if let (Some(text), true) = (std::str::from_utf8(data).ok(), is_text(ct)) {
            member(
                &mut out,
                "data",
                &serde_json::to_vec(text).expect("strings serialise"),
            );
        } else if is_03 {
            if event.get("datacontentencoding").is_none() {
                member(&mut out, "datacontentencoding", b"\"base64\"");
            }
            member(
                &mut out,
                "data",
                &serde_json::to_vec(&BASE64.encode(data)).expect("strings serialise"),
            );
        } else {
            member(
                &mut out,
                "data_base64",
                &serde_json::to_vec(&BASE64.encode(data)).expect("strings serialise"),
            );
        }
    }
    out.push(b'}');
    out
}

/// Content types whose data is text and so can be a JSON string.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = crate::media_type_essence(ct);
    essence.starts_with("text/")
        || essence.ends_with("+xml")
        || essence == "application/xml"
        || ct.contains("charset=")
}

/// The members of a JSON object in order, refusing duplicate names (serde's
/// maps would silently keep the last).
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if members.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format_args!(
                            "member '{name}' appears more than once"
                        )));
                    }
                    members.push((name, value));
                }
                Ok(Members(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Members, A::Error> {
                Err(de::Error::custom("expected one event object, found an array (send batches as application/cloudevents-batch+json)"))
            }
        }
        deserializer.deserialize_any(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(s: &str) -> Result<Event, InvalidEvent> {
        decode(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn keeps_json_data_and_attributes_exactly() {
        let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":5,"flag":true,"data":{"b": 1.50, "a":[1,2]}}"#;
        let e = decode_str(body).unwrap();
        assert_eq!(e.get("ext"), Some(&Value::Integer(5)));
        assert_eq!(e.get("flag"), Some(&Value::Boolean(true)));
        assert_eq!(e.data().unwrap().as_ref(), br#"{"b": 1.50, "a":[1,2]}"#);
        assert_eq!(
            encode(&e).as_ref(),
            body.as_bytes(),
            "unchanged events are written as received"
        );
        let mut changed = e.clone();
        changed.set("region", "eu".into());
        let again = decode(encode(&changed)).unwrap();
        assert_eq!(again.data(), e.data());
        assert_eq!(again.get("ext"), Some(&Value::Integer(5)));
        assert_eq!(again.get_str("region"), Some("eu"));
    }

    #[test]
    fn text_and_binary_data() {
        let e = decode_str(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi \"there\""}"#).unwrap();
        assert_eq!(e.data().unwrap().as_ref(), br#"hi "there""#);
        let b = decode_str(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAEC/w=="}"#,
        )
        .unwrap();
        assert_eq!(b.data().unwrap().as_ref(), &[0, 1, 2, 255]);
        let mut b2 = b.clone();
        b2.set("x", "y".into());
        assert!(String::from_utf8(encode(&b2).to_vec())
            .unwrap()
            .contains(r#""data_base64":"AAEC/w==""#));
        // A JSON string with a JSON content type stays a JSON string.
        let s = decode_str(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x"}"#)
            .unwrap();
        assert_eq!(s.data().unwrap().as_ref(), br#""x""#);
    }

    #[test]
    fn json_data_without_a_content_type_says_application_json() {
        let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}"#;
        let e = decode_str(body).unwrap();
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(
            encode(&e).as_ref(),
            body.as_bytes(),
            "still passed on as received"
        );
        let b = decode_str(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AA=="}"#,
        )
        .unwrap();
        assert_eq!(b.datacontenttype(), None, "not for data_base64");
        let none =
            decode_str(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#).unwrap();
        assert_eq!(none.datacontenttype(), None, "not without data");
    }

    #[test]
    fn a_03_event_decoded_from_base64_no_longer_says_base64() {
        let e = decode_str(r#"{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","datacontentencoding":"base64","data":"AAEC"}"#)
            .unwrap();
        assert_eq!(e.data().unwrap().as_ref(), &[0, 1, 2]);
        assert_eq!(e.get("datacontentencoding"), None);
        let mut changed = e.clone();
        changed.set("x", "y".into());
        let again = decode(encode(&changed)).unwrap();
        assert_eq!(again.data(), e.data(), "re-encoded as base64 again");
    }

    #[test]
    fn rejects_bad_events_with_reasons() {
        let cases = [
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
                "both 'data' and 'data_base64'",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s"}"#,
                "missing required attribute 'type'",
            ),
            (
                r#"{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}"#,
                "appears more than once",
            ),
            (
                r#"{"specversion":"1.0","id":1,"source":"/s","type":"t"}"#,
                "'id' is invalid: must be a string",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","e":{"a":1}}"#,
                "must be a string, integer or boolean",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","e":3000000000}"#,
                "not a 32-bit integer",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}"#,
                "not valid base64",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad":"x"}"#,
                "invalid attribute name 'Bad'",
            ),
            (r#"[{"specversion":"1.0"}]"#, "found an array"),
            (
                r#"{"specversion":"1.0","#,
                "not a CloudEvent in JSON format",
            ),
        ];
        for (body, reason) in cases {
            let err = decode_str(body).unwrap_err().to_string();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let ok = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t"}]"#;
        assert_eq!(decode_batch(ok).unwrap().len(), 2);
        let bad = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]"#;
        assert_eq!(
            decode_batch(bad).unwrap_err().to_string(),
            "event 1 of the batch: missing required attribute 'id'"
        );
        assert!(decode_batch(b"[]").unwrap().is_empty());
    }
}
