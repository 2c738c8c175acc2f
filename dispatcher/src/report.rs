//! What became of an event for one egress: what metrics count and
//! `/resources` shows as its last delivery.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Filtered,
    Delivered,
    DeadLettered,
    /// Failed, and no dead-letter sink took it.
    Dropped,
}

impl Report {
    pub fn as_str(self) -> &'static str {
        match self {
            Report::Filtered => "filtered",
            Report::Delivered => "delivered",
            Report::DeadLettered => "dead_lettered",
            Report::Dropped => "dropped",
        }
    }
}
