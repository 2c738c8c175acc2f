//! Which topics and consumer groups to delete, and since when: what one
//! plan had and the next no longer wants. Pure; the reconciler keeps the
//! table between plans and the Kafka workers do the deleting.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use ferry_common::kafka::ClusterRef;

use crate::kafka_work::Deletion;

/// (cluster, name) pairs.
pub type Names = BTreeSet<(ClusterRef, String)>;

/// Deletions still to do, per cluster, and when each was decided (the
/// workers wait a grace period from then).
pub type Pending = BTreeMap<(ClusterRef, Deletion), Instant>;

/// What a plan holds that Ferry may delete once it is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    /// Topics Ferry created (never an external one).
    pub topics: Names,
    pub groups: Names,
}

/// Brings `pending` up to date after a plan: what `before` owned and the
/// plan no longer wants is to be deleted (keeping when it was first
/// decided); what was to be deleted and is wanted again is not.
pub fn schedule(
    pending: &mut Pending,
    before: &Owned,
    wanted_topics: &Names,
    wanted_groups: &Names,
    now: Instant,
) {
    for (cluster, name) in before.topics.difference(wanted_topics) {
        pending
            .entry((cluster.clone(), Deletion::Topic(name.clone())))
            .or_insert(now);
    }
    for (cluster, name) in before.groups.difference(wanted_groups) {
        pending
            .entry((cluster.clone(), Deletion::Group(name.clone())))
            .or_insert(now);
    }
    pending.retain(|(cluster, deletion), _| match deletion {
        Deletion::Topic(name) => !wanted_topics.contains(&(cluster.clone(), name.clone())),
        Deletion::Group(name) => !wanted_groups.contains(&(cluster.clone(), name.clone())),
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn names(list: &[(&str, &str)]) -> Names {
        list.iter()
            .map(|(c, n)| (ClusterRef::plain(*c), n.to_string()))
            .collect()
    }

    fn topic(cluster: &str, name: &str) -> (ClusterRef, Deletion) {
        (ClusterRef::plain(cluster), Deletion::Topic(name.into()))
    }

    fn group(cluster: &str, name: &str) -> (ClusterRef, Deletion) {
        (ClusterRef::plain(cluster), Deletion::Group(name.into()))
    }

    #[test]
    fn what_a_plan_no_longer_wants_is_deleted_and_what_it_wants_again_is_not() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let before = Owned {
            topics: names(&[("k1", "a"), ("k1", "b"), ("k2", "a")]),
            groups: names(&[("k1", "g1"), ("k1", "g2")]),
        };
        struct Case {
            name: &'static str,
            pending: Vec<((ClusterRef, Deletion), Instant)>,
            topics: Names,
            groups: Names,
            expected: Vec<((ClusterRef, Deletion), Instant)>,
        }
        let cases = [
            Case {
                name: "everything still wanted",
                pending: vec![],
                topics: before.topics.clone(),
                groups: before.groups.clone(),
                expected: vec![],
            },
            Case {
                name: "a topic and a group gone, on their own cluster",
                pending: vec![],
                topics: names(&[("k1", "a"), ("k2", "a")]),
                groups: names(&[("k1", "g1")]),
                expected: vec![(topic("k1", "b"), t1), (group("k1", "g2"), t1)],
            },
            Case {
                name: "a topic gone from one cluster only",
                pending: vec![],
                topics: names(&[("k1", "a"), ("k1", "b")]),
                groups: before.groups.clone(),
                expected: vec![(topic("k2", "a"), t1)],
            },
            Case {
                name: "already pending: decided when first seen gone",
                pending: vec![(topic("k1", "b"), t0)],
                topics: names(&[("k1", "a"), ("k2", "a")]),
                groups: before.groups.clone(),
                expected: vec![(topic("k1", "b"), t0)],
            },
            Case {
                name: "declared again before the workers deleted it",
                pending: vec![(topic("k1", "c"), t0), (group("k1", "g3"), t0)],
                topics: names(&[("k1", "a"), ("k1", "b"), ("k2", "a"), ("k1", "c")]),
                groups: names(&[("k1", "g1"), ("k1", "g2"), ("k1", "g3")]),
                expected: vec![],
            },
            Case {
                name: "pending from an earlier plan, still unwanted",
                pending: vec![(group("k1", "old"), t0)],
                topics: before.topics.clone(),
                groups: before.groups.clone(),
                expected: vec![(group("k1", "old"), t0)],
            },
        ];
        for case in cases {
            let mut pending: Pending = case.pending.into_iter().collect();
            schedule(&mut pending, &before, &case.topics, &case.groups, t1);
            let expected: Pending = case.expected.into_iter().collect();
            assert_eq!(pending, expected, "{}", case.name);
        }
    }

    #[test]
    fn a_topic_and_a_group_of_the_same_name_are_told_apart() {
        let before = Owned {
            topics: names(&[("k", "x")]),
            groups: names(&[("k", "x")]),
        };
        let mut pending = Pending::new();
        let now = Instant::now();
        schedule(
            &mut pending,
            &before,
            &Names::new(),
            &names(&[("k", "x")]),
            now,
        );
        assert_eq!(pending, [(topic("k", "x"), now)].into_iter().collect());
    }
}
