//! Binary mode: arbitrary header names and values (one per line,
//! `name: value`), then the body after a blank line.
#![no_main]

use bytes::Bytes;
use ferry_event::http::decode;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue; // hyper would have refused it before Ferry sees it
        };
        headers.append(name, value);
    }
    let _ = decode(&headers, Bytes::copy_from_slice(body));
});
