//! Structured mode: an arbitrary body as application/cloudevents+json.
#![no_main]

use bytes::Bytes;
use ferry_event::json::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = decode(Bytes::copy_from_slice(data)) {
        // What Ferry accepted it can write, and read back the same.
        let again = decode(encode(&event)).expect("re-encoded event decodes");
        assert_eq!(again, event);
    }
});
