//! Knative's EventType registry, as Ferry keeps it: which (type, source)
//! pairs each addressable carries.
//!
//! - [`name`]: an EventType's name, as the reference Kafka broker makes it.
//! - [`object`]: the EventType it writes (`eventing.knative.dev/v1beta2`).
//! - [`recorder`]: pairs seen on the request path, each new one created
//!   once, in the background.
//! - [`store`]: where EventTypes go: a folder (standalone, beside the
//!   resources it reads) or the Kubernetes API.

pub mod name;
pub mod object;
pub mod recorder;
pub mod store;

pub use recorder::Recorder;
pub use store::Store;
