//! `eventing.knative.dev` EventTypes in both shapes Ferry reads: v1beta3
//! (attributes) and v1beta2 (type, source and schema fields, as the
//! reference Kafka broker writes them), read into one.

use serde::Deserialize;

use super::{KReference, Metadata};

/// An attribute an EventType's events carry (v1beta3).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EventAttribute {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventType {
    pub metadata: Metadata,
    /// `v1beta3` or `v1beta2`.
    pub version: &'static str,
    pub reference: Option<KReference>,
    pub description: Option<String>,
    /// v1beta3's attributes; v1beta2's type, source and schema as ones.
    pub attributes: Vec<EventAttribute>,
    /// The spec as written, to hold it immutable.
    pub spec: serde_json::Value,
    /// Set by the reconciler when the spec differs from the one first
    /// seen, which it keeps.
    pub spec_changed: bool,
}

impl EventType {
    /// The value of attribute `name`, when the EventType fixes one.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1beta3Spec {
    #[serde(default)]
    reference: Option<KReference>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    attributes: Vec<EventAttribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1beta2Spec {
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    reference: Option<KReference>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    metadata: Metadata,
    #[serde(default)]
    spec: serde_json::Value,
}

/// Reads an EventType of `version` from its document.
pub fn parse(version: &'static str, document: serde_json::Value) -> serde_json::Result<EventType> {
    let Object { metadata, spec } = serde_json::from_value(document)?;
    let (reference, description, attributes) = match version {
        "v1beta3" => {
            let s: V1beta3Spec = serde_json::from_value(spec.clone())?;
            (s.reference, s.description, s.attributes)
        }
        _ => {
            let s: V1beta2Spec = serde_json::from_value(spec.clone())?;
            let fixed = |name: &str, value: Option<String>| {
                value.map(|value| EventAttribute {
                    name: name.to_owned(),
                    required: true,
                    value: Some(value),
                })
            };
            let attributes = [
                ("type", s.ty),
                ("source", s.source),
                ("dataschema", s.schema),
            ]
            .into_iter()
            .filter_map(|(name, value)| fixed(name, value))
            .collect();
            (s.reference, s.description, attributes)
        }
    };
    Ok(EventType {
        metadata,
        version,
        reference,
        description,
        attributes,
        spec,
        spec_changed: false,
    })
}
