//! What the dispatcher does for one egress (Trigger or Subscription),
//! resolved from the contract once per load. Pure.

use std::time::Duration;

use ferry_proto::{
    egress::ReplyStrategy, BackoffPolicy, Contract, DeliveryOrder, EgressConfig, InitialOffset,
    Resource,
};

pub use ferry_common::group_start::Point;
use ferry_common::{
    contract::{self, Placement},
    group_start,
    kafka::Cluster,
    metrics::{self, Labels},
    secrets::Resolved,
};

use crate::{filter::Filter, plain::PlainRecords, retry::RetryPolicy, tokens::Account};

/// Where a subscriber's reply goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Back into the resource's own topic.
    ToTopic,
    /// Posted to this URL.
    Url(http::Uri),
    Discard,
}

/// Where delivery goes and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub retry: RetryPolicy,
    /// Per attempt.
    pub timeout: Duration,
    pub dead_letter: Option<http::Uri>,
    /// The CA certificates the dead-letter sink names (PEM).
    pub dead_letter_ca: Option<String>,
    /// The audience of the token the dead-letter sink requires.
    pub dead_letter_audience: Option<String>,
    /// Structured mode (`format: json`) instead of binary.
    pub structured: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EgressSpec {
    /// The egress's uid, or its consumer group when it has none.
    pub key: String,
    /// `namespace/name` of the object behind it, for logs and metrics.
    pub name: String,
    /// Its kind (`Trigger`, `Subscription`), `Egress` when the contract
    /// does not say.
    pub kind: String,
    /// Its metric labels.
    pub labels: Labels,
    pub consumer_group: String,
    pub topic: String,
    /// The resource's cluster, with its credentials (replies are written
    /// there too).
    pub cluster: Cluster,
    /// The resource's topic for replies.
    pub destination: http::Uri,
    /// The CA certificates the destination names (PEM), for HTTPS.
    pub destination_ca: Option<String>,
    pub reply: Reply,
    /// The CA certificates a reply URL names.
    pub reply_ca: Option<String>,
    /// The audiences of the tokens the destination and a reply URL require.
    pub destination_audience: Option<String>,
    pub reply_audience: Option<String>,
    /// Whose tokens deliveries carry (`oidcServiceAccountName`).
    pub account: Option<Account>,
    /// Its own limit on deliveries at once (`delivery.ferry.dev/max-in-flight`);
    /// 0: the dispatcher's window.
    pub max_in_flight: usize,
    pub filter: Filter,
    pub delivery: Delivery,
    pub order: Order,
    /// Takes no records: its position stays where it is.
    pub paused: bool,
    /// The resource's `cloudEventOverrides`: extensions set on every event
    /// delivered, whoever wrote the record, as the reference's dispatcher
    /// does.
    pub overrides: Vec<(String, String)>,
    /// The `Kn-Namespace` header subscribers get: the egress's namespace.
    pub namespace: Option<http::HeaderValue>,
    /// The resource whose EventTypes replies written to its topic make,
    /// when the contract asks for them.
    pub event_types: Option<ferry_proto::Reference>,
    /// A KafkaSource's: records that are not CloudEvents are made into
    /// events instead of skipped.
    pub plain_records: Option<PlainRecords>,
    /// Where a consumer group without positions starts (`Latest`: the end
    /// of the topic as of now).
    pub start: Point,
    /// A move of its positions, done once per id.
    pub replay: Option<Replay>,
}

/// The order deliveries keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Up to the window at once.
    Unordered,
    /// One at a time per partition, in offset order.
    Ordered,
    /// One at a time per record key in offset order; keys concurrently.
    ByKey,
}

/// A move of an egress's positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    pub id: String,
    pub to: Point,
}

/// Settings for what the contract leaves unset.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub bootstrap: String,
    pub timeout: Duration,
    pub retry_after_max: Duration,
}

/// An egress left out, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub key: String,
    pub reason: String,
}

/// Every egress of the contract that can run, and the ones that cannot.
pub fn resolve(
    contract: &Contract,
    defaults: &Defaults,
    credentials: &Resolved,
) -> (Vec<EgressSpec>, Vec<Rejected>) {
    let mut specs = Vec::new();
    let mut rejected = Vec::new();
    for resource in &contract.resources {
        for egress in &resource.egresses {
            let key = if egress.uid.is_empty() {
                egress.consumer_group.clone()
            } else {
                egress.uid.clone()
            };
            let spec = match spec(resource, egress, defaults, credentials, &key) {
                Ok(spec) => spec,
                Err(reason) => {
                    rejected.push(Rejected { key, reason });
                    continue;
                }
            };
            // A KafkaSource may read several topics: the egress runs on
            // each topic's reader, under a key of its own there.
            let more: Vec<EgressSpec> = (resource.topics.iter().skip(1))
                .filter(|t| !t.is_empty())
                .map(|topic| EgressSpec {
                    key: format!("{key}@{topic}"),
                    topic: topic.clone(),
                    ..spec.clone()
                })
                .collect();
            specs.push(spec);
            specs.extend(more);
        }
    }
    (specs, rejected)
}

fn spec(
    resource: &Resource,
    egress: &ferry_proto::Egress,
    defaults: &Defaults,
    credentials: &Resolved,
    key: &str,
) -> Result<EgressSpec, String> {
    if egress.consumer_group.is_empty() {
        return Err("no consumer group".into());
    }
    let placement = contract::placement(resource, &defaults.bootstrap)?;
    let cluster = contract::cluster(resource, &placement, credentials)?;
    let Placement { topic, .. } = placement;
    let destination = url("destination", &egress.destination)?;
    let reply = match &egress.reply_strategy {
        Some(ReplyStrategy::ReplyUrl(u)) => Reply::Url(url("replyUrl", u)?),
        // Knative's trigger reconciler sets no strategy; the reference then
        // replies to the resource's topic.
        Some(ReplyStrategy::ReplyToOriginalTopic(_)) | None => Reply::ToTopic,
        Some(ReplyStrategy::DiscardReply(_)) => Reply::Discard,
    };
    let filter = Filter::compile(egress).map_err(|e| e.to_string())?;
    // The egress's settings replace the resource's; fields are not merged.
    let config = egress
        .egress_config
        .as_ref()
        .or(resource.egress_config.as_ref());
    let mut delivery = delivery(config, defaults).map_err(|e| e.to_string())?;
    delivery.retry = delivery
        .retry
        .capped(Duration::from_millis(egress.backoff_max));
    let name = contract::display_name(egress.reference.as_ref(), key);
    let kind = egress
        .reference
        .as_ref()
        .map(|r| r.kind.as_str())
        .filter(|k| !k.is_empty())
        .unwrap_or("Egress")
        .to_owned();
    let labels =
        metrics::egress_labels(egress.reference.as_ref(), resource.reference.as_ref(), key);
    let mut overrides: Vec<(String, String)> = resource
        .cloud_event_overrides
        .iter()
        .flat_map(|o| o.extensions.iter())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    overrides.sort();
    if let Some((name, _)) = overrides
        .iter()
        .find(|(name, _)| !ferry_event::is_valid_name(name))
    {
        return Err(format!(
            "cloudEventOverrides: invalid extension name '{name}'"
        ));
    }
    let namespace = egress
        .reference
        .as_ref()
        .and_then(|r| http::HeaderValue::from_str(&r.namespace).ok())
        .filter(|n| !n.is_empty());
    let event_types = resource
        .reference
        .clone()
        .filter(|_| contract::autocreates(resource));
    let plain_records = resource
        .reference
        .as_ref()
        .filter(|r| r.kind == contract::KAFKA_SOURCE)
        .map(|r| PlainRecords {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            key_type: egress.key_type(),
        });
    let start = group_start::start_point(resource, egress);
    Ok(EgressSpec {
        plain_records,
        start,
        event_types,
        key: key.to_owned(),
        name,
        kind,
        labels,
        consumer_group: egress.consumer_group.clone(),
        topic: topic.to_owned(),
        cluster,
        destination,
        destination_ca: non_empty(&egress.destination_ca_certs),
        reply,
        reply_ca: non_empty(&egress.reply_url_ca_certs),
        destination_audience: non_empty(&egress.destination_audience),
        max_in_flight: egress.max_in_flight as usize,
        reply_audience: non_empty(&egress.reply_url_audience),
        account: non_empty(&egress.oidc_service_account_name).map(|name| Account {
            namespace: (egress.reference.as_ref().or(resource.reference.as_ref()))
                .map(|r| r.namespace.clone())
                .unwrap_or_default(),
            name,
        }),
        filter,
        delivery,
        order: match egress.delivery_order() {
            _ if egress.ordered_by_key => Order::ByKey,
            DeliveryOrder::Ordered => Order::Ordered,
            DeliveryOrder::Unordered => Order::Unordered,
        },
        paused: egress.paused,
        replay: replay(egress.replay.as_ref())?,
        overrides,
        namespace,
    })
}

fn replay(replay: Option<&ferry_proto::Replay>) -> Result<Option<Replay>, String> {
    use ferry_proto::replay::To;
    let Some(replay) = replay else {
        return Ok(None);
    };
    let to = match replay.to {
        Some(To::Time(ms)) => Point::Time(ms),
        Some(To::Offset(o)) if o == InitialOffset::Earliest as i32 => Point::Earliest,
        Some(To::Offset(o)) if o == InitialOffset::Latest as i32 => Point::Latest,
        _ => {
            return Err(format!(
                "replay '{}': no time or offset to go to",
                replay.id
            ))
        }
    };
    if replay.id.is_empty() {
        return Err("replay without an id".into());
    }
    Ok(Some(Replay {
        id: replay.id.clone(),
        to,
    }))
}

fn delivery(config: Option<&EgressConfig>, defaults: &Defaults) -> Result<Delivery, String> {
    let default = EgressConfig::default();
    let config = config.unwrap_or(&default);
    let policy =
        BackoffPolicy::try_from(config.backoff_policy).unwrap_or(BackoffPolicy::Exponential);
    let retry = RetryPolicy::new(
        config.retry,
        policy,
        Duration::from_millis(config.backoff_delay),
        defaults.retry_after_max,
    );
    let timeout = if config.timeout == 0 {
        defaults.timeout
    } else {
        Duration::from_millis(config.timeout)
    };
    let dead_letter = match config.dead_letter.as_str() {
        "" => None,
        u => Some(url("deadLetter", u)?),
    };
    let structured = match config.format.as_str() {
        "" | "binary" => false,
        "json" => true,
        other => {
            return Err(format!(
                "unknown format '{other}' (expected json or binary)"
            ))
        }
    };
    Ok(Delivery {
        retry,
        timeout,
        dead_letter,
        dead_letter_ca: non_empty(&config.dead_letter_ca_certs),
        dead_letter_audience: non_empty(&config.dead_letter_audience),
        structured,
    })
}

fn non_empty(text: &str) -> Option<String> {
    Some(text.to_owned()).filter(|t| !t.trim().is_empty())
}

fn url(field: &str, value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("{field} '{value}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => Ok(uri),
        Some(other) => Err(format!(
            "{field} '{value}': scheme '{other}' is not supported (use http or https)"
        )),
        None => Err(format!("{field} '{value}' is not an absolute URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{Egress, Empty, Reference};

    fn defaults() -> Defaults {
        Defaults {
            bootstrap: "k:9092".into(),
            timeout: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
        }
    }

    fn resource(egresses: Vec<Egress>) -> Resource {
        Resource {
            uid: "b".into(),
            topics: vec!["knative-broker-ns-b".into()],
            egress_config: Some(EgressConfig {
                retry: 3,
                backoff_delay: 100,
                dead_letter: "http://dls.ns".into(),
                ..Default::default()
            }),
            egresses,
            ..Default::default()
        }
    }

    fn egress(uid: &str) -> Egress {
        Egress {
            uid: uid.into(),
            consumer_group: format!("knative-trigger-ns-{uid}"),
            destination: "http://sub.ns/path".into(),
            reply_strategy: Some(ReplyStrategy::ReplyToOriginalTopic(Empty {})),
            reference: Some(Reference {
                namespace: "ns".into(),
                name: uid.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_resource_s_credentials_come_with_its_egresses() {
        use ferry_common::credentials::{Credentials, SecretAuth};
        let auth = |name: &str| SecretAuth::Secret {
            namespace: "ns".into(),
            name: name.into(),
        };
        let mut good = resource(vec![egress("t1")]);
        good.auth = Some(auth("good").to_contract());
        let mut bad = resource(vec![egress("t2")]);
        bad.uid = "c".into();
        bad.auth = Some(auth("bad").to_contract());
        let contract = Contract {
            resources: vec![good, bad],
            ..Default::default()
        };
        let credentials = Credentials::from_data(
            &[
                ("protocol".to_owned(), b"SSL".to_vec()),
                ("user.skip".to_owned(), b"true".to_vec()),
            ]
            .into_iter()
            .collect(),
        )
        .unwrap();
        let resolved: Resolved = [
            (auth("good"), Ok(credentials.clone())),
            (auth("bad"), Err("Secret ns/bad not found".to_owned())),
        ]
        .into_iter()
        .collect();
        let (specs, rejected) = resolve(&contract, &defaults(), &resolved);
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs[0].cluster,
            Cluster {
                bootstrap: "k:9092".into(),
                credentials: Some(credentials)
            }
        );
        assert_eq!(
            rejected,
            [Rejected {
                key: "t2".into(),
                reason: "Secret ns/bad not found".into()
            }]
        );
    }

    #[test]
    fn resolves_with_the_resource_defaults() {
        let contract = Contract {
            resources: vec![resource(vec![egress("t1")])],
            ..Default::default()
        };
        let (specs, rejected) = resolve(&contract, &defaults(), &Resolved::new());
        assert!(rejected.is_empty(), "{rejected:?}");
        let s = &specs[0];
        assert_eq!(s.key, "t1");
        assert_eq!(s.name, "ns/t1");
        assert_eq!(s.topic, "knative-broker-ns-b");
        assert_eq!(s.cluster, Cluster::plain("k:9092"));
        assert_eq!(s.destination, "http://sub.ns/path");
        assert_eq!(s.reply, Reply::ToTopic);
        assert_eq!(s.delivery.retry.retries(), 3);
        assert_eq!(s.delivery.timeout, Duration::from_secs(30));
        assert_eq!(s.delivery.dead_letter.as_ref().unwrap(), "http://dls.ns/");
        assert!(s.order == Order::Unordered && !s.delivery.structured);
    }

    #[test]
    fn an_egress_config_replaces_the_resource_one() {
        let mut e = egress("t1");
        e.egress_config = Some(EgressConfig {
            timeout: 500,
            format: "json".into(),
            ..Default::default()
        });
        e.delivery_order = DeliveryOrder::Ordered as i32;
        let contract = Contract {
            resources: vec![resource(vec![e])],
            ..Default::default()
        };
        let s = &resolve(&contract, &defaults(), &Resolved::new()).0[0];
        assert_eq!(
            s.delivery.retry.retries(),
            0,
            "not merged with the resource's retry"
        );
        assert_eq!(
            s.delivery.dead_letter, None,
            "not merged with the resource's dead letter"
        );
        assert_eq!(s.delivery.timeout, Duration::from_millis(500));
        assert!(s.delivery.structured && s.order == Order::Ordered);
    }

    #[test]
    fn knative_trigger_contracts_reply_to_the_topic_and_may_retry_at_once() {
        // What Knative's own trigger reconciler writes: no reply strategy,
        // and a user's `backoffDelay: PT0S`.
        let mut e = egress("t1");
        e.reply_strategy = None;
        e.egress_config = Some(EgressConfig {
            retry: 2,
            ..Default::default()
        });
        let mut discard = egress("t2");
        discard.reply_strategy = Some(ReplyStrategy::DiscardReply(Empty {}));
        let contract = Contract {
            resources: vec![resource(vec![e, discard])],
            ..Default::default()
        };
        let (specs, rejected) = resolve(&contract, &defaults(), &Resolved::new());
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(specs[0].reply, Reply::ToTopic);
        assert_eq!(specs[0].delivery.retry.retries(), 2);
        assert_eq!(specs[0].delivery.retry.backoff(1), Duration::ZERO);
        assert_eq!(specs[1].reply, Reply::Discard);
    }

    #[test]
    fn bad_egresses_are_rejected_and_the_rest_kept() {
        let bad = |uid: &str, f: fn(&mut Egress)| {
            let mut e = egress(uid);
            f(&mut e);
            e
        };
        let contract = Contract {
            resources: vec![resource(vec![
                egress("good"),
                bad("ftp", |e| e.destination = "ftp://x/y".into()),
                bad("relative", |e| e.destination = "/just/a/path".into()),
                bad("nogroup", |e| e.consumer_group.clear()),
                bad("format", |e| {
                    e.egress_config = Some(EgressConfig {
                        format: "avro".into(),
                        ..Default::default()
                    })
                }),
                bad("reply", |e| {
                    e.reply_strategy = Some(ReplyStrategy::ReplyUrl("not a url".into()))
                }),
            ])],
            ..Default::default()
        };
        let (specs, rejected) = resolve(&contract, &defaults(), &Resolved::new());
        assert_eq!(
            specs.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        let reasons: Vec<_> = rejected
            .iter()
            .map(|r| format!("{}: {}", r.key, r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "ftp: destination 'ftp://x/y': scheme 'ftp' is not supported (use http or https)",
                "relative: destination '/just/a/path' is not an absolute URL",
                "nogroup: no consumer group",
                "format: unknown format 'avro' (expected json or binary)",
                "reply: replyUrl 'not a url' is not a URL: invalid uri character",
            ]
        );
    }
}
