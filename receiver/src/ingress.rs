//! The request path: route → decode → validate → produce → respond.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ferry_common::{
    cloudevent::{self, kafka},
    producer::ProducerPool,
    server::{self, Body, Handler},
    trace::{self, TraceContext},
};
use futures::future::try_join_all;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::{error::IngressError, metrics::Metrics, routes::Routes};

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
        let response = match self.accept(request).await {
            Ok(()) => Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::default())
                .expect("static parts are valid"),
            Err(error) => {
                match error.status() {
                    StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(%error, "event not stored"),
                    _ => tracing::debug!(%error, "request refused"),
                }
                error.into_response()
            }
        };
        self.metrics.count(response.status());
        response
    }
}

impl Ingress {
    async fn accept(&self, request: Request<Incoming>) -> Result<(), IngressError> {
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

        let (parts, body) = request.into_parts();
        let body = self.read_body(&parts.headers, body).await?;
        let mut events = cloudevent::http::decode(&parts.headers, body)?;

        let producer = self.producers.get(&route.bootstrap)?;
        // The producer's trace context travels with the events.
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let trace = text(trace::TRACEPARENT)
            .and_then(|tp| TraceContext::parse(tp, text(trace::TRACESTATE)));
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
