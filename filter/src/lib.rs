//! Event filters, compiled once per contract and evaluated per event: a
//! trigger's, and an EventPolicy's (which the receiver applies).
//!
//! Evaluated as the reference Kafka broker evaluates them (users migrate
//! from it), where that differs from Knative's core: an attribute whose
//! expected value is empty is no condition at all (it matches an absent
//! attribute too), `all` of nothing passes, `any` of nothing passes
//! nothing, `not` negates, and a CESQL result is cast to Boolean (the
//! String `'true'` passes).

use std::collections::HashMap;

use ferry_event::{Event, Value};
use ferry_proto::{dialected_filter::Filter as Dialect, DialectedFilter, Egress};

/// Why an egress's filter cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// A CESQL expression that does not parse; the egress is skipped.
    #[error("invalid CESQL expression '{expression}': {source}")]
    Cesql {
        expression: String,
        #[source]
        source: ferry_cesql::ParseError,
    },
    /// A dialected filter with no dialect set.
    #[error("a filter in dialectedFilter names no dialect")]
    Empty,
    /// `not` without a filter to negate.
    #[error("'not' needs a filter")]
    NotWithoutFilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Exact,
    Prefix,
    Suffix,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every attribute must match (those with an empty value are dropped
    /// when compiled).
    Attributes(Match, Vec<(String, String)>),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    /// Parsed once, here.
    Cesql(std::sync::Arc<ferry_cesql::Expression>),
}

// === impl Filter ===

impl Filter {
    /// The egress's filter: `dialectedFilter` when it has any, the legacy
    /// `filter` otherwise (Knative ignores `filter` once `filters` is set).
    pub fn compile(egress: &Egress) -> Result<Filter, FilterError> {
        if !egress.dialected_filter.is_empty() {
            return compile_all(&egress.dialected_filter).map(Filter::All);
        }
        let attributes = egress.filter.as_ref().map(|f| &f.attributes);
        Ok(Filter::Attributes(Match::Exact, conditions(attributes)))
    }

    /// All of these filters (an EventPolicy's).
    pub fn all_of(filters: &[DialectedFilter]) -> Result<Filter, FilterError> {
        compile_all(filters).map(Filter::All)
    }

    /// Whether the event should be delivered.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::Attributes(kind, attributes) => attributes
                .iter()
                .all(|(name, want)| attribute_matches(*kind, event, name, want)),
            Filter::All(filters) => filters.iter().all(|f| f.matches(event)),
            Filter::Any(filters) => filters.iter().any(|f| f.matches(event)),
            Filter::Not(filter) => !filter.matches(event),
            Filter::Cesql(expression) => {
                let (value, error) = expression.evaluate(event);
                match (value, error) {
                    (_, Some(_)) => false,
                    (ferry_cesql::Value::Boolean(b), None) => b,
                    // The reference casts the result to Boolean.
                    (ferry_cesql::Value::String(s), None) => s.eq_ignore_ascii_case("true"),
                    (ferry_cesql::Value::Integer(_), None) => false,
                }
            }
        }
    }
}

fn attribute_matches(kind: Match, event: &Event, name: &str, want: &str) -> bool {
    // A missing attribute never matches a condition.
    let Some(value) = event.get(name) else {
        return false;
    };
    // Strings (every binary-mode value) are compared in place; only JSON
    // integers and booleans need formatting.
    let formatted;
    let value: &str = match value {
        Value::String(s) => s,
        other => {
            formatted = other.to_string();
            &formatted
        }
    };
    match kind {
        Match::Exact => value == want,
        Match::Prefix => value.starts_with(want),
        Match::Suffix => value.ends_with(want),
    }
}

fn compile_all(filters: &[DialectedFilter]) -> Result<Vec<Filter>, FilterError> {
    filters.iter().map(compile_one).collect()
}

fn compile_one(filter: &DialectedFilter) -> Result<Filter, FilterError> {
    Ok(match filter.filter.as_ref().ok_or(FilterError::Empty)? {
        Dialect::Exact(f) => Filter::Attributes(Match::Exact, conditions(Some(&f.attributes))),
        Dialect::Prefix(f) => Filter::Attributes(Match::Prefix, conditions(Some(&f.attributes))),
        Dialect::Suffix(f) => Filter::Attributes(Match::Suffix, conditions(Some(&f.attributes))),
        Dialect::All(f) => Filter::All(compile_all(&f.filters)?),
        Dialect::Any(f) => Filter::Any(compile_all(&f.filters)?),
        Dialect::Not(f) => Filter::Not(Box::new(compile_one(
            f.filter.as_deref().ok_or(FilterError::NotWithoutFilter)?,
        )?)),
        Dialect::Cesql(f) => Filter::Cesql(std::sync::Arc::new(
            ferry_cesql::Expression::parse(&f.expression).map_err(|source| FilterError::Cesql {
                expression: f.expression.clone(),
                source,
            })?,
        )),
    })
}

/// The conditions of an attribute filter: an empty expected value is none
/// (the reference drops it). Sorted so equal filters compare equal and
/// evaluation order is stable.
fn conditions(attributes: Option<&HashMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = attributes
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{All, Any, Cesql, Exact, Not, Prefix, Suffix};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    fn exact(pairs: &[(&str, &str)]) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Exact(Exact {
                attributes: map(pairs),
            })),
        }
    }
    fn prefix(pairs: &[(&str, &str)]) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Prefix(Prefix {
                attributes: map(pairs),
            })),
        }
    }
    fn suffix(pairs: &[(&str, &str)]) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Suffix(Suffix {
                attributes: map(pairs),
            })),
        }
    }
    fn all(filters: Vec<DialectedFilter>) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::All(All { filters })),
        }
    }
    fn any(filters: Vec<DialectedFilter>) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Any(Any { filters })),
        }
    }
    fn not(filter: DialectedFilter) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Not(Box::new(Not {
                filter: Some(Box::new(filter)),
            }))),
        }
    }
    fn dialected(filters: Vec<DialectedFilter>) -> Filter {
        Filter::compile(&Egress {
            dialected_filter: filters,
            ..Default::default()
        })
        .unwrap()
    }
    fn legacy(pairs: &[(&str, &str)]) -> Filter {
        Filter::compile(&Egress {
            filter: Some(ferry_proto::Filter {
                attributes: map(pairs),
            }),
            ..Default::default()
        })
        .unwrap()
    }

    fn event() -> Event {
        let mut e = Event::new("1", "/orders/eu", "com.example.order.created");
        e.set("region", "eu-west".into());
        e.set("empty", "".into());
        e
    }

    #[test]
    fn the_filter_matrix() {
        let e = event();
        let cases: Vec<(&str, Filter, bool)> = vec![
            ("no filter at all", legacy(&[]), true),
            (
                "legacy exact",
                legacy(&[("type", "com.example.order.created")]),
                true,
            ),
            ("legacy mismatch", legacy(&[("type", "other")]), false),
            (
                "legacy empty value matches any value",
                legacy(&[("region", "")]),
                true,
            ),
            (
                "legacy empty value is no condition, even for an absent attribute",
                legacy(&[("missing", "")]),
                true,
            ),
            (
                "legacy: all keys must match",
                legacy(&[("type", "com.example.order.created"), ("region", "us")]),
                false,
            ),
            (
                "legacy is case-sensitive",
                legacy(&[("region", "EU-WEST")]),
                false,
            ),
            (
                "exact",
                dialected(vec![exact(&[("region", "eu-west")])]),
                true,
            ),
            (
                "exact mismatch",
                dialected(vec![exact(&[("region", "eu")])]),
                false,
            ),
            (
                "exact on a missing attribute",
                dialected(vec![exact(&[("missing", "x")])]),
                false,
            ),
            (
                "exact empty value equals empty",
                dialected(vec![exact(&[("empty", "")])]),
                true,
            ),
            (
                "exact empty value is no condition",
                dialected(vec![exact(&[("region", "")])]),
                true,
            ),
            (
                "exact empty value beside a real one",
                dialected(vec![exact(&[("missing", ""), ("region", "us")])]),
                false,
            ),
            (
                "prefix",
                dialected(vec![prefix(&[("source", "/orders")])]),
                true,
            ),
            (
                "prefix mismatch",
                dialected(vec![prefix(&[("source", "/users")])]),
                false,
            ),
            (
                "prefix on a missing attribute",
                dialected(vec![prefix(&[("missing", "x")])]),
                false,
            ),
            (
                "an empty prefix is no condition",
                dialected(vec![prefix(&[("missing", "")])]),
                true,
            ),
            (
                "suffix",
                dialected(vec![suffix(&[("type", ".created")])]),
                true,
            ),
            (
                "suffix mismatch",
                dialected(vec![suffix(&[("type", ".deleted")])]),
                false,
            ),
            (
                "suffix on a missing attribute",
                dialected(vec![suffix(&[("missing", "x")])]),
                false,
            ),
            (
                "list: all must match",
                dialected(vec![
                    exact(&[("region", "eu-west")]),
                    prefix(&[("source", "/users")]),
                ]),
                false,
            ),
            (
                "all",
                dialected(vec![all(vec![
                    exact(&[("region", "eu-west")]),
                    suffix(&[("type", "created")]),
                ])]),
                true,
            ),
            (
                "all with one failing",
                dialected(vec![all(vec![
                    exact(&[("region", "eu-west")]),
                    suffix(&[("type", "x")]),
                ])]),
                false,
            ),
            (
                "any",
                dialected(vec![any(vec![
                    exact(&[("region", "us")]),
                    suffix(&[("type", "created")]),
                ])]),
                true,
            ),
            (
                "any with none passing",
                dialected(vec![any(vec![
                    exact(&[("region", "us")]),
                    exact(&[("missing", "x")]),
                ])]),
                false,
            ),
            (
                "not",
                dialected(vec![not(exact(&[("region", "us")]))]),
                true,
            ),
            (
                "not of a match",
                dialected(vec![not(exact(&[("region", "eu-west")]))]),
                false,
            ),
            (
                "not of a missing attribute",
                dialected(vec![not(exact(&[("missing", "x")]))]),
                true,
            ),
            ("empty all passes", dialected(vec![all(vec![])]), true),
            (
                "empty any matches nothing",
                dialected(vec![any(vec![])]),
                false,
            ),
            (
                "not of an empty all",
                dialected(vec![not(all(vec![]))]),
                false,
            ),
            ("empty exact passes", dialected(vec![exact(&[])]), true),
            (
                "nested",
                dialected(vec![any(vec![
                    any(vec![]),
                    not(prefix(&[("source", "/orders")])),
                ])]),
                false,
            ),
        ];
        for (name, filter, expected) in cases {
            assert_eq!(filter.matches(&e), expected, "{name}");
        }
    }

    #[test]
    fn dialected_filters_replace_the_legacy_one() {
        let egress = Egress {
            filter: Some(ferry_proto::Filter {
                attributes: map(&[("type", "never")]),
            }),
            dialected_filter: vec![exact(&[("region", "eu-west")])],
            ..Default::default()
        };
        assert!(Filter::compile(&egress).unwrap().matches(&event()));
    }

    fn cesql(expression: &str) -> DialectedFilter {
        DialectedFilter {
            filter: Some(Dialect::Cesql(Cesql {
                expression: expression.into(),
            })),
        }
    }

    #[test]
    fn cesql_filters_pass_only_on_true() {
        let e = event();
        let cases = [
            ("region = 'eu-west' AND type LIKE '%.created'", true),
            ("source LIKE '/orders/%' AND NOT EXISTS subject", true),
            ("region IN ('us', 'eu-west')", true),
            ("region = 'us'", false),
            ("missing = 'x'", false), // missing attribute: false, with an error
            ("NOT (missing = 'x')", false), // the error's zero value is false, NOT of an error too
            ("1 / 0 = 0", false),     // math error
            ("'abc'", false),         // not a Boolean, and no cast makes it one
            ("'true'", true),         // cast to Boolean, as the reference does
            ("'TRUE'", true),
            ("'false'", false),
            ("1", false),
            ("LENGTH(region) = 7", true),
        ];
        for (expression, expected) in cases {
            let filter = Filter::compile(&Egress {
                dialected_filter: vec![cesql(expression)],
                ..Default::default()
            })
            .unwrap();
            assert_eq!(filter.matches(&e), expected, "{expression}");
        }
        let nested = any(vec![
            cesql("region = 'us'"),
            exact(&[("region", "eu-west")]),
        ]);
        assert!(Filter::compile(&Egress {
            dialected_filter: vec![nested],
            ..Default::default()
        })
        .unwrap()
        .matches(&e));
    }

    #[test]
    fn unusable_filters_are_reported() {
        let egress = |f| Egress {
            dialected_filter: vec![f],
            ..Default::default()
        };
        let err = Filter::compile(&egress(any(vec![cesql("a = ")]))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid CESQL expression 'a = ': CESQL parse error"),
            "{err}"
        );
        assert_eq!(
            Filter::compile(&egress(DialectedFilter { filter: None })),
            Err(FilterError::Empty)
        );
    }
}
