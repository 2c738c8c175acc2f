//! The EventType Ferry writes for a (type, source) pair an addressable
//! carries: `eventing.knative.dev/v1beta2`, as the reference Kafka broker
//! writes it, referring to and owned by the addressable.

use ferry_proto::Reference;
use serde_json::{json, Value};

use crate::name::event_type_name;

/// One pair, and who carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The addressable (Broker, Channel) whose events carry the pair.
    pub addressable: Reference,
    /// Who owns the EventType: the addressable, or a source that declared
    /// the pair.
    pub owner: Reference,
    pub ty: String,
    pub source: String,
    pub schema: Option<String>,
    pub description: &'static str,
}

/// The reference's description of an EventType made from an event.
pub const AUTO_CREATED: &str = "Event Type auto-created by controller";

impl Observed {
    pub fn name(&self) -> String {
        let a = &self.addressable;
        event_type_name(&self.ty, &self.source, &a.namespace, &a.name)
    }

    /// The object, with `creationTimestamp` set now (the API server sets
    /// its own; a folder keeps this one as when the pair was first seen).
    pub fn object(&self) -> Value {
        let (a, o) = (&self.addressable, &self.owner);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut spec = json!({
            "type": self.ty,
            "source": self.source,
            "reference": {"apiVersion": a.group_version, "kind": a.kind, "name": a.name, "namespace": a.namespace},
            "description": self.description,
        });
        if let Some(schema) = &self.schema {
            spec["schema"] = json!(schema);
        }
        json!({
            "apiVersion": "eventing.knative.dev/v1beta2",
            "kind": "EventType",
            "metadata": {
                "name": self.name(),
                "namespace": a.namespace,
                "creationTimestamp": now,
                "ownerReferences": [{"apiVersion": o.group_version, "kind": o.kind, "name": o.name, "uid": o.uuid}],
            },
            "spec": spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_refers_to_and_is_owned_by_the_broker() {
        let broker = Reference {
            uuid: "b-uid".into(),
            namespace: "ns".into(),
            name: "default".into(),
            kind: "Broker".into(),
            group_version: "eventing.knative.dev/v1".into(),
            ..Default::default()
        };
        let observed = Observed {
            addressable: broker.clone(),
            owner: broker,
            ty: "dev.example.order".into(),
            source: "/shop".into(),
            schema: Some("https://schemas.example/order".into()),
            description: AUTO_CREATED,
        };
        let object = observed.object();
        assert_eq!(object["metadata"]["name"], observed.name());
        assert_eq!(object["metadata"]["namespace"], "ns");
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "b-uid");
        assert_eq!(object["spec"]["type"], "dev.example.order");
        assert_eq!(object["spec"]["schema"], "https://schemas.example/order");
        assert_eq!(object["spec"]["reference"]["kind"], "Broker");
        assert_eq!(object["spec"]["description"], AUTO_CREATED);
    }
}
