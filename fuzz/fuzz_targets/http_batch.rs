//! Batched mode: an arbitrary body as application/cloudevents-batch+json.
#![no_main]

use ferry_event::json::decode_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_batch(data);
});
