//! A Kafka record as the dispatcher reads it: headers (`name=value`, one
//! per line, no `=` for a null value), then the value after a blank line.
#![no_main]

use ferry_event::kafka::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, value) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], Some(&data[at + 2..])),
        None => (data, None),
    };
    let headers: Vec<(&str, Option<&[u8]>)> = head
        .split(|&b| b == b'\n')
        .filter_map(|line| match line.iter().position(|&b| b == b'=') {
            Some(at) => Some((
                std::str::from_utf8(&line[..at]).ok()?,
                Some(&line[at + 1..]),
            )),
            None => Some((std::str::from_utf8(line).ok()?, None)),
        })
        .collect();
    let _ = decode(headers, value);
});
