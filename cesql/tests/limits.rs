//! No expression can crash or hang the evaluator: nesting and length are
//! bounded at parse time, LIKE matching never backtracks exponentially.

use ferry_cesql::{Expression, MAX_DEPTH, MAX_LENGTH};
use ferry_event::Event;

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = Expression::parse(&deep).unwrap_err();
    assert!(err.message.contains("limited"), "{err}");
    let nots = format!("{}TRUE", "NOT ".repeat(MAX_DEPTH * 4));
    assert!(Expression::parse(&nots).is_err());
    let fine = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH / 2),
        ")".repeat(MAX_DEPTH / 2)
    );
    assert!(Expression::parse(&fine).is_ok());
}

#[test]
fn long_expressions_are_refused() {
    let long = format!("type = '{}'", "x".repeat(MAX_LENGTH));
    let err = Expression::parse(&long).unwrap_err();
    assert!(err.message.contains("limited to"), "{err}");
}

#[test]
fn like_patterns_cannot_blow_up() {
    let mut event = Event::new("1", "/s", "t");
    event.set("subject", "a".repeat(4000).as_str().into());
    let pattern = format!("subject LIKE '{}b'", "%a".repeat(500));
    let expression = Expression::parse(&pattern).unwrap();
    // Backtracking to the last % only: quadratic at worst. An exponential
    // matcher would never finish this (and the runner's timeout fails it).
    assert!(!expression.matches(&event));
}

#[test]
fn parse_errors_say_where() {
    for (text, position) in [
        ("type = ", 7),
        ("ABC(", 4),
        ("a LIKE 1", 7),
        ("1 +* 2", 3),
        ("'open", 0),
        ("x IN ()", 6),
        ("2147483648", 0),
    ] {
        let err = Expression::parse(text).unwrap_err();
        assert_eq!(err.position, position, "{text}: {err}");
    }
}
