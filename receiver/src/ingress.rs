//! The request path: route → decode → validate → produce → respond.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ferry_auth::{Claims, Verifier};
use ferry_common::{
    producer::ProducerPool,
    server::{self, Body, Handler},
    tail::Tail,
    telemetry::{self, KeyValue, SpanKind},
};
use ferry_event::{
    kafka,
    trace::{self, TraceContext},
};
use ferry_registry::Recorder;
use futures::future::try_join_all;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::{
    error::IngressError,
    metrics::Metrics,
    routes::{Route, Routes},
};

pub struct Ingress {
    pub routes: Arc<ArcSwap<Routes>>,
    pub producers: Arc<ProducerPool>,
    pub max_body_bytes: usize,
    pub ready: Arc<AtomicBool>,
    pub metrics: Metrics,
    /// Where new (type, source) pairs are recorded, when this receiver
    /// makes EventTypes.
    pub event_types: Option<Arc<Recorder>>,
    /// Where the latest events are shown to whoever watches.
    pub tail: Option<Arc<Tail>>,
    /// Whether events must come over HTTPS (`transport-encryption: strict`).
    pub https_only: bool,
    /// Verifies senders' tokens for resources with an audience; `None`:
    /// no issuer configured, and such resources take no request.
    pub verifier: Option<Verifier>,
}

impl Handler for Ingress {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if request.method() == Method::GET {
            match request.uri().path() {
                "/healthz" => return server::text(StatusCode::OK, "ok\n"),
                "/readyz" if self.ready.load(Ordering::Acquire) => {
                    return server::text(StatusCode::OK, "ready\n")
                }
                "/readyz" => return server::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                _ if is_probe(&request) => return self.probe(&request),
                _ => {}
            }
        }
        let started = Instant::now();
        let mut seen = Seen::default();
        let response = match self.accept(request, &mut seen).await {
            Ok(()) => Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(server::full(Bytes::new()))
                .expect("static parts are valid"),
            Err(error) => {
                match error.status() {
                    StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(%error, "event not stored"),
                    _ => tracing::debug!(%error, "request refused"),
                }
                if let Some(span) = &mut seen.span {
                    span.fail(error.to_string());
                }
                error.into_response()
            }
        };
        let status = response.status();
        if let Some(span) = &mut seen.span {
            span.set(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
        }
        self.metrics.answered(
            status,
            seen.route.as_deref(),
            &seen.types,
            started.elapsed(),
        );
        response
    }
}

/// Knative's networking probe: its prober marks a Broker, KafkaChannel or
/// KafkaSink Ready only once its address answers one.
fn is_probe(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(PROBE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"probe")
}

const PROBE_HEADER: &str = "k-network-probe";
const PROBE_HASH_HEADER: &str = "k-network-hash";

/// The most of an oversized body that is read and discarded before the
/// 413 is sent, and for how long: clients that write the whole body before
/// reading (Python's http.client) would otherwise see a reset instead of
/// the answer. nginx's lingering close does the same.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What a request turned out to be, for its metrics and its span.
#[derive(Default)]
struct Seen {
    route: Option<Arc<Route>>,
    /// The `type` of each event read from it.
    types: Vec<String>,
    span: Option<telemetry::Span>,
}

impl Ingress {
    /// The route for a request, by its path or else its host.
    fn route(&self, request: &Request<Incoming>) -> Result<Arc<Route>, IngressError> {
        let host = request
            .uri()
            .host()
            .or_else(|| request.headers().get(header::HOST)?.to_str().ok());
        self.routes
            .load()
            .find(request.uri().path(), host)
            .cloned()
            .ok_or_else(|| IngressError::NotFound(request.uri().path().to_owned()))
    }

    /// The verified sender of a request to a resource with an audience:
    /// 401 without a valid token, 403 when no policy admits it.
    async fn sender(
        &self,
        request: &Request<Incoming>,
        route: &Route,
        audience: &str,
    ) -> Result<Claims, IngressError> {
        let unauthenticated = |why: String| {
            IngressError::Unauthenticated(format!(
                "{} requires a token for audience '{audience}': {why}",
                route.name
            ))
        };
        let verifier = self.verifier.as_ref().ok_or_else(|| {
            unauthenticated(
                "this receiver has no OIDC issuer to verify it (--oidc-issuer-url)".into(),
            )
        })?;
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let token =
            ferry_auth::token::bearer(header).map_err(|e| unauthenticated(e.to_string()))?;
        let claims = verifier
            .verify(token, audience)
            .await
            .map_err(|e| unauthenticated(e.to_string()))?;
        if !route.policies.admits_sender(&claims) {
            return Err(IngressError::Forbidden(format!(
                "no EventPolicy of {} lets {} send to it",
                route.name,
                subject(&claims)
            )));
        }
        Ok(claims)
    }

    /// 200 with the probe's hash echoed where a resource is served, 404
    /// elsewhere, as the reference answers.
    fn probe(&self, request: &Request<Incoming>) -> Response<Body> {
        if let Err(error) = self.route(request) {
            return error.into_response();
        }
        let mut response = server::text(StatusCode::OK, "");
        if let Some(hash) = request.headers().get(PROBE_HASH_HEADER) {
            response
                .headers_mut()
                .insert(PROBE_HASH_HEADER, hash.clone());
        }
        response
    }

    async fn accept(
        &self,
        request: Request<Incoming>,
        seen: &mut Seen,
    ) -> Result<(), IngressError> {
        // The route first, as the reference does: an unserved address is
        // 404 whatever the method.
        let route = self.route(&request)?;
        seen.route = Some(route.clone());
        if request.method() != Method::POST {
            return Err(IngressError::Method(request.method().clone()));
        }
        if self.https_only && request.extensions().get::<server::ViaTls>().is_none() {
            return Err(IngressError::PlainHttp);
        }
        // The sender before the body: an unauthenticated request is not
        // read.
        let sender = match &route.audience {
            Some(audience) => Some(self.sender(&request, &route, audience).await?),
            None => None,
        };

        let (parts, body) = request.into_parts();
        // The producer's trace context travels with the events, continued
        // by a span of the receiver's when traces are exported.
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let incoming = text(trace::TRACEPARENT)
            .and_then(|tp| TraceContext::parse(tp, text(trace::TRACESTATE)));
        seen.span = telemetry::span("ferry.ingress", SpanKind::Server, incoming.as_ref(), || {
            vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.destination.name", route.topic.clone()),
                KeyValue::new("kn.resource", route.name.clone()),
            ]
        });
        let trace = telemetry::continued(seen.span.as_ref(), incoming.as_ref());

        let body = self.read_body(&parts.headers, body).await?;
        let events = ferry_event::http::decode(&parts.headers, body)?;
        if let Some(claims) = &sender {
            if let Some(refused) = events.iter().find(|e| !route.policies.admits(claims, e)) {
                return Err(IngressError::Forbidden(format!(
                    "no EventPolicy of {} lets {} send events of type '{}'",
                    route.name,
                    subject(claims),
                    refused.ty()
                )));
            }
        }
        seen.types = events.iter().map(|e| e.ty().to_owned()).collect();
        if let (Some(span), [event]) = (&mut seen.span, &events[..]) {
            span.set(KeyValue::new("cloudevents.event_id", event.id().to_owned()));
            span.set(KeyValue::new(
                "cloudevents.event_type",
                event.ty().to_owned(),
            ));
        }

        let cluster = route
            .cluster
            .as_ref()
            .map_err(|reason| IngressError::Credentials {
                resource: route.name.clone(),
                reason: reason.clone(),
            })?;
        let producer = self.producers.get(cluster)?;
        let records: Vec<kafka::Record> = events
            .iter()
            .map(|event| {
                let mut record = kafka::encode(event, route.mode);
                if let Some(trace) = &trace {
                    for (name, value) in trace.headers() {
                        record.headers.push((name.to_owned(), value.into()));
                    }
                }
                record
            })
            .collect();
        // Every event of a batch is written before the request succeeds;
        // each write is bounded by the producer's timeout.
        try_join_all(
            records
                .iter()
                .map(|record| producer.send(&route.topic, record)),
        )
        .await?;
        tracing::trace!(resource = %route.name, events = records.len(), "events stored");
        if let Some(tail) = &self.tail {
            for event in &events {
                tail.publish(&route.name, event);
            }
        }
        if let (Some(recorder), Some(addressable)) = (&self.event_types, &route.event_types) {
            for event in &events {
                let schema = event.get_str("dataschema");
                recorder.observe(addressable, event.ty(), event.source(), schema);
            }
        }
        Ok(())
    }

    /// Reads the body, at most `max_body_bytes`. An oversized one is read
    /// on and discarded (bounded) before the 413, unless the client waits
    /// for `100 Continue` and so has not sent it.
    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        mut body: Incoming,
    ) -> Result<Bytes, IngressError> {
        let limit = self.max_body_bytes;
        let too_large = IngressError::TooLarge { limit };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            if !headers.contains_key(header::EXPECT) {
                drain(body).await;
            }
            return Err(too_large);
        }
        // One chunk is the common case, and is kept without a copy.
        let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| IngressError::Body(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            read += data.len();
            if read > limit {
                drain(body).await;
                return Err(too_large);
            }
            chunks.push(data);
        }
        Ok(match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().expect("one chunk"),
            _ => chunks.concat().into(),
        })
    }
}

/// Reads and discards what is left of a body, within [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`].
async fn drain(mut body: Incoming) {
    let discard = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The sender, for messages: its `sub`.
fn subject(claims: &Claims) -> String {
    match claims.get("sub").and_then(|s| s.as_str()) {
        Some(sub) => format!("'{sub}'"),
        None => "a sender without a subject".into(),
    }
}
