//! Pairs seen on the request path, each new one made an EventType once.
//! The request path only looks a hash up in a bounded set (and, the first
//! time, queues the pair without waiting); one task creates them. A
//! failure is logged and forgotten after a while, so a later event with
//! the pair tries again; it never fails a request.

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, RwLock},
    time::Duration,
};

use ferry_proto::Reference;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    object::{Observed, AUTO_CREATED},
    store::{Created, Store},
};

/// Pairs remembered; past this the set starts again (a pair seen again
/// costs one create that finds the EventType there).
const SEEN_MAX: usize = 65_536;
/// Pairs waiting for their create; past this a new pair waits for its
/// next event.
const QUEUE: usize = 1024;
/// How long a pair whose create failed is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(5);

type Seen = Arc<RwLock<HashSet<u64>>>;

pub struct Recorder {
    seen: Seen,
    queue: mpsc::Sender<(u64, Observed)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    /// A recorder whose creates go to `store` until `stop`.
    pub fn spawn(store: Store, stop: CancellationToken) -> Arc<Recorder> {
        let seen = Seen::default();
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(create_each(store, pending, seen.clone(), stop));
        Arc::new(Recorder { seen, queue })
    }

    /// An event of `ty` from `source` was written to `addressable`.
    pub fn observe(&self, addressable: &Reference, ty: &str, source: &str, schema: Option<&str>) {
        self.record(addressable, addressable, ty, source, schema, AUTO_CREATED);
    }

    /// A pair that `owner` (a source) declares it sends to `addressable`.
    pub fn declare(&self, addressable: &Reference, owner: &Reference, ty: &str, source: &str) {
        self.record(
            addressable,
            owner,
            ty,
            source,
            None,
            "Event Type declared by its source",
        );
    }

    fn record(
        &self,
        addressable: &Reference,
        owner: &Reference,
        ty: &str,
        source: &str,
        schema: Option<&str>,
        description: &'static str,
    ) {
        let key = key(&addressable.uuid, ty, source);
        if self.seen.read().expect("not poisoned").contains(&key) {
            return;
        }
        {
            let mut seen = self.seen.write().expect("not poisoned");
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
            if !seen.insert(key) {
                return;
            }
        }
        let observed = Observed {
            addressable: addressable.clone(),
            owner: owner.clone(),
            ty: ty.to_owned(),
            source: source.to_owned(),
            schema: schema.map(str::to_owned),
            description,
        };
        if self.queue.try_send((key, observed)).is_err() {
            self.seen.write().expect("not poisoned").remove(&key);
        }
    }
}

fn key(uid: &str, ty: &str, source: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (uid, ty, source).hash(&mut hasher);
    hasher.finish()
}

async fn create_each(
    store: Store,
    mut pending: mpsc::Receiver<(u64, Observed)>,
    seen: Seen,
    stop: CancellationToken,
) {
    loop {
        let (key, observed) = tokio::select! {
            _ = stop.cancelled() => return,
            next = pending.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let a = &observed.addressable;
        match store.create(&observed.object()).await {
            Ok(Created::New) => {
                tracing::info!(namespace = %a.namespace, addressable = %a.name, r#type = %observed.ty, source = %observed.source, name = %observed.name(), "EventType created")
            }
            Ok(Created::Existing) => {}
            Err(error) => {
                tracing::warn!(%error, r#type = %observed.ty, source = %observed.source, "cannot create the EventType; a later event retries");
                let seen = seen.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_AFTER).await;
                    seen.write().expect("not poisoned").remove(&key);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Reference {
        Reference {
            uuid: "uid".into(),
            namespace: "ns".into(),
            name: "b".into(),
            kind: "Broker".into(),
            group_version: "eventing.knative.dev/v1".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pair_is_created_once_however_many_events_carry_it() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let recorder = Recorder::spawn(Store::Folder(dir.path().to_owned()), stop.clone());
        for _ in 0..100 {
            recorder.observe(&broker(), "t.one", "/s", None);
        }
        recorder.observe(&broker(), "t.two", "/s", None);
        let files = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while files() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "two EventTypes written"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(files(), 2);
        stop.cancel();
    }
}
