//! The steps of one event's delivery to one egress, which the reader's
//! `deliver` runs in order: the event as sent (overrides, span), send with
//! retries, the reply, the dead-letter sink.

use std::{borrow::Cow, sync::Arc};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use ferry_common::{
    producer::ProducerPool,
    telemetry::{self, KeyValue, Span, SpanKind},
};
use ferry_event::{kafka, trace::TraceContext, Event, Value};
use tokio_util::sync::CancellationToken;

use crate::{
    egress::{Delivery, EgressSpec, Reply},
    metrics::Metrics,
    observed::ObservedEgresses,
    record::Record,
    report::Report,
    retry::{Action, Outcome},
    send::{self, Answer},
    tokens::Tokens,
    trust::Clients,
};

/// Where an attempt goes: the URL, the CA certificates it names, and the
/// audience of the token it requires.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub url: &'a http::Uri,
    pub ca_certs: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// How much of a failed answer's body goes into `knativeerrordata`.
const ERROR_DATA_LIMIT: usize = 1024;

/// The last failure of a destination, as the dead-letter extensions report it.
#[derive(Debug)]
pub struct Failure {
    destination: String,
    code: Option<u16>,
    body: bytes::Bytes,
    /// The answer's `Kne-*` headers, as extensions of the dead-lettered
    /// event (`Kne-Reason: x` → `reason=x`), as the reference adds them.
    extensions: Vec<(String, String)>,
    reason: String,
}

pub struct Deliverer {
    /// HTTP and HTTPS clients, by whom a destination trusts.
    pub clients: Clients,
    /// Tokens for destinations that require one.
    pub tokens: Tokens,
    pub producers: Arc<ProducerPool>,
    pub metrics: Metrics,
    pub observed: Arc<ObservedEgresses>,
    /// Where the pairs of replies written to a topic are recorded.
    pub event_types: Option<Arc<ferry_registry::Recorder>>,
}

/// One event on its way to one egress: as sent (with the egress's
/// overrides), with its span and the trace context its requests carry.
pub struct Outgoing<'a> {
    pub event: Cow<'a, Event>,
    trace: Option<Cow<'a, TraceContext>>,
    span: Option<Span>,
}

impl Outgoing<'_> {
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }

    /// Ends the span with the outcome.
    pub fn end(mut self, report: Report) -> Report {
        if let Some(span) = &mut self.span {
            span.set(KeyValue::new("ferry.outcome", report.as_str()));
            if matches!(report, Report::DeadLettered | Report::Dropped) {
                span.fail(report.as_str());
            }
        }
        report
    }
}

// === impl Deliverer ===

impl Deliverer {
    /// The event of a record that passed the egress's filter, as it is
    /// sent; counts how long it waited in Kafka.
    pub fn outgoing<'a>(&self, spec: &EgressSpec, record: &'a Record) -> Outgoing<'a> {
        let event = record.event.as_ref().expect("only events are delivered");
        if let Some(written) = record.written_ms {
            self.metrics.processing(spec, written);
        }
        let span = telemetry::span(
            "ferry.dispatch",
            SpanKind::Consumer,
            record.trace.as_ref(),
            || {
                vec![
                    KeyValue::new("messaging.system", "kafka"),
                    KeyValue::new("messaging.destination.name", spec.topic.clone()),
                    KeyValue::new("messaging.consumer.group.name", spec.consumer_group.clone()),
                    KeyValue::new("kn.egress", format!("{} {}", spec.kind, spec.name)),
                    KeyValue::new("cloudevents.event_id", event.id().to_owned()),
                    KeyValue::new("cloudevents.event_type", event.ty().to_owned()),
                    KeyValue::new("url.full", spec.destination.to_string()),
                ]
            },
        );
        // The subscriber, the reply and the dead letter continue the
        // dispatcher's span, or the producer's trace when none is exported.
        let trace = telemetry::continued(span.as_ref(), record.trace.as_ref());
        let event = if spec.overrides.is_empty() {
            Cow::Borrowed(event)
        } else {
            let mut copy = event.clone();
            for (name, value) in &spec.overrides {
                copy.set(name, Value::String(value.clone()));
            }
            Cow::Owned(copy)
        };
        Outgoing { event, trace, span }
    }

    /// The token `to` requires, if it requires one.
    async fn token(&self, spec: &EgressSpec, to: Target<'_>) -> Result<Option<String>, String> {
        match to.audience {
            // Boxed: a token request's state would otherwise be part of
            // every delivery's, whether it needs a token or not.
            Some(audience) => Box::pin(self.tokens.get(spec.account.as_ref(), audience))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Sends with retries. The outer `Option` is `None` when `stop`
    /// interrupted a retry wait.
    pub async fn send(
        &self,
        spec: &EgressSpec,
        to: Target<'_>,
        event: &Event,
        delivery: &Delivery,
        trace: Option<&TraceContext>,
        stop: &CancellationToken,
    ) -> Option<Result<Answer, Failure>> {
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let in_flight = self.metrics.attempt_started(spec);
            let result = match self.token(spec, to).await {
                Ok(token) => {
                    let how = send::Attempt {
                        structured: delivery.structured,
                        timeout: delivery.timeout,
                        trace,
                        namespace: spec.namespace.as_ref(),
                        token: token.as_deref(),
                    };
                    let client = self.clients.get(to.ca_certs);
                    // Boxed: the exchange's state is most of a delivery's,
                    // and a delivery task's whole future is moved on spawn.
                    Box::pin(send::attempt(&client, to.url, event, how)).await
                }
                Err(why) => Err(send::NoAnswer::Token(why)),
            };
            drop(in_flight);
            self.metrics.attempt(
                spec,
                event.ty(),
                result.as_ref().ok().map(|a| a.code),
                started.elapsed(),
            );
            let outcome = match &result {
                Ok(answer) => answer.outcome(),
                Err(_) => Outcome::NoResponse,
            };
            let wait = match (delivery.retry.action(&outcome, attempt), result) {
                (Action::Done, Ok(answer)) => return Some(Ok(answer)),
                (Action::RetryAfter(wait), _) => wait,
                (_, result) => return Some(Err(failure(to.url, result))),
            };
            tracing::debug!(egress = %spec.name, id = event.id(), attempt, ?wait, ?outcome, "retrying");
            self.metrics.retry(spec);
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }

    /// Hands a subscriber's reply on: to the reply URL, back to the
    /// broker's topic, or nowhere.
    pub async fn reply(
        &self,
        spec: &EgressSpec,
        reply: Event,
        trace: Option<&TraceContext>,
        stop: &CancellationToken,
    ) -> Option<Result<(), Failure>> {
        match &spec.reply {
            Reply::Discard => Some(Ok(())),
            Reply::Url(url) => {
                let delivery = Delivery {
                    dead_letter: None,
                    ..spec.delivery.clone()
                };
                Some(
                    self.send(
                        spec,
                        Target {
                            url,
                            ca_certs: spec.reply_ca.as_deref(),
                            audience: spec.reply_audience.as_deref(),
                        },
                        &reply,
                        &delivery,
                        trace,
                        stop,
                    )
                    .await?
                    .map(drop),
                )
            }
            Reply::ToTopic => {
                let mut record = kafka::encode(&reply, kafka::ContentMode::Binary);
                // The reply continues the trace of the event it answers.
                for (name, value) in trace.iter().flat_map(|t| t.headers()) {
                    record.headers.push((name.to_owned(), value.into()));
                }
                let written = match self.producers.get(&spec.cluster) {
                    Ok(producer) => producer
                        .send(&spec.topic, &record)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let (Ok(()), Some(recorder), Some(resource)) =
                    (&written, &self.event_types, &spec.event_types)
                {
                    let schema = reply.get_str("dataschema");
                    recorder.observe(resource, reply.ty(), reply.source(), schema);
                }
                Some(written.map_err(|reason| Failure {
                    destination: format!("kafka topic {}", spec.topic),
                    code: None,
                    body: bytes::Bytes::new(),
                    extensions: Vec::new(),
                    reason: format!("reply not written: {reason}"),
                }))
            }
        }
    }

    /// Sends the event, with the failure's extensions, to the dead-letter
    /// sink if the egress has one.
    pub async fn dead_letter(
        &self,
        spec: &EgressSpec,
        mut event: Event,
        failure: Failure,
        trace: Option<&TraceContext>,
        stop: &CancellationToken,
    ) -> Option<Report> {
        let Some(sink) = &spec.delivery.dead_letter else {
            tracing::warn!(
                egress = %spec.name, id = event.id(), source = event.source(), r#type = event.ty(),
                destination = %failure.destination, reason = %failure.reason,
                "event dropped: delivery failed and there is no dead-letter sink"
            );
            return Some(Report::Dropped);
        };
        event.set(
            "knativeerrordest",
            Value::String(failure.destination.clone()),
        );
        if let Some(code) = failure.code {
            event.set("knativeerrorcode", Value::String(code.to_string()));
        }
        if !failure.body.is_empty() {
            let data = &failure.body[..failure.body.len().min(ERROR_DATA_LIMIT)];
            event.set("knativeerrordata", Value::String(BASE64.encode(data)));
        }
        for (name, value) in &failure.extensions {
            event.set(name, Value::String(value.clone()));
        }
        match self
            .send(
                spec,
                Target {
                    url: sink,
                    ca_certs: spec.delivery.dead_letter_ca.as_deref(),
                    audience: spec.delivery.dead_letter_audience.as_deref(),
                },
                &event,
                &spec.delivery,
                trace,
                stop,
            )
            .await?
        {
            Ok(_) => {
                tracing::info!(
                    egress = %spec.name, id = event.id(), source = event.source(), r#type = event.ty(),
                    destination = %failure.destination, reason = %failure.reason,
                    "event dead-lettered"
                );
                Some(Report::DeadLettered)
            }
            Err(dls) => {
                tracing::warn!(
                    egress = %spec.name, id = event.id(), source = event.source(), r#type = event.ty(),
                    reason = %failure.reason, dead_letter_reason = %dls.reason,
                    "event dropped: the dead-letter sink failed too"
                );
                Some(Report::Dropped)
            }
        }
    }
}

impl Failure {
    /// An answer whose reply event is not valid.
    pub fn malformed_reply(
        spec: &EgressSpec,
        answer: Answer,
        invalid: impl std::fmt::Display,
    ) -> Self {
        Failure {
            destination: spec.destination.to_string(),
            code: Some(answer.code),
            reason: format!("malformed reply: {invalid}"),
            extensions: error_extensions(&answer.headers),
            body: answer.body,
        }
    }
}

fn failure(url: &http::Uri, result: Result<Answer, send::NoAnswer>) -> Failure {
    match result {
        Ok(answer) => Failure {
            destination: url.to_string(),
            code: Some(answer.code),
            reason: format!("answered {}", answer.code),
            extensions: error_extensions(&answer.headers),
            body: answer.body,
        },
        Err(no_answer) => Failure {
            destination: url.to_string(),
            code: None,
            body: bytes::Bytes::new(),
            extensions: Vec::new(),
            reason: no_answer.to_string(),
        },
    }
}

/// `Kne-<name>: <value>` answer headers as `<name>` extensions. Names
/// that are not valid extension names, and values that are not text, are
/// left out.
fn error_extensions(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("kne-")?;
            Some((name.to_owned(), value.to_str().ok()?.to_owned()))
                .filter(|_| ferry_event::is_valid_name(name))
        })
        .collect()
}
