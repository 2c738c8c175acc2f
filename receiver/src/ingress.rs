//! The request path: route → decode → validate → produce → respond.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ferry_common::{
    cloudevent::{self, kafka},
    producer::ProducerPool,
    server::{self, Body, Handler},
    telemetry::{self, KeyValue, SpanKind},
    trace::{self, TraceContext},
};
use futures::future::try_join_all;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
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
                _ => {}
            }
        }
        let started = Instant::now();
        let mut seen = Seen::default();
        let response = match self.accept(request, &mut seen).await {
            Ok(()) => Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::default())
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

/// What a request turned out to be, for its metrics and its span.
#[derive(Default)]
struct Seen {
    route: Option<Arc<Route>>,
    /// The `type` of each event read from it.
    types: Vec<String>,
    span: Option<telemetry::Span>,
}

impl Ingress {
    async fn accept(
        &self,
        request: Request<Incoming>,
        seen: &mut Seen,
    ) -> Result<(), IngressError> {
        if request.method() != Method::POST {
            return Err(IngressError::Method(request.method().clone()));
        }
        let routes = self.routes.load();
        let host = request
            .uri()
            .host()
            .or_else(|| request.headers().get(header::HOST)?.to_str().ok());
        let route = routes
            .find(request.uri().path(), host)
            .ok_or_else(|| IngressError::NotFound(request.uri().path().to_owned()))?
            .clone();
        drop(routes);
        seen.route = Some(route.clone());

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
        let mut events = cloudevent::http::decode(&parts.headers, body)?;
        seen.types = events.iter().map(|e| e.ty().to_owned()).collect();
        if let (Some(span), [event]) = (&mut seen.span, &events[..]) {
            span.set(KeyValue::new("cloudevents.event_id", event.id().to_owned()));
            span.set(KeyValue::new(
                "cloudevents.event_type",
                event.ty().to_owned(),
            ));
        }

        let producer = self.producers.get(&route.bootstrap)?;
        let records: Vec<kafka::Record> = events
            .iter_mut()
            .map(|event| {
                route.apply_overrides(event);
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
        Ok(())
    }

    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, IngressError> {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(IngressError::TooLarge { limit });
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(IngressError::TooLarge { limit }),
            Err(e) => Err(IngressError::Body(e.to_string())),
        }
    }
}
