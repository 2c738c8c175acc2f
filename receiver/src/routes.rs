//! The routing table: which resource a request is for, built once per
//! contract. Pure: the contract in, lookups out.

use std::{collections::HashMap, sync::Arc};

use ferry_auth::Policies;
use ferry_common::{
    contract::{self, Placement},
    kafka::Cluster,
    metrics::{self, ByAnswer, Labels},
    secrets::Resolved,
};
use ferry_event::kafka::ContentMode;
use ferry_proto::{Contract, Reference, Resource};
use prometheus_client::metrics::histogram::Histogram;

/// Where and how one resource's events are written.
#[derive(Debug, PartialEq)]
pub struct Route {
    /// The resource's uid, for logs.
    pub uid: String,
    /// `namespace/name` when the contract names the object, the uid otherwise.
    pub name: String,
    pub topic: String,
    /// The cluster, with the resource's credentials; or why they could not
    /// be read (requests get 503 until they can: the address stays the
    /// resource's).
    pub cluster: Result<Cluster, String>,
    pub mode: ContentMode,
    /// The OIDC audience a sender's token must carry; `None` when the
    /// resource takes unauthenticated requests.
    pub audience: Option<String>,
    /// Who may send what, when there is an audience.
    pub policies: Policies,
    /// The resource's metric labels.
    pub labels: Labels,
    /// Its `kn_eventing_dispatch_latency_ms` series, by answer and type.
    pub latency: ByAnswer<Histogram>,
    /// The addressable whose new (type, source) pairs become EventTypes,
    /// when the contract enables it (`featureFlags.enableEventTypeAutocreate`).
    pub event_types: Option<Reference>,
}

/// A resource left out of the table, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub uid: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Routes {
    by_path: HashMap<String, Arc<Route>>,
    by_host: HashMap<String, Arc<Route>>,
    /// The generation of the contract the table was built from.
    generation: u64,
}

// === impl Routes ===

impl Routes {
    /// The generation of the contract served.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Builds the table. Resources that cannot be served are returned with
    /// the reason, and the rest are served.
    pub fn build(
        contract: &Contract,
        default_bootstrap: &str,
        credentials: &Resolved,
    ) -> (Routes, Vec<Rejected>) {
        let mut routes = Routes {
            generation: contract.generation,
            ..Routes::default()
        };
        let mut rejected = Vec::new();
        // A KafkaSource's resource only has egresses.
        for resource in contract.resources.iter().filter(|r| r.ingress.is_some()) {
            let reject = |reason: String| Rejected {
                uid: resource.uid.clone(),
                reason,
            };
            match route(resource, default_bootstrap, credentials) {
                Err(reason) => rejected.push(reject(reason)),
                Ok((keys, route)) => {
                    let taken = keys.iter().find_map(|key| match key {
                        Key::Path(p) => routes.by_path.get(p).map(|r| (p, r)),
                        Key::Host(h) => routes.by_host.get(h).map(|r| (h, r)),
                    });
                    if let Some((key, existing)) = taken {
                        rejected.push(reject(format!(
                            "ingress '{key}' is already served by resource {}",
                            existing.uid
                        )));
                        continue;
                    }
                    let route = Arc::new(route);
                    for key in keys {
                        match key {
                            Key::Path(p) => routes.by_path.insert(p, route.clone()),
                            Key::Host(h) => routes.by_host.insert(h, route.clone()),
                        };
                    }
                }
            }
        }
        (routes, rejected)
    }

    /// The route for a request path, or else for its host.
    pub fn find(&self, path: &str, host: Option<&str>) -> Option<&Arc<Route>> {
        self.by_path
            .get(normalise_path(path))
            .or_else(|| host.and_then(|h| self.by_host.get(&normalise_host(h))))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_path.values().chain(self.by_host.values())
    }
}

enum Key {
    Path(String),
    Host(String),
}

/// A resource is served at its path, its host, or both (a request's path
/// is looked up first). A path of `/` or none means "by host only", as in
/// the reference, so that every host-routed resource can say `/`.
fn route(
    resource: &Resource,
    default_bootstrap: &str,
    credentials: &Resolved,
) -> Result<(Vec<Key>, Route), String> {
    let ingress = resource.ingress.as_ref().ok_or("no ingress")?;
    let mut keys = Vec::with_capacity(2);
    match normalise_path(&ingress.path) {
        "/" => {}
        path => keys.push(Key::Path(path.to_owned())),
    }
    if !ingress.host.is_empty() {
        keys.push(Key::Host(normalise_host(&ingress.host)));
    }
    if keys.is_empty() {
        return Err("ingress has neither a path nor a host".into());
    }
    let placement = contract::placement(resource, default_bootstrap)?;
    let cluster = contract::cluster(resource, &placement, credentials);
    let Placement { topic, .. } = placement;
    let name = contract::display_name(resource.reference.as_ref(), &resource.uid);
    let mode = match ingress.content_mode() {
        ferry_proto::ContentMode::Binary => ContentMode::Binary,
        ferry_proto::ContentMode::Structured => ContentMode::Structured,
    };
    Ok((
        keys,
        Route {
            uid: resource.uid.clone(),
            name,
            topic: topic.to_owned(),
            cluster,
            mode,
            audience: Some(ingress.audience.clone()).filter(|a| !a.is_empty()),
            policies: Policies::compile(&ingress.event_policies)
                .map_err(|e| format!("eventPolicies: {e}"))?,
            labels: metrics::resource_labels(resource.reference.as_ref(), &resource.uid),
            latency: ByAnswer::default(),
            event_types: resource
                .reference
                .clone()
                .filter(|_| contract::autocreates(resource)),
        },
    ))
}

/// A trailing slash is tolerated.
fn normalise_path(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

/// Host names are case-insensitive; the port is not part of the address.
fn normalise_host(host: &str) -> String {
    let without_port = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    without_port.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::Ingress;

    fn resource(uid: &str, path: &str, host: &str, topic: &str) -> Resource {
        Resource {
            uid: uid.into(),
            topics: if topic.is_empty() {
                vec![]
            } else {
                vec![topic.into()]
            },
            ingress: Some(Ingress {
                path: path.into(),
                host: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn routes_by_path_then_host() {
        let contract = Contract {
            resources: vec![
                resource("b", "/ns/broker", "", "t1"),
                resource("c", "", "ch-kn-channel.ns.svc.cluster.local", "t2"),
            ],
            ..Default::default()
        };
        let (routes, rejected) = Routes::build(&contract, "k:9092", &Resolved::new());
        assert!(rejected.is_empty());
        assert_eq!(routes.find("/ns/broker", None).unwrap().topic, "t1");
        assert_eq!(routes.find("/ns/broker/", Some("x")).unwrap().topic, "t1");
        assert_eq!(
            routes
                .find("/", Some("CH-kn-channel.ns.svc.cluster.local:80"))
                .unwrap()
                .topic,
            "t2"
        );
        assert!(routes.find("/ns/other", Some("x")).is_none());
        assert_eq!(
            routes.find("/ns/broker", None).unwrap().cluster,
            Ok(Cluster::plain("k:9092"))
        );
    }

    #[test]
    fn a_root_path_routes_by_host_only() {
        let contract = Contract {
            resources: vec![
                resource("c", "/", "c-kn-channel.ns.svc.cluster.local", "t1"),
                resource("d", "/", "d-kn-channel.ns.svc.cluster.local", "t2"),
                resource("e", "", "e-kn-channel.ns.svc.cluster.local", "t3"),
            ],
            ..Default::default()
        };
        let (routes, rejected) = Routes::build(&contract, "k:9092", &Resolved::new());
        assert!(rejected.is_empty(), "{rejected:?}");
        for (host, uid) in [
            ("c-kn-channel.ns.svc.cluster.local", "c"),
            ("d-kn-channel.ns.svc.cluster.local", "d"),
            ("e-kn-channel.ns.svc.cluster.local", "e"),
        ] {
            assert_eq!(routes.find("/", Some(host)).unwrap().uid, uid);
        }
        assert!(routes.find("/", Some("other.host")).is_none());
        assert!(routes.find("/", None).is_none());
    }

    #[test]
    fn bad_resources_are_rejected_and_the_rest_served() {
        let contract = Contract {
            resources: vec![
                resource("good", "/ns/good", "", "t"),
                resource("notopic", "/ns/x", "", ""),
                resource("noaddr", "", "", "t"),
                resource("dup", "/ns/good/", "", "t"),
                Resource {
                    uid: "noingress".into(),
                    topics: vec!["t".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (routes, rejected) = Routes::build(&contract, "k:9092", &Resolved::new());
        assert!(routes.find("/ns/good", None).is_some());
        let reasons: Vec<_> = rejected
            .iter()
            .map(|r| (r.uid.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("notopic", "no topic"),
                ("noaddr", "ingress has neither a path nor a host"),
                (
                    "dup",
                    "ingress '/ns/good' is already served by resource good"
                ),
            ],
            "a resource without an ingress (a KafkaSource's) is not the receiver's"
        );
    }

    #[test]
    fn a_channel_is_served_at_its_path_and_its_host() {
        let contract = Contract {
            resources: vec![resource(
                "c",
                "/channels/ns/c",
                "c-kn-channel.ns.svc.cluster.local",
                "t",
            )],
            ..Default::default()
        };
        let (routes, rejected) = Routes::build(&contract, "k:9092", &Resolved::new());
        assert!(rejected.is_empty());
        assert_eq!(routes.find("/channels/ns/c", None).unwrap().uid, "c");
        assert_eq!(
            routes
                .find("/", Some("c-kn-channel.ns.svc.cluster.local"))
                .unwrap()
                .uid,
            "c"
        );
        let clash = Contract {
            resources: vec![
                resource(
                    "c",
                    "/channels/ns/c",
                    "c-kn-channel.ns.svc.cluster.local",
                    "t",
                ),
                resource(
                    "d",
                    "/channels/ns/d",
                    "c-kn-channel.ns.svc.cluster.local",
                    "t",
                ),
            ],
            ..Default::default()
        };
        let (_, rejected) = Routes::build(&clash, "k:9092", &Resolved::new());
        assert_eq!(
            rejected[0].reason,
            "ingress 'c-kn-channel.ns.svc.cluster.local' is already served by resource c"
        );
    }

    #[test]
    fn a_resource_without_its_credentials_keeps_its_address() {
        use ferry_common::credentials::SecretAuth;
        let auth = SecretAuth::Secret {
            namespace: "ns".into(),
            name: "kafka".into(),
        };
        let mut sink = resource("s", "/ns/sink", "", "t");
        sink.auth = Some(auth.to_contract());
        let contract = Contract {
            resources: vec![sink, resource("b", "/ns/b", "", "t")],
            ..Default::default()
        };
        let resolved: Resolved = [(auth, Err("Secret ns/kafka not found".to_owned()))]
            .into_iter()
            .collect();
        let (routes, rejected) = Routes::build(&contract, "k:9092", &resolved);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(
            routes.find("/ns/sink", None).unwrap().cluster,
            Err("Secret ns/kafka not found".to_owned())
        );
        assert_eq!(
            routes.find("/ns/b", None).unwrap().cluster,
            Ok(Cluster::plain("k:9092"))
        );
    }

    #[test]
    fn no_bootstrap_anywhere_is_rejected() {
        let contract = Contract {
            resources: vec![resource("b", "/ns/b", "", "t")],
            ..Default::default()
        };
        let (_, rejected) = Routes::build(&contract, "", &Resolved::new());
        assert_eq!(
            rejected[0].reason,
            "no bootstrap servers in the contract and none configured"
        );
    }
}
