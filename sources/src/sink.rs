//! Sends a source's event to its sink: binary mode over HTTP, retried as
//! Knative's adapters retry (5 times, exponentially from 50 ms), with the
//! dispatcher's attempt and retry rules; each event counted in
//! `ferry_source_events_total` by outcome, a failure logged with its reason.

use std::time::Duration;

use ferry_dispatcher::{
    retry::{Action, Outcome, RetryPolicy},
    send::{self, HttpClient},
};
use ferry_event::Event;
use ferry_proto::BackoffPolicy;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

const RETRIES: u32 = 5;
const BACKOFF: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

type Labels = [(&'static str, String); 4];

/// Events sent by sources, by kind, namespace, name and outcome.
#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    events: Family<Labels, Counter>,
}

impl SourceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = SourceMetrics::default();
        registry.register(
            "ferry_source_events",
            "Events sent by sources to their sinks, by outcome (sent, failed)",
            metrics.events.clone(),
        );
        metrics
    }

    fn count(&self, origin: &Origin, outcome: &'static str) {
        self.events
            .get_or_create(&[
                ("kind", origin.kind.to_owned()),
                ("namespace", origin.namespace.to_owned()),
                ("name", origin.name.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

/// The source an event is from.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

pub struct Sender {
    client: HttpClient,
    retry: RetryPolicy,
    metrics: SourceMetrics,
}

impl Sender {
    pub fn new(metrics: SourceMetrics) -> Self {
        Sender {
            client: ferry_dispatcher::trust::Clients::new().get(None),
            retry: RetryPolicy::new(
                RETRIES,
                BackoffPolicy::Exponential,
                BACKOFF,
                RETRY_AFTER_MAX,
            ),
            metrics,
        }
    }

    /// Sends `event` from `origin` to `sink`, counting the outcome and
    /// logging a failure.
    pub async fn deliver(
        &self,
        origin: Origin<'_>,
        sink: &str,
        event: &Event,
        stop: &CancellationToken,
    ) {
        let result = match sink.parse::<http::Uri>() {
            Ok(url) => self.send(&url, event, stop).await,
            Err(e) => Err(format!("sink '{sink}' is not a URL: {e}")),
        };
        let outcome = match result {
            Ok(()) => "sent",
            Err(reason) => {
                tracing::warn!(
                    kind = origin.kind, namespace = origin.namespace, name = origin.name,
                    id = event.id(), r#type = event.ty(), %sink, %reason, "event not delivered"
                );
                "failed"
            }
        };
        self.metrics.count(&origin, outcome);
    }

    /// Delivers `event`, or says why it could not; `stop` ends a retry wait.
    async fn send(
        &self,
        url: &http::Uri,
        event: &Event,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            let how = send::Attempt {
                structured: false,
                timeout: TIMEOUT,
                trace: None,
                namespace: None,
                // Sources send no tokens yet.
                token: None,
            };
            let result = send::attempt(&self.client, url, event, how).await;
            let outcome = match &result {
                Ok(answer) => answer.outcome(),
                Err(_) => Outcome::NoResponse,
            };
            let wait = match (self.retry.action(&outcome, attempt), result) {
                (Action::Done, _) => return Ok(()),
                (Action::RetryAfter(wait), _) => wait,
                (Action::GiveUp, Ok(answer)) => {
                    return Err(format!(
                        "{url} answered {} after {attempt} attempts",
                        answer.code
                    ))
                }
                (Action::GiveUp, Err(no_answer)) => {
                    return Err(format!("{url}: {no_answer} after {attempt} attempts"))
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Err("stopped while retrying".into()),
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }
}
