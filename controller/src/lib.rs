//! Ferry's control plane.
//!
//! - [`resources`]: Knative objects as users write them.
//! - [`plan`]: the reconciler's decisions (pure).
pub mod duration;
pub mod plan;
pub mod resources;
