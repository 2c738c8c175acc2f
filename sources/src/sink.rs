//! Sends a source's event to its sink: binary mode over HTTP, retried as
//! Knative's adapters retry (5 times, exponentially from 50 ms), with the
//! dispatcher's attempt and retry rules.

use std::time::Duration;

use ferry_dispatcher::{
    retry::{Action, Outcome, RetryPolicy},
    send::{self, HttpClient},
};
use ferry_event::Event;
use ferry_proto::BackoffPolicy;
use tokio_util::sync::CancellationToken;

const RETRIES: u32 = 5;
const BACKOFF: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

pub struct Sender {
    client: HttpClient,
    retry: RetryPolicy,
}

impl Default for Sender {
    fn default() -> Self {
        Sender {
            client: send::client(),
            retry: RetryPolicy::new(
                RETRIES,
                BackoffPolicy::Exponential,
                BACKOFF,
                RETRY_AFTER_MAX,
            ),
        }
    }
}

impl Sender {
    /// Delivers `event`, or says why it could not; `stop` ends a retry wait.
    pub async fn send(
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
