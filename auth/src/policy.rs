//! EventPolicies as the contract carries them (the control plane has
//! resolved each policy's `from` into token matchers on `sub`): a verified
//! sender may send an event when some policy has a matcher its claims
//! satisfy and the event passes all of that policy's filters. No policy at
//! all admits no one (Knative's `deny-all`; the control plane writes a
//! policy for `allow-all` and `allow-same-namespace`).

use ferry_event::Event;
use ferry_filter::{Filter, FilterError};
use ferry_proto::{token_matcher::Matcher as ProtoMatcher, EventPolicy};

use crate::Claims;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies(Vec<Policy>);

#[derive(Clone, Debug, PartialEq)]
struct Policy {
    matchers: Vec<Matcher>,
    filter: Filter,
}

#[derive(Clone, Debug, PartialEq)]
enum Matcher {
    /// Each claim equals its value.
    Exact(Vec<(String, String)>),
    /// Each claim starts with its value.
    Prefix(Vec<(String, String)>),
}

impl Policies {
    pub fn compile(policies: &[EventPolicy]) -> Result<Policies, FilterError> {
        policies
            .iter()
            .map(|p| {
                Ok(Policy {
                    matchers: p
                        .token_matchers
                        .iter()
                        .filter_map(|m| match m.matcher.as_ref()? {
                            ProtoMatcher::Exact(e) => Some(Matcher::Exact(pairs(&e.attributes))),
                            ProtoMatcher::Prefix(p) => Some(Matcher::Prefix(pairs(&p.attributes))),
                        })
                        .collect(),
                    filter: Filter::all_of(&p.filters)?,
                })
            })
            .collect::<Result<_, _>>()
            .map(Policies)
    }

    /// Whether some policy admits this sender, for some event: checked
    /// before the request's body is read.
    pub fn admits_sender(&self, claims: &Claims) -> bool {
        self.0.iter().any(|p| p.admits_sender(claims))
    }

    /// Whether some policy admits this sender and this event.
    pub fn admits(&self, claims: &Claims, event: &Event) -> bool {
        self.0
            .iter()
            .any(|p| p.admits_sender(claims) && p.filter.matches(event))
    }
}

impl Policy {
    fn admits_sender(&self, claims: &Claims) -> bool {
        self.matchers.iter().any(|m| m.matches(claims))
    }
}

impl Matcher {
    fn matches(&self, claims: &Claims) -> bool {
        let claim = |name: &str| -> Option<String> {
            match claims.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        };
        match self {
            Matcher::Exact(want) => want.iter().all(|(k, v)| claim(k).as_deref() == Some(v)),
            Matcher::Prefix(want) => want
                .iter()
                .all(|(k, v)| claim(k).is_some_and(|c| c.starts_with(v.as_str()))),
        }
    }
}

fn pairs(map: &std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{dialected_filter, DialectedFilter, Exact, Prefix, TokenMatcher};

    fn claims(sub: &str) -> Claims {
        serde_json::json!({"sub": sub}).as_object().unwrap().clone()
    }

    fn matcher(m: ProtoMatcher) -> TokenMatcher {
        TokenMatcher { matcher: Some(m) }
    }

    fn attrs(k: &str, v: &str) -> std::collections::HashMap<String, String> {
        [(k.to_owned(), v.to_owned())].into()
    }

    #[test]
    fn a_sender_and_an_event_are_admitted_by_some_policy() {
        let policies = Policies::compile(&[
            EventPolicy {
                token_matchers: vec![matcher(ProtoMatcher::Exact(Exact {
                    attributes: attrs("sub", "system:serviceaccount:ns:sender"),
                }))],
                filters: vec![],
            },
            EventPolicy {
                token_matchers: vec![matcher(ProtoMatcher::Prefix(Prefix {
                    attributes: attrs("sub", "system:serviceaccount:team:"),
                }))],
                filters: vec![DialectedFilter {
                    filter: Some(dialected_filter::Filter::Exact(Exact {
                        attributes: attrs("type", "allowed"),
                    })),
                }],
            },
        ])
        .unwrap();
        let allowed = Event::new("1", "/s", "allowed");
        let other = Event::new("1", "/s", "other");
        let exact = claims("system:serviceaccount:ns:sender");
        let team = claims("system:serviceaccount:team:any");
        let stranger = claims("system:serviceaccount:elsewhere:x");
        assert!(policies.admits(&exact, &other), "no filters: every event");
        assert!(policies.admits(&team, &allowed));
        assert!(
            !policies.admits(&team, &other),
            "the prefix policy's filter"
        );
        assert!(policies.admits_sender(&team));
        assert!(!policies.admits_sender(&stranger));
        assert!(!policies.admits(&stranger, &allowed));
        assert!(
            !Policies::default().admits_sender(&exact),
            "no policy: no one (deny-all)"
        );
        assert!(!policies.admits_sender(&serde_json::Map::new()), "no sub");
    }
}
