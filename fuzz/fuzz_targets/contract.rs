//! The contract file as receiver and dispatcher read it: JSON when it
//! starts with `{`, binary protobuf otherwise.
#![no_main]

use ferry_proto::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
});
