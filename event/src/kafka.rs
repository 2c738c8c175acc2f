//! The CloudEvents Kafka protocol binding. Pure: it builds and reads record
//! parts; the Kafka clients live at the edges.

use bytes::Bytes;

use crate::{
    json, media_type_essence, validate::is_valid_name, Event, InvalidEvent, Value, DATACONTENTTYPE,
    PARTITIONKEY,
};

const PREFIX: &str = "ce_";
pub const CONTENT_TYPE: &str = "content-type";
const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// How an event is laid out in a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentMode {
    /// Attributes in `ce_` headers, data as the value.
    #[default]
    Binary,
    /// The JSON event format as the value.
    Structured,
}

/// The parts of a Kafka record that carry an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The `partitionkey` extension, when present.
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    pub value: Option<Bytes>,
}

/// Lays an event out as a record.
pub fn encode(event: &Event, mode: ContentMode) -> Record {
    let key = event.get(PARTITIONKEY).map(|v| Bytes::from(v.to_string()));
    match mode {
        ContentMode::Structured => Record {
            key,
            headers: vec![(
                CONTENT_TYPE.to_owned(),
                Bytes::from_static(STRUCTURED_CONTENT_TYPE.as_bytes()),
            )],
            value: Some(json::encode(event)),
        },
        ContentMode::Binary => {
            let headers = event
                .attributes()
                .map(|(name, value)| {
                    let header = if name == DATACONTENTTYPE {
                        CONTENT_TYPE.to_owned()
                    } else {
                        format!("{PREFIX}{name}")
                    };
                    (header, Bytes::from(value.to_string()))
                })
                .collect();
            Record {
                key,
                headers,
                value: event.data().cloned(),
            }
        }
    }
}

/// Reads an event from a record, in whichever mode it was written.
pub fn decode<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    value: Option<&[u8]>,
) -> Result<Event, InvalidEvent> {
    decode_noting(headers, value).map(|(event, _)| event)
}

/// A record's `content-type` and `ce_datacontenttype` headers that did not
/// agree; the event has the `content-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentTypeConflict {
    pub content_type: String,
    pub datacontenttype: String,
}

/// [`decode`], also telling when the record carried two different content
/// types. The JavaScript SDK's Kafka binding writes both headers, with the
/// same value; when they differ `content-type` wins (the binding's header).
pub fn decode_noting<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    value: Option<&[u8]>,
) -> Result<(Event, Option<ContentTypeConflict>), InvalidEvent> {
    let mut event = Event::default();
    let mut content_type = None;
    let mut ce_content_type = None;
    for (name, header_value) in headers {
        let text = || {
            std::str::from_utf8(header_value.unwrap_or_default())
                .map_err(|_| InvalidEvent::value(name, "header value is not UTF-8"))
        };
        if name.eq_ignore_ascii_case(CONTENT_TYPE) {
            content_type = Some(text()?.to_owned());
        } else if let Some(attribute) = name.strip_prefix(PREFIX) {
            if !is_valid_name(attribute) {
                return Err(InvalidEvent::Name(attribute.to_owned()));
            }
            if attribute == DATACONTENTTYPE {
                if ce_content_type.is_some() {
                    return Err(InvalidEvent::Duplicate(attribute.to_owned()));
                }
                ce_content_type = Some(text()?.to_owned());
                continue;
            }
            event.push_attribute(attribute.to_owned(), Value::String(text()?.to_owned()))?;
        }
    }
    if content_type.as_deref().map(media_type_essence).as_deref()
        == Some(json::STRUCTURED_CONTENT_TYPE)
    {
        let event = json::decode(Bytes::copy_from_slice(value.unwrap_or_default()))?;
        return Ok((event, None));
    }
    let conflict = match (&content_type, &ce_content_type) {
        (Some(ct), Some(ce)) if ct != ce => Some(ContentTypeConflict {
            content_type: ct.clone(),
            datacontenttype: ce.clone(),
        }),
        _ => None,
    };
    if let Some(ct) = content_type.or(ce_content_type) {
        event.push_attribute(DATACONTENTTYPE.to_owned(), Value::String(ct))?;
    }
    event.data = value.filter(|v| !v.is_empty()).map(Bytes::copy_from_slice);
    event.validate()?;
    Ok((event, conflict))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(record: &Record) -> Vec<(&str, Option<&[u8]>)> {
        record
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), Some(v.as_ref())))
            .collect()
    }

    #[test]
    fn binary_round_trip_with_key() {
        let mut e = Event::new("1", "/s", "t");
        e.set("partitionkey", "k1".into());
        e.set("greeting", "Euro € 😀".into());
        e.set_data(Some("text/plain"), Some(Bytes::from_static(b"hello")));
        let record = encode(&e, ContentMode::Binary);
        assert_eq!(record.key.as_deref(), Some(&b"k1"[..]));
        assert!(record
            .headers
            .contains(&("ce_greeting".into(), Bytes::from("Euro € 😀"))));
        assert!(record
            .headers
            .contains(&("content-type".into(), Bytes::from("text/plain"))));
        assert_eq!(record.value.as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode(parts(&record), record.value.as_deref()).unwrap(), e);
    }

    #[test]
    fn structured_round_trip() {
        let mut e = Event::new("1", "/s", "t");
        e.set_data(
            Some("application/json"),
            Some(Bytes::from_static(br#"{"a":1}"#)),
        );
        let record = encode(&e, ContentMode::Structured);
        assert_eq!(record.key, None);
        let back = decode(parts(&record), record.value.as_deref()).unwrap();
        assert_eq!(back.data(), e.data());
        assert_eq!(back.attributes().count(), e.attributes().count());
    }

    #[test]
    fn both_content_type_headers_as_the_javascript_sdk_writes_them() {
        let base = [
            ("ce_specversion", Some(&b"1.0"[..])),
            ("ce_id", Some(&b"1"[..])),
            ("ce_source", Some(&b"/s"[..])),
            ("ce_type", Some(&b"t"[..])),
        ];
        let with = |ct: &'static [u8], ce: &'static [u8]| {
            let mut h = base.to_vec();
            h.push(("content-type", Some(ct)));
            h.push(("ce_datacontenttype", Some(ce)));
            decode_noting(h, Some(b"{}")).unwrap()
        };
        let (e, conflict) = with(b"application/json", b"application/json");
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(conflict, None);
        let (e, conflict) = with(b"text/plain", b"application/json");
        assert_eq!(e.datacontenttype(), Some("text/plain"), "content-type wins");
        assert_eq!(
            conflict,
            Some(ContentTypeConflict {
                content_type: "text/plain".into(),
                datacontenttype: "application/json".into()
            })
        );
        let mut only_ce = base.to_vec();
        only_ce.push(("ce_datacontenttype", Some(&b"text/csv"[..])));
        assert_eq!(
            decode(only_ce, None).unwrap().datacontenttype(),
            Some("text/csv")
        );
    }

    #[test]
    fn invalid_records_are_reported() {
        let err = decode([("ce_id", Some(&b"1"[..]))], None).unwrap_err();
        assert_eq!(err, InvalidEvent::Missing("specversion"));
    }
}
