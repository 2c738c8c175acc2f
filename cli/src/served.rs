//! What `ferry standalone` shows of the controller's statuses: each once
//! the data plane serves it. The controller writes the contract, then the
//! statuses; the receiver and the dispatcher follow the contract file on
//! their own, a moment later.
//!
//! - A status waits until the ingress serves the contract published with
//!   it (at most [`SERVED_WITHIN`]), so a Broker shown Ready takes events
//!   at its address at once.
//! - A Trigger, Subscription or KafkaSource is shown Ready only once the
//!   dispatcher has started its egress from the positions of its consumer
//!   group. The controller already holds the Ready until the group's start
//!   is committed (`ferry_controller::group_starts`), which is what makes
//!   an event accepted after Ready reach it; standalone, which runs the
//!   dispatcher, also says Ready only once deliveries can begin.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_controller::{
    plan::{group_starts::NOT_COMMITTED, Ready, Status},
    StatusRx,
};
use ferry_dispatcher::Readiness;

/// How long statuses wait for the ingress to serve their contract.
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// How often a status held for the dispatcher is looked at again: soon
/// after a change, when the dispatcher is about to pin a start; then
/// seldom, for an egress the dispatcher cannot start.
const RECHECK: Duration = Duration::from_millis(10);
const RECHECK_LATER: Duration = Duration::from_millis(250);
const SOON: Duration = Duration::from_secs(2);

pub fn served_statuses(
    mut statuses: StatusRx,
    contract: PathBuf,
    receiver: ferry_receiver::Served,
    dispatcher: Arc<Readiness>,
) -> StatusRx {
    // Nothing is shown before it is served: not even the statuses the
    // controller already has (its first pass may be over by now).
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    tokio::spawn(async move {
        let mut current = Published::default();
        let mut changed_at = Instant::now();
        let mut fresh = true;
        loop {
            if fresh {
                let latest = statuses.borrow_and_update().clone();
                current = Published::read(latest, &contract);
                changed_at = Instant::now();
                let until = changed_at + SERVED_WITHIN;
                while receiver.generation() < current.generation && Instant::now() < until {
                    tokio::time::sleep(RECHECK).await;
                }
            }
            let shown = current.shown(&dispatcher);
            tx.send_if_modified(|old| {
                let changed = **old != *shown;
                if changed {
                    *old = shown;
                }
                changed
            });
            let recheck = if changed_at.elapsed() < SOON {
                RECHECK
            } else {
                RECHECK_LATER
            };
            tokio::select! {
                changed = statuses.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    fresh = true;
                }
                _ = tokio::time::sleep(recheck), if current.held => fresh = false,
            }
        }
    });
    rx
}

/// The controller's latest statuses, and the contract written with them.
#[derive(Default)]
struct Published {
    statuses: Arc<Vec<Status>>,
    generation: u64,
    /// The kind and `namespace/name` of each object with an egress.
    egresses: HashSet<(String, String)>,
    /// Whether the last [`Self::shown`] held a status back.
    held: bool,
}

impl Published {
    fn read(statuses: Arc<Vec<Status>>, contract: &std::path::Path) -> Self {
        let contract = ferry_common::contract::read(contract).unwrap_or_default();
        let egresses = contract
            .resources
            .iter()
            .flat_map(|r| &r.egresses)
            .filter_map(|e| e.reference.as_ref())
            .map(|r| {
                let name = ferry_common::contract::display_name(Some(r), "");
                (r.kind.clone(), name)
            })
            .collect();
        Published {
            statuses,
            generation: contract.generation,
            egresses,
            held: false,
        }
    }

    /// The statuses, with each Ready egress whose start the dispatcher has
    /// not pinned yet shown not Ready.
    fn shown(&mut self, dispatcher: &Readiness) -> Arc<Vec<Status>> {
        let applied = dispatcher.generation() >= self.generation;
        let pinned = |s: &Status| {
            let name = format!("{}/{}", s.namespace, s.name);
            !self.egresses.contains(&(s.kind.clone(), name.clone()))
                || (applied && dispatcher.started(&s.kind, &name) == Some(true))
        };
        self.held = self
            .statuses
            .iter()
            .any(|s| s.ready == Ready::True && !pinned(s));
        if !self.held {
            return self.statuses.clone();
        }
        let statuses = self.statuses.iter().map(|s| {
            if s.ready != Ready::True || pinned(s) {
                return s.clone();
            }
            let mut s = s.clone();
            s.ready = Ready::False;
            // The controller's reason for the same wait.
            s.reason = NOT_COMMITTED.to_owned();
            s.message = "the dispatcher has not started it from its consumer group's positions yet"
                .to_owned();
            s
        });
        Arc::new(statuses.collect())
    }
}
