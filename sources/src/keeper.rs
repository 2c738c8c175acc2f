//! Keeps one task per source of the current work: a new source gets a task,
//! a changed one a fresh task (its old one stopped first), a removed one's
//! task is stopped and waited for.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Work, WorkRx};

/// Runs until `stop`: `select` picks the kind's sources from the work,
/// `key` names one, `start` spawns its task, which ends when its token is
/// cancelled.
pub async fn keep<S: Clone + PartialEq>(
    mut work: WorkRx,
    select: impl Fn(&Work) -> &[S],
    key: impl Fn(&S) -> String,
    start: impl Fn(S, CancellationToken) -> JoinHandle<()>,
    stop: CancellationToken,
) {
    let mut running: HashMap<String, (S, CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted = select(&work.borrow_and_update()).to_vec();
        let mut kept = HashMap::new();
        for source in wanted {
            let name = key(&source);
            match running.remove(&name) {
                Some(same) if same.0 == source => {
                    kept.insert(name, same);
                }
                old => {
                    if let Some(old) = old {
                        halt(old).await;
                    }
                    let token = stop.child_token();
                    let task = start(source.clone(), token.clone());
                    kept.insert(name, (source, token, task));
                }
            }
        }
        for (_, gone) in running.drain() {
            halt(gone).await;
        }
        running = kept;
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = work.changed() => if changed.is_err() { break },
        }
    }
    for (_, left) in running.drain() {
        halt(left).await;
    }
}

async fn halt<S>((_, token, task): (S, CancellationToken, JoinHandle<()>)) {
    token.cancel();
    let _ = task.await;
}
