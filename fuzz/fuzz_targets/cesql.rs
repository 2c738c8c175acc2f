//! A CESQL expression: parsed, and when it parses, evaluated against an
//! event with the required attributes and two extensions.
#![no_main]

use ferry_cesql::Expression;
use ferry_event::{Event, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expression) = Expression::parse(text) {
        let mut event = Event::new("id-1", "/fuzz/source", "dev.ferry.fuzz");
        event.set("subject", Value::String("a subject".into()));
        event.set("count", Value::Integer(42));
        event.set("flag", Value::Boolean(true));
        let _ = expression.evaluate(&event);
    }
});
