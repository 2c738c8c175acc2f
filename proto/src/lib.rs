//! The data-plane contract, generated from `contract.proto`.
//!
//! Messages serialise to binary protobuf with [`prost::Message`] and to the
//! protobuf JSON mapping (the format of Knative's contract ConfigMap) with
//! serde: lowerCamelCase names, enums by name, 64-bit integers as strings.

#![allow(clippy::all)] // generated code

include!(concat!(env!("OUT_DIR"), "/contract.rs"));
include!(concat!(env!("OUT_DIR"), "/contract.serde.rs"));

pub use prost::{DecodeError, Message};
