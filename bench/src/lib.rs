//! `ferry bench`: Ferry's measuring instrument.
//!
//! - [`load`]: the load generator (keep-alive connections, fixed rate or
//!   as fast as possible).
//! - [`sink`]: the HTTP sink triggers deliver to; counts arrivals per path.
//! - [`report`]: sent, accepted, received, lost, duplicates, latencies.
//! - [`baseline`]: the ceilings: a no-op HTTP server, a raw producer and a
//!   raw consume-and-post relay.
//! - [`gateway`]: the least an HTTP → Kafka ingress can do, as a ceiling.
//! - [`compare`]: the suite run alternately against another build, with ratios.
//! - [`suite`]: the scenarios of BENCHMARKS.md against separate processes
//!   (each scenario in `scenarios`, the processes in `process`).
//! - [`procstat`]: a process's memory, threads and Kafka connections.
//! - [`ticks`]: the sink of the sources scenario: how late each tick came.
//! - `latency`: the end-to-end latency scenario (2), path by path.
//! - `kafka`: the KafkaSink and KafkaSource scenario (10).

mod autocreate;
pub mod baseline;
pub mod compare;
pub mod event;
pub mod gateway;
mod kafka;
mod latency;
pub mod load;
mod process;
pub mod procstat;
pub mod report;
mod scenarios;
mod security;
mod sequence;
pub mod sink;
pub mod suite;
pub mod ticks;
