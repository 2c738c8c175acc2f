//! Consumer groups pinned at their start before their object is Ready.
//!
//! The reference's control plane commits a new trigger's initial offsets
//! before it marks the trigger Ready; so does Ferry's. Otherwise the
//! dispatcher pins a group at `latest` only when it adds the egress, a
//! moment after the contract is written, and an event accepted in between
//! (by a producer that waited for Ready) is passed over. The controller's
//! Kafka workers pin each group once; until one reports it, the object
//! (Trigger, Subscription, KafkaSource) is not Ready.

use std::collections::{BTreeMap, HashMap, HashSet};

use ferry_common::{
    group_start::{start_point, Point},
    kafka::ClusterRef,
};
use ferry_proto::{Egress, Reference, Resource};

use super::{Ready, Status};

/// Why an object with an egress is not Ready yet (the reference's
/// condition reason for the same wait).
pub const NOT_COMMITTED: &str = "InitialOffsetsNotCommitted";

/// One consumer group on one topic, and where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupStart {
    pub group: String,
    pub topic: String,
    pub start: Point,
}

/// What each group's pin came to, by cluster: done, or why not.
pub type Pins = HashMap<(ClusterRef, GroupStart), Result<(), String>>;

/// The groups of the contract's egresses, by cluster.
pub fn wanted(resources: &[Resource]) -> BTreeMap<ClusterRef, Vec<GroupStart>> {
    let mut wanted: BTreeMap<ClusterRef, Vec<GroupStart>> = BTreeMap::new();
    for resource in resources {
        let groups = wanted.entry(ClusterRef::of(resource)).or_default();
        groups.extend(egress_groups(resource).map(|(_, group)| group));
    }
    wanted
}

/// Each egress of `resource` with its groups: one per topic of the
/// resource (a KafkaSource may read several).
fn egress_groups(resource: &Resource) -> impl Iterator<Item = (&Egress, GroupStart)> {
    resource.egresses.iter().flat_map(move |egress| {
        let start = start_point(resource, egress);
        resource.topics.iter().map(move |topic| {
            let group = GroupStart {
                group: egress.consumer_group.clone(),
                topic: topic.clone(),
                start,
            };
            (egress, group)
        })
    })
}

/// An object's kind, namespace and name, as statuses are keyed.
type ObjectKey<'a> = (&'a str, &'a str, &'a str);

fn key_of(r: &Reference) -> ObjectKey<'_> {
    (r.kind.as_str(), r.namespace.as_str(), r.name.as_str())
}

/// The statuses, with each Ready object whose groups are not all pinned
/// shown not Ready, with the reason, and so each such subscriber in its
/// channel's `status.subscribers` (what Knative's core makes a
/// Subscription's readiness of).
pub fn hold(statuses: &mut [Status], resources: &[Resource], pins: &Pins) {
    let mut objects: HashMap<ObjectKey, String> = HashMap::new();
    let mut subscribers: HashMap<(ObjectKey, &str), String> = HashMap::new();
    for resource in resources {
        let cluster = ClusterRef::of(resource);
        for (egress, group) in egress_groups(resource) {
            let pin = pins.get(&(cluster.clone(), group.clone()));
            let why = match pin {
                Some(Ok(())) => continue,
                Some(Err(why)) => format!(
                    "cannot commit the initial offsets of consumer group {} on {}: {why}",
                    group.group, group.topic
                ),
                None => format!(
                    "committing the initial offsets of consumer group {} on {}",
                    group.group, group.topic
                ),
            };
            if let Some(owner) = &resource.reference {
                let subscriber = (key_of(owner), egress.uid.as_str());
                subscribers.entry(subscriber).or_insert_with(|| why.clone());
            }
            if let Some(object) = &egress.reference {
                objects.entry(key_of(object)).or_insert(why);
            }
        }
    }
    for status in statuses.iter_mut() {
        let key = (
            status.kind.as_str(),
            status.namespace.as_str(),
            status.name.as_str(),
        );
        let why = objects.get(&key).cloned();
        for subscriber in &mut status.subscribers {
            if let Some(why) = subscribers.get(&(key, subscriber.uid.as_str())) {
                if subscriber.ready == Ready::True {
                    subscriber.ready = Ready::False;
                    subscriber.message = why.clone();
                }
            }
        }
        if let (Some(why), Ready::True) = (why, status.ready) {
            status.ready = Ready::False;
            status.reason = NOT_COMMITTED.to_owned();
            status.message = why;
        }
    }
}

/// Whether Kafka answered (yes or no) for every group of the contract's
/// egresses: the controller is not ready before.
pub fn all_answered(resources: &[Resource], pins: &Pins) -> bool {
    resources.iter().all(|resource| {
        let cluster = ClusterRef::of(resource);
        egress_groups(resource).all(|(_, group)| pins.contains_key(&(cluster.clone(), group)))
    })
}

/// Pins of groups no longer wanted are forgotten: a trigger made again
/// under the same name is pinned again.
pub fn forget_unwanted(pins: &mut Pins, wanted: &BTreeMap<ClusterRef, Vec<GroupStart>>) {
    let wanted: HashSet<(&ClusterRef, &GroupStart)> = wanted
        .iter()
        .flat_map(|(cluster, groups)| groups.iter().map(move |g| (cluster, g)))
        .collect();
    pins.retain(|(cluster, group), _| wanted.contains(&(cluster, group)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SubscriberStatus;

    fn object(kind: &str, name: &str) -> Reference {
        Reference {
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn resource(kind: &str, topics: &[&str], egresses: Vec<Egress>) -> Resource {
        Resource {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            bootstrap_servers: "kafka:9092".into(),
            reference: Some(object(kind, "owner")),
            egresses,
            ..Default::default()
        }
    }

    fn egress(group: &str, object: Option<Reference>) -> Egress {
        Egress {
            consumer_group: group.into(),
            reference: object,
            ..Default::default()
        }
    }

    fn ready(kind: &str, name: &str) -> Status {
        let mut status = Status::new(kind, "ns", name);
        status.ready = Ready::True;
        status
    }

    #[test]
    fn an_object_is_ready_once_every_group_of_it_is_pinned() {
        let resources = [
            resource(
                "Broker",
                &["broker-topic"],
                vec![
                    egress("g-t1", Some(object("Trigger", "t1"))),
                    egress("g-t2", Some(object("Trigger", "t2"))),
                    egress("g-uid", None),
                ],
            ),
            resource(
                "KafkaSource",
                &["a", "b"],
                vec![egress("g-src", Some(object("KafkaSource", "owner")))],
            ),
        ];
        let wanted = wanted(&resources);
        let groups: Vec<(&str, &str, Point)> = wanted
            .values()
            .flatten()
            .map(|g| (g.group.as_str(), g.topic.as_str(), g.start))
            .collect();
        // A trigger starts at the end, a KafkaSource at the beginning.
        assert_eq!(
            groups,
            [
                ("g-t1", "broker-topic", Point::Latest),
                ("g-t2", "broker-topic", Point::Latest),
                ("g-uid", "broker-topic", Point::Latest),
                ("g-src", "a", Point::Earliest),
                ("g-src", "b", Point::Earliest),
            ]
        );
        let cluster = wanted.keys().next().unwrap().clone();
        let key = |group: &str, topic: &str, start| {
            let group = GroupStart {
                group: group.into(),
                topic: topic.into(),
                start,
            };
            (cluster.clone(), group)
        };
        let mut pins = Pins::new();
        pins.insert(key("g-t1", "broker-topic", Point::Latest), Ok(()));
        pins.insert(
            key("g-t2", "broker-topic", Point::Latest),
            Err("coordinator not available".into()),
        );
        // One topic of the source's two.
        pins.insert(key("g-src", "a", Point::Earliest), Ok(()));

        let mut statuses = vec![
            ready("Trigger", "t1"),
            ready("Trigger", "t2"),
            ready("KafkaSource", "owner"),
            ready("Broker", "owner"),
        ];
        hold(&mut statuses, &resources, &pins);
        assert!(!all_answered(&resources, &pins));
        let shown: Vec<(&str, Ready, &str)> = statuses
            .iter()
            .map(|s| (s.name.as_str(), s.ready, s.reason.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("t1", Ready::True, ""),
                ("t2", Ready::False, NOT_COMMITTED),
                ("owner", Ready::False, NOT_COMMITTED),
                ("owner", Ready::True, ""),
            ]
        );
        assert!(statuses[1].message.contains("coordinator not available"));
        assert!(statuses[2].message.contains("on b"));

        // Every group answered, one with an error: held, and settled.
        pins.insert(key("g-src", "b", Point::Earliest), Ok(()));
        pins.insert(key("g-uid", "broker-topic", Point::Latest), Ok(()));
        let mut statuses = vec![ready("Trigger", "t2")];
        hold(&mut statuses, &resources, &pins);
        assert!(all_answered(&resources, &pins));
        assert_eq!(statuses[0].reason, NOT_COMMITTED);

        pins.insert(key("g-t2", "broker-topic", Point::Latest), Ok(()));
        let mut statuses = vec![ready("Trigger", "t2"), ready("KafkaSource", "owner")];
        hold(&mut statuses, &resources, &pins);
        assert!(all_answered(&resources, &pins));
        assert!(statuses.iter().all(|s| s.ready == Ready::True));

        // A group no longer wanted is forgotten, to be pinned again.
        forget_unwanted(&mut pins, &super::wanted(&resources[..1]));
        assert_eq!(pins.len(), 3);
    }

    #[test]
    fn a_channels_subscriber_is_ready_once_its_group_is_pinned() {
        let subscriber = Egress {
            consumer_group: "kafka.ns.ch.sub-uid".into(),
            uid: "sub-uid".into(),
            ..Default::default()
        };
        let resources = [resource("KafkaChannel", &["ch-topic"], vec![subscriber])];
        let channel = || {
            let mut status = ready("KafkaChannel", "owner");
            status.subscribers.push(SubscriberStatus {
                name: String::new(),
                uid: "sub-uid".into(),
                observed_generation: Some(2),
                ready: Ready::True,
                message: String::new(),
            });
            status
        };
        let mut pins = Pins::new();
        let mut statuses = vec![channel()];
        hold(&mut statuses, &resources, &pins);
        assert!(!all_answered(&resources, &pins));
        // The channel itself is Ready; its subscriber is not yet.
        assert_eq!(statuses[0].ready, Ready::True);
        assert_eq!(statuses[0].subscribers[0].ready, Ready::False);
        assert!(statuses[0].subscribers[0]
            .message
            .contains("kafka.ns.ch.sub-uid"));

        let (cluster, groups) = wanted(&resources).into_iter().next().unwrap();
        pins.insert((cluster, groups[0].clone()), Ok(()));
        let mut statuses = vec![channel()];
        hold(&mut statuses, &resources, &pins);
        assert!(all_answered(&resources, &pins));
        assert_eq!(statuses[0].subscribers[0].ready, Ready::True);
    }
}
