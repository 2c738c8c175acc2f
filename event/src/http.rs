//! The CloudEvents HTTP protocol binding: binary, structured and batched
//! content modes.

use std::borrow::Cow;

use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::{
    json, media_type_essence, validate::is_valid_name, Event, InvalidEvent, Value, DATACONTENTTYPE,
};

const PREFIX: &str = "ce-";

/// What the HTTP binding says must be percent-encoded in a header value:
/// space, double quote, percent, and everything outside printable ASCII.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// How a request carries its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
    Batch,
}

/// The mode a request uses, from its content type.
pub fn mode(headers: &HeaderMap) -> Result<Mode, InvalidEvent> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(Mode::Binary);
    };
    let essence = media_type_essence(ct.to_str().unwrap_or_default());
    match essence.as_str() {
        json::STRUCTURED_CONTENT_TYPE => Ok(Mode::Structured),
        json::BATCH_CONTENT_TYPE => Ok(Mode::Batch),
        other if other.starts_with("application/cloudevents") => Err(InvalidEvent::Malformed(
            format!("unsupported event format '{other}' (Ferry reads JSON)"),
        )),
        _ => Ok(Mode::Binary),
    }
}

/// Decodes and validates the events of a request.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, InvalidEvent> {
    match mode(headers)? {
        Mode::Binary => decode_binary(headers, body).map(|e| vec![e]),
        Mode::Structured => json::decode(body).map(|e| vec![e]),
        Mode::Batch => json::decode_batch(&body),
    }
}

/// Binary mode: attributes in `ce-` headers (percent-encoded), the data
/// content type in `Content-Type`, the data in the body.
pub fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<Event, InvalidEvent> {
    let mut event = Event::default();
    for name in headers.keys() {
        let Some(attribute) = name.as_str().strip_prefix(PREFIX) else {
            continue;
        };
        let mut values = headers.get_all(name).iter();
        let value = values.next().expect("a key has a value");
        if values.next().is_some() {
            return Err(InvalidEvent::Duplicate(attribute.to_owned()));
        }
        if attribute == DATACONTENTTYPE || attribute == "data" {
            return Err(InvalidEvent::Malformed(format!(
                "header '{name}' is not allowed in binary mode: the data content type is the Content-Type header"
            )));
        }
        if !is_valid_name(attribute) {
            return Err(InvalidEvent::Name(attribute.to_owned()));
        }
        event.push_attribute(
            attribute.to_owned(),
            Value::String(decode_header_value(attribute, value.as_bytes())?),
        )?;
    }
    if event.get(crate::SPECVERSION).is_none() {
        return Err(InvalidEvent::Malformed(
            "not a CloudEvent: no ce-specversion header, and the content type is not application/cloudevents+json"
                .to_owned(),
        ));
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .map_err(|_| InvalidEvent::value(DATACONTENTTYPE, "Content-Type is not ASCII"))?;
        event.push_attribute(DATACONTENTTYPE.to_owned(), Value::String(ct.to_owned()))?;
    }
    event.data = (!body.is_empty()).then_some(body);
    event.validate()?;
    Ok(event)
}

/// Reads a header value as the HTTP binding says, and as real SDKs send
/// it: a double-quoted string is unquoted (RFC 9110 quoted-string, which
/// receivers MUST support); `%XX` is percent-decoded and a `%` not followed
/// by two hex digits is taken literally (the legacy Python API and the
/// JavaScript emitter do not encode); bytes that are not UTF-8 are read as
/// ISO-8859-1, HTTP's historical charset. The decoded value must be UTF-8.
fn decode_header_value(name: &str, raw: &[u8]) -> Result<String, InvalidEvent> {
    // Most values have nothing to undo: copied once.
    if !raw.contains(&b'%') && raw.first() != Some(&b'"') {
        if let Ok(plain) = std::str::from_utf8(raw) {
            return Ok(plain.to_owned());
        }
    }
    let text: Cow<str> = match std::str::from_utf8(raw) {
        Ok(text) => text.into(),
        Err(_) => raw
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .into(),
    };
    let text = unquote(&text);
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded)
        .map_err(|_| InvalidEvent::value(name, "is not UTF-8 after percent-decoding"))
}

/// The content of a quoted-string, with its `\` escapes undone; any other
/// value as it is.
fn unquote(value: &str) -> Cow<'_, str> {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
    else {
        return value.into();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out.into()
}

/// Headers for a binary-mode request carrying `event`; the body is
/// `event.data()`.
pub fn encode_binary_headers(event: &Event) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(12);
    for (name, value) in event.attributes() {
        if name == DATACONTENTTYPE {
            let content_type = match value {
                Value::String(s) => HeaderValue::from_str(s),
                other => HeaderValue::from_str(&other.to_string()),
            };
            if let Ok(v) = content_type {
                headers.insert(CONTENT_TYPE, v);
            }
            continue;
        }
        headers.insert(header_name(name), header_value(value));
    }
    headers
}

/// `ce-<name>`; the names most events carry are made without allocating
/// (every delivery encodes them: BENCHMARKS.md, issue 25).
fn header_name(name: &str) -> HeaderName {
    const KNOWN: [&str; 12] = [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "ce-partitionkey",
        "ce-knativekafkapartition",
        "ce-knativekafkaoffset",
        "ce-traceparent",
        "ce-tracestate",
    ];
    match KNOWN.iter().find(|known| &known[PREFIX.len()..] == name) {
        Some(known) => HeaderName::from_static(known),
        None => HeaderName::try_from(format!("{PREFIX}{name}"))
            .expect("attribute names are valid header names"),
    }
}

/// An attribute's value, percent-encoded, copied once.
fn header_value(value: &Value) -> HeaderValue {
    match value {
        Value::Integer(i) => HeaderValue::from(*i),
        Value::Boolean(b) => HeaderValue::from_static(if *b { "true" } else { "false" }),
        Value::String(s) => match Cow::from(utf8_percent_encode(s, HEADER_VALUE)) {
            Cow::Borrowed(plain) => HeaderValue::from_str(plain),
            Cow::Owned(encoded) => HeaderValue::try_from(encoded),
        }
        .expect("percent-encoded values are visible ASCII"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    const REQUIRED: [(&str, &[u8]); 4] = [
        ("ce-specversion", b"1.0"),
        ("ce-id", b"1"),
        ("ce-source", b"/s"),
        ("ce-type", b"t"),
    ];

    #[test]
    fn binary_mode_percent_decodes_and_keeps_data() {
        let mut h = headers(&REQUIRED);
        h.insert(
            "ce-greeting",
            HeaderValue::from_static("Euro%20%E2%82%AC%20%F0%9F%98%80"),
        );
        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let e = decode_binary(&h, Bytes::from_static(&[0, 159])).unwrap();
        assert_eq!(e.get_str("greeting"), Some("Euro € 😀"));
        assert_eq!(e.datacontenttype(), Some("application/octet-stream"));
        assert_eq!(e.data().unwrap().as_ref(), &[0, 159]);
        let back = encode_binary_headers(&e);
        assert_eq!(back["ce-greeting"], "Euro%20%E2%82%AC%20%F0%9F%98%80");
        assert_eq!(decode_binary(&back, e.data().unwrap().clone()).unwrap(), e);
    }

    #[test]
    fn binary_mode_errors() {
        let only_id = headers(&[("ce-id", b"1")]);
        let err = decode_binary(&only_id, Bytes::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no ce-specversion header"), "{err}");

        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Headers, &str); 5] = [
            (&[("ce-bad%", b"%zz")], "invalid attribute name"),
            (&[("ce-ext", b"%ff%fe")], "not UTF-8"),
            (&[("ce-my-ext", b"x")], "invalid attribute name 'my-ext'"),
            (&[("ce-id", b"2")], "'id' appears more than once"),
            (
                &[("ce-datacontenttype", b"text/plain")],
                "not allowed in binary mode",
            ),
        ];
        for (extra, reason) in cases {
            let mut pairs = REQUIRED.to_vec();
            pairs.extend_from_slice(extra);
            let h = headers(&pairs);
            let err = decode_binary(&h, Bytes::new()).unwrap_err().to_string();
            assert!(err.contains(reason), "{extra:?}: {err}");
        }
    }

    #[test]
    fn lenient_header_values_as_real_clients_send_them() {
        let cases: [(&[u8], &str); 9] = [
            (b"100% sure", "100% sure"),
            (b"50%", "50%"),
            (b"%4", "%4"),
            (b"%41%zz", "A%zz"),
            (b"%+1", "%+1"),
            (b"\"quoted value\"", "quoted value"),
            (b"\"with \\\"escapes\\\\\"", "with \"escapes\\"),
            (b"\"", "\""),
            (b"caf\xe9", "café"),
        ];
        for (raw, expected) in cases {
            let mut h = headers(&REQUIRED);
            h.insert("ce-ext", HeaderValue::from_bytes(raw).unwrap());
            let e = decode_binary(&h, Bytes::new()).unwrap_or_else(|err| panic!("{raw:?}: {err}"));
            assert_eq!(e.get_str("ext"), Some(expected), "{raw:?}");
        }
    }

    #[test]
    fn modes_from_content_type() {
        let m = |ct: &'static str| mode(&headers(&[("content-type", ct.as_bytes())]));
        assert_eq!(
            m("application/cloudevents+json; charset=utf-8"),
            Ok(Mode::Structured)
        );
        assert_eq!(m("Application/CloudEvents-Batch+JSON"), Ok(Mode::Batch));
        assert_eq!(m("application/json"), Ok(Mode::Binary));
        assert!(m("application/cloudevents+avro").is_err());
        assert_eq!(mode(&HeaderMap::new()), Ok(Mode::Binary));
    }
}
