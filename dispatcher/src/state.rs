//! What a topic's reader and its rebalance callbacks share: the
//! partitions it holds and where it reads them, each egress's lanes, and
//! the laggards' catch-up consumers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use rdkafka::error::KafkaError;
use tokio::time::Instant;

use crate::{gap::Gaps, laggards::Laggards, lanes::EgressLanes};

pub struct State {
    /// Assigned partitions, and the next offset the reader hands out.
    pub next: HashMap<i32, i64>,
    pub egresses: HashMap<Arc<str>, EgressLanes>,
    pub laggards: Laggards,
    /// Whether the first assignment came: egresses added before it get
    /// their lanes then.
    pub assigned: bool,
    /// Numbers each lane, so that completions of a revoked one are told
    /// apart.
    pub epoch: u64,
    /// When the reader last paused because an egress was full.
    pub paused_since: Option<Instant>,
    /// What a rebalance callback could not do; the reader restarts.
    pub failed: Option<KafkaError>,
    /// Egresses with deliveries waiting for the budget, in turn.
    pub starved: VecDeque<Arc<str>>,
    pub gaps: Gaps,
}

#[derive(Clone)]
pub struct SharedState(Arc<Mutex<State>>);

impl SharedState {
    pub fn new(laggards: Laggards) -> Self {
        SharedState(Arc::new(Mutex::new(State {
            next: HashMap::new(),
            egresses: HashMap::new(),
            laggards,
            assigned: false,
            epoch: 0,
            paused_since: None,
            failed: None,
            starved: VecDeque::new(),
            gaps: Gaps::default(),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("reader state lock")
    }
}
