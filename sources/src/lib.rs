//! Ferry's event sources, which run beside the controller rather than in
//! the data plane.
//!
//! - [`schedule`]: a PingSource's cron schedule in its time zone (pure).
//! - [`ping`]: a validated PingSource and the event each tick sends (pure).
//! - [`scheduler`]: the one task that fires every PingSource's ticks.
//! - [`sink`]: sending a source's event to its sink, with retries.

pub mod ping;
pub mod schedule;
pub mod scheduler;
pub mod sink;
