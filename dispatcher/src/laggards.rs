//! Egresses that fell behind their topic's reader: when one is detached
//! from the reader, where its catch-up consumer (see `catch_up`) reads,
//! and when it rejoins the reader.

use std::{collections::HashMap, sync::Arc};

use ferry_common::kafka::ConsumerSettings;
use tokio::sync::mpsc;

use crate::{
    catch_up::{CatchUp, Fetched},
    lanes::EgressLanes,
    metrics::Metrics,
};

/// The catch-up consumers of a reader's egresses, by egress key.
pub struct Laggards {
    running: HashMap<Arc<str>, CatchUp>,
    consumer: ConsumerSettings,
    /// Records a catch-up consumer may hand over before they are done.
    window: usize,
    out: mpsc::UnboundedSender<Fetched>,
    metrics: Metrics,
}

impl Laggards {
    pub fn new(
        consumer: ConsumerSettings,
        window: usize,
        out: mpsc::UnboundedSender<Fetched>,
        metrics: Metrics,
    ) -> Self {
        Laggards {
            running: HashMap::new(),
            consumer,
            window,
            out,
            metrics,
        }
    }

    /// Egresses that hold the reader back while others could go on get
    /// a catch-up consumer of their own; false when none was detached
    /// because they are all as full.
    pub fn detach<'a>(&mut self, egresses: impl Iterator<Item = &'a mut EgressLanes>) -> bool {
        let mut egresses: Vec<_> = egresses.collect();
        if egresses.iter().all(|e| e.holds_reader(self.window)) {
            return false; // holding back nobody
        }
        for egress in egresses.iter_mut() {
            // One waiting for the budget is not slow; the topic is busy.
            if !egress.holds_reader(self.window) || egress.starved {
                continue;
            }
            for lane in egress.lanes.values_mut() {
                lane.behind = true;
            }
            self.follow(egress);
        }
        true
    }

    /// Starts, moves or stops the egress's catch-up consumer to match its
    /// lanes behind the reader.
    pub fn follow(&mut self, egress: &mut EgressLanes) {
        let behind = egress.behind();
        if behind.is_empty() {
            self.running.remove(&egress.key);
            return;
        }
        if let Some(catch_up) = self.running.get(&egress.key) {
            catch_up.reposition(behind);
            return;
        }
        match CatchUp::start(
            &egress.spec,
            egress.key.clone(),
            &self.consumer,
            behind,
            self.window,
            self.out.clone(),
            self.metrics.consumer_opened("catch_up"),
        ) {
            Ok(catch_up) => {
                self.running.insert(egress.key.clone(), catch_up);
            }
            Err(error) => {
                // It stays with the reader, holding it back, and is tried
                // again after `detach_after`.
                tracing::error!(egress = %egress.spec.name, %error, "cannot start a catch-up consumer");
                for lane in egress.lanes.values_mut() {
                    lane.behind = false;
                }
            }
        }
    }

    /// Moves or stops the egress's catch-up consumer after its lanes
    /// changed under it (a revocation), starting none.
    pub fn settle(&mut self, egress: &EgressLanes) {
        let behind = egress.behind();
        if behind.is_empty() {
            self.running.remove(&egress.key);
        } else if let Some(catch_up) = self.running.get(&egress.key) {
            catch_up.reposition(behind);
        }
    }

    /// Lanes behind that reached the reader's position (`next`) go back
    /// to the reader's records (see [`EgressLanes::rejoin`]).
    pub fn rejoin(&mut self, egress: &mut EgressLanes, next: &HashMap<i32, i64>) {
        if !self.running.contains_key(&egress.key) || !egress.rejoin(next, self.window) {
            return;
        }
        if egress.behind().is_empty() {
            tracing::info!(egress = %egress.spec.name, "egress is back with its topic's reader");
        }
        self.settle(egress);
    }

    /// One record the egress's catch-up consumer handed over is done.
    pub fn give_back(&self, key: &str) {
        if let Some(catch_up) = self.running.get(key) {
            catch_up.give_back(1);
        }
    }

    /// Stops the egress's catch-up consumer, if it has one.
    pub fn stop(&mut self, key: &str) {
        self.running.remove(key);
    }
}
