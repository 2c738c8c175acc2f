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
