//! Wake-ups when a directory's contents change, for the contract follower
//! and the controller's resource folder.

use std::path::Path;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches `dir` (not recursively). The receiver gets a wake-up after
/// changes; bursts fold into one. Keep the watcher: dropping it stops them.
pub fn watch_dir(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A full channel already holds a wake-up, so a failed send loses
        // nothing.
        if event.is_ok_and(|e| is_change(&e)) {
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// Reading the files is an event too; reacting to it would make every
/// reader wake itself up forever.
fn is_change(event: &notify::Event) -> bool {
    !event.kind.is_access()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, CreateKind, EventKind, ModifyKind, RemoveKind};
        let event = |kind| notify::Event::new(kind);
        assert!(!is_change(&event(EventKind::Access(AccessKind::Read))));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Any))));
        assert!(is_change(&event(EventKind::Create(CreateKind::File))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Any))));
        assert!(is_change(&event(EventKind::Remove(RemoveKind::File))));
    }

    #[tokio::test]
    async fn a_write_wakes() {
        let dir = tempfile::tempdir().unwrap();
        let (_watcher, mut woken) = watch_dir(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), b"y").unwrap();
        tokio::time::timeout(Duration::from_secs(10), woken.recv())
            .await
            .expect("a write wakes")
            .unwrap();
    }
}
