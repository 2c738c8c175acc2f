//! Ferry's dispatcher.
pub mod egress;
pub mod filter;
pub mod offsets;
pub mod retry;
