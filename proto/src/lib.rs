//! The data-plane contract, generated from `contract.proto`.
//!
//! Messages serialise to binary protobuf with [`prost::Message`] and to the
//! protobuf JSON mapping (the format of Knative's contract ConfigMap) with
//! serde: lowerCamelCase names, enums by name, 64-bit integers as strings.
//! Unknown fields and enum names are skipped when reading, as Knative's data
//! planes do; [`unknown_fields`] names them.

#[allow(clippy::all)] // generated code
mod generated {
    include!(concat!(env!("OUT_DIR"), "/contract.rs"));
    include!(concat!(env!("OUT_DIR"), "/contract.serde.rs"));
}
mod unknown;

pub use generated::*;
pub use prost::{DecodeError, Message};
pub use unknown::unknown_fields;

/// Why bytes are not a contract.
#[derive(Debug)]
pub enum ParseError {
    /// JSON, but not a contract.
    Json(serde_json::Error),
    /// Neither JSON nor a binary contract.
    Binary(DecodeError),
}

/// A contract read from bytes, with the paths of the JSON fields this
/// version does not know (binary protobuf skips them by its nature).
pub struct Parsed {
    pub contract: Contract,
    pub unknown: Vec<String>,
}

/// Parses a contract: JSON when the first non-blank byte is `{`, binary
/// protobuf otherwise. An empty document is the empty contract.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let json: serde_json::Value =
                serde_json::from_slice(bytes).map_err(ParseError::Json)?;
            let unknown = unknown_fields(&json);
            let contract = serde::Deserialize::deserialize(&json).map_err(ParseError::Json)?;
            Ok(Parsed { contract, unknown })
        }
        _ => Ok(Parsed {
            contract: Contract::decode(bytes).map_err(ParseError::Binary)?,
            unknown: Vec::new(),
        }),
    }
}
