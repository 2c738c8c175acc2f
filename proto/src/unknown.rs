//! Names the fields of a JSON contract that this schema does not know.
//!
//! The generated deserialisers skip unknown fields silently (as Knative's
//! data planes do); this walk exists only so that each skipped name can be
//! logged, which tells an operator the control plane is newer than Ferry.

use std::{collections::HashMap, sync::OnceLock};

use prost::Message;
use prost_types::{field_descriptor_proto::Type, FileDescriptorSet};
use serde_json::Value;

const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/contract.descriptor"));

/// One field of a message, as the JSON mapping sees it.
struct Field {
    /// The message type a value of this field holds, if any.
    message: Option<String>,
    /// A `map<..>` field: its values hold `message`, its keys are free.
    map: bool,
}

/// Message name (`.contract.Egress`) → field name (both the JSON and the
/// proto spelling) → field.
type Schema = HashMap<String, HashMap<String, Field>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let set = FileDescriptorSet::decode(DESCRIPTOR).expect("the build wrote a descriptor");
        let mut schema = Schema::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                add(&mut schema, &format!(".{package}"), message);
            }
        }
        schema
    })
}

fn add(schema: &mut Schema, scope: &str, message: &prost_types::DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        add(schema, &name, nested);
    }
    let map_entries: HashMap<String, Option<String>> = message
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| {
            let value = n
                .field
                .iter()
                .find(|f| f.name() == "value")
                .filter(|f| f.r#type() == Type::Message)
                .map(|f| f.type_name().to_owned());
            (format!("{name}.{}", n.name()), value)
        })
        .collect();
    let mut fields = HashMap::new();
    for field in &message.field {
        let (message, map) = match map_entries.get(field.type_name()) {
            Some(value) => (value.clone(), true),
            None if field.r#type() == Type::Message => (Some(field.type_name().to_owned()), false),
            None => (None, false),
        };
        let json_name = match field.json_name() {
            "" => lower_camel(field.name()),
            n => n.to_owned(),
        };
        for key in [field.name().to_owned(), json_name] {
            fields.insert(
                key,
                Field {
                    message: message.clone(),
                    map,
                },
            );
        }
    }
    schema.insert(name, fields);
}

fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// The paths (`resources[].ingress.futureField`) of every member of a JSON
/// contract that the schema has no field for, sorted, each once. A
/// document that is not a JSON object has none.
pub fn unknown_fields(json: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(schema(), ".contract.Contract", json, "", &mut found);
    found.sort();
    found.dedup();
    found
}

fn walk(schema: &Schema, message: &str, value: &Value, path: &str, found: &mut Vec<String>) {
    let (Value::Object(members), Some(fields)) = (value, schema.get(message)) else {
        return;
    };
    for (name, value) in members {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let Some(field) = fields.get(name) else {
            found.push(here);
            continue;
        };
        let Some(inner) = &field.message else {
            continue;
        };
        match value {
            Value::Array(items) => {
                let here = format!("{here}[]");
                for item in items {
                    walk(schema, inner, item, &here, found);
                }
            }
            Value::Object(entries) if field.map => {
                for entry in entries.values() {
                    walk(schema, inner, entry, &format!("{here}{{}}"), found);
                }
            }
            _ => walk(schema, inner, value, &here, found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unknown_members_at_every_depth() {
        let json: Value = serde_json::from_str(
            r#"{
              "generation": "3",
              "futureTopLevel": 1,
              "resources": [{
                "uid": "r",
                "ingress": {"path": "/a/b", "futureIngress": true},
                "egresses": [
                  {"consumerGroup": "g", "replyToOriginalTopic": {"futureEmpty": 1},
                   "dialectedFilter": [{"all": {"filters": [{"exact": {"attributes": {"type": "t"}}}, {"futureDialect": {}}]}}]},
                  {"consumer_group": "g2", "egressConfig": {"retry": 1, "futureConfig": "x"}}
                ],
                "cloudEventOverrides": {"extensions": {"anything": "goes"}}
              }]
            }"#,
        )
        .unwrap();
        assert_eq!(
            unknown_fields(&json),
            [
                "futureTopLevel",
                // Knative's names are lowerCamelCase in the .proto itself,
                // so there is no snake_case spelling to accept.
                "resources[].egresses[].consumer_group",
                "resources[].egresses[].dialectedFilter[].all.filters[].futureDialect",
                "resources[].egresses[].egressConfig.futureConfig",
                "resources[].egresses[].replyToOriginalTopic.futureEmpty",
                "resources[].ingress.futureIngress",
            ]
        );
    }

    #[test]
    fn a_known_contract_has_none() {
        let json: Value =
            serde_json::from_str(include_str!("../tests/golden/knative-contract.json")).unwrap();
        assert_eq!(unknown_fields(&json), Vec::<String>::new());
    }
}
