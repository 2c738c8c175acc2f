//! Resources from a folder of YAML files, in the form a user would
//! `kubectl apply`. The folder is watched; every change, every report of
//! Kafka work, and a periodic resync reconcile again.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{annotation_requests, reconciler::Reconciler, resources::Resources};

/// Reads every `.yaml`, `.yml` and `.json` file of the folder.
pub fn load(dir: &Path) -> Resources {
    let mut resources = Resources::default();
    let files = match ferry_common::yaml_folder::files(dir) {
        Ok(files) => files,
        Err(error) => {
            resources.errors.push((
                dir.display().to_string(),
                format!("cannot read the folder: {error}"),
            ));
            return resources;
        }
    };
    for path in files {
        let name = ferry_common::yaml_folder::file_name(&path);
        match std::fs::read_to_string(&path) {
            // YAML is a superset of JSON.
            Ok(text) => resources.add_yaml(&name, &text),
            Err(error) => resources
                .errors
                .push((name, format!("cannot read: {error}"))),
        }
    }
    resources
}

/// Reconciles the folders (the first the user's, then any others, such
/// as standalone's registry, made when missing) until shutdown, with the
/// annotations asked for in `requests` (see `annotation_requests`).
pub async fn run(
    dirs: &[PathBuf],
    requests: Option<PathBuf>,
    mut reconciler: Reconciler,
    resync: Duration,
    shutdown: CancellationToken,
) -> notify::Result<()> {
    let (tx, mut changed) = tokio::sync::mpsc::channel(1);
    let mut watchers = Vec::new();
    let watched: Vec<&PathBuf> = dirs.iter().chain(&requests).collect();
    for (i, dir) in watched.into_iter().enumerate() {
        if i > 0 {
            let _ = std::fs::create_dir_all(dir);
        }
        let (watcher, mut events) = ferry_common::fswatch::watch_dir(dir)?;
        watchers.push(watcher);
        let tx = tx.clone();
        tokio::spawn(async move {
            while events.recv().await.is_some() {
                let _ = tx.try_send(());
            }
        });
    }
    let mut ticker = tokio::time::interval(resync);
    let kafka_reported = reconciler.kafka_reported();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
            _ = kafka_reported.notified() => {}
            Some(()) = changed.recv() => {
                // Editors write in several steps: let a burst settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while changed.try_recv().is_ok() {}
            }
        }
        let mut resources = load(&dirs[0]);
        for dir in &dirs[1..] {
            resources.extend(load(dir));
        }
        if let Some(requests) = &requests {
            annotation_requests::apply(&mut resources, &annotation_requests::load(requests));
        }
        for (source, error) in &resources.errors {
            tracing::warn!(%source, %error, "resource not used");
        }
        reconciler.reconcile(&resources).await;
    }
}
