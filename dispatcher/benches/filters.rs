//! Filter evaluation per dialect, in nanoseconds per event, against the
//! baseline of no filter at all. `cargo bench -p ferry-dispatcher --bench filters`

use std::{hint::black_box, time::Instant};

use ferry_dispatcher::filter::Filter;
use ferry_event::Event;
use ferry_proto::{
    dialected_filter::Filter as Dialect, All, Any, Cesql, DialectedFilter, Egress, Exact, Not,
    Prefix, Suffix,
};

const EVENTS: usize = 1_000_000;

fn map(k: &str, v: &str) -> std::collections::HashMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

fn d(filter: Dialect) -> DialectedFilter {
    DialectedFilter {
        filter: Some(filter),
    }
}

fn main() {
    let mut event = Event::new(
        "a-fairly-typical-id-1234",
        "/orders/eu-west/shop-7",
        "com.example.order.created",
    );
    event.set("region", "eu-west".into());
    event.set("priority", "7".into());
    event.set("subject", "order/12345".into());

    let cases: Vec<(&str, Vec<DialectedFilter>, Option<ferry_proto::Filter>)> = vec![
        ("none (baseline)", vec![], None),
        ("legacy attributes", vec![], Some(ferry_proto::Filter { attributes: map("type", "com.example.order.created") })),
        ("exact", vec![d(Dialect::Exact(Exact { attributes: map("type", "com.example.order.created") }))], None),
        ("prefix", vec![d(Dialect::Prefix(Prefix { attributes: map("source", "/orders/") }))], None),
        ("suffix", vec![d(Dialect::Suffix(Suffix { attributes: map("type", ".created") }))], None),
        (
            "all (exact + prefix)",
            vec![d(Dialect::All(All {
                filters: vec![
                    d(Dialect::Exact(Exact { attributes: map("region", "eu-west") })),
                    d(Dialect::Prefix(Prefix { attributes: map("type", "com.example.") })),
                ],
            }))],
            None,
        ),
        (
            "any (2 misses + hit)",
            vec![d(Dialect::Any(Any {
                filters: vec![
                    d(Dialect::Exact(Exact { attributes: map("region", "us") })),
                    d(Dialect::Exact(Exact { attributes: map("region", "ap") })),
                    d(Dialect::Suffix(Suffix { attributes: map("type", "created") })),
                ],
            }))],
            None,
        ),
        ("not (exact)", vec![d(Dialect::Not(Box::new(Not { filter: Some(Box::new(d(Dialect::Exact(Exact { attributes: map("region", "us") })))) })))], None),
        ("cesql: type = '...'", vec![d(Dialect::Cesql(Cesql { expression: "type = 'com.example.order.created'".into() }))], None),
        (
            "cesql: LIKE AND > AND IN",
            vec![d(Dialect::Cesql(Cesql {
                expression: "type LIKE 'com.example.%.created' AND priority > 5 AND region IN ('eu-west', 'us')".into(),
            }))],
            None,
        ),
    ];

    println!("{:<28} {:>10} {:>12}", "dialect", "ns/event", "vs baseline");
    let mut baseline = None;
    for (name, dialected, legacy) in cases {
        let filter = Filter::compile(&Egress {
            dialected_filter: dialected,
            filter: legacy,
            ..Default::default()
        })
        .expect("compiles");
        // Warm up, then measure.
        for _ in 0..10_000 {
            black_box(filter.matches(black_box(&event)));
        }
        let started = Instant::now();
        let mut passed = 0usize;
        for _ in 0..EVENTS {
            passed += usize::from(filter.matches(black_box(&event)));
        }
        let ns = started.elapsed().as_nanos() as f64 / EVENTS as f64;
        assert_eq!(passed, EVENTS, "{name} should pass this event");
        let base = *baseline.get_or_insert(ns);
        println!("{name:<28} {ns:>10.1} {:>11.1}x", ns / base.max(0.1));
    }
}
