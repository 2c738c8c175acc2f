//! The live tail: the latest events written to each resource, for whoever
//! watches (`GET /events?broker=ns/name` on standalone's admin port, as
//! server-sent events). Bounded: each watcher gets a window of recent
//! events, and one that falls behind skips ahead (under load, a sample).
//! With nobody watching, publishing costs one atomic load.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

use bytes::Bytes;
use ferry_event::Event;
use futures::StreamExt;
use http_body::Frame;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::server::{self, Body};

/// Events kept for a watcher that is behind.
const WINDOW: usize = 64;

#[derive(Debug, Default)]
pub struct Tail {
    channels: RwLock<HashMap<String, broadcast::Sender<Bytes>>>,
    watchers: AtomicUsize,
}

impl Tail {
    /// An event was written to `resource` (`namespace/name`).
    pub fn publish(&self, resource: &str, event: &Event) {
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let channels = self.channels.read().expect("not poisoned");
        if let Some(sender) = channels.get(resource) {
            let _ = sender.send(ferry_event::json::encode(event));
        }
    }

    /// A stream of `resource`'s events as server-sent events, until `stop`.
    pub fn watch(self: &Arc<Self>, resource: &str, stop: CancellationToken) -> Body {
        let receiver = self
            .channels
            .write()
            .expect("not poisoned")
            .entry(resource.to_owned())
            .or_insert_with(|| broadcast::channel(WINDOW).0)
            .subscribe();
        let watching = Watching::new(self.clone());
        let frames = futures::stream::unfold(
            (receiver, watching, stop),
            |(mut receiver, watching, stop)| async move {
                let text = tokio::select! {
                    _ = stop.cancelled() => return None,
                    item = receiver.recv() => match item {
                        Ok(json) => {
                            let mut text = b"event: cloudevent\ndata: ".to_vec();
                            text.extend_from_slice(&json);
                            text.extend_from_slice(b"\n\n");
                            text
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            format!(": {n} events skipped\n\n").into_bytes()
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                };
                let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(text)));
                Some((frame, (receiver, watching, stop)))
            },
        );
        // A first comment, so a client knows it is connected.
        let hello = futures::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": watching\n\n")))
        });
        server::streaming(http_body_util::StreamBody::new(hello.chain(frames)))
    }
}

/// Counts a watcher while its stream lives.
struct Watching(Arc<Tail>);

impl Watching {
    fn new(tail: Arc<Tail>) -> Self {
        tail.watchers.fetch_add(1, Ordering::Relaxed);
        Watching(tail)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn watchers_get_what_is_published_after_they_start() {
        let tail = Arc::new(Tail::default());
        let event = Event::new("1", "/s", "t.one");
        tail.publish("ns/b", &event);
        let stop = CancellationToken::new();
        let mut body = tail.watch("ns/b", stop.clone());
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b": watching\n\n");
        tail.publish("ns/other", &Event::new("2", "/s", "t.two"));
        tail.publish("ns/b", &Event::new("3", "/s", "t.three"));
        let next = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8(next.to_vec()).unwrap();
        assert!(text.starts_with("event: cloudevent\ndata: {"), "{text}");
        assert!(text.contains("\"t.three\""), "{text}");
        stop.cancel();
        assert!(body.frame().await.is_none(), "the stream ends with stop");
        drop(body);
        assert_eq!(tail.watchers.load(Ordering::Relaxed), 0);
    }
}
