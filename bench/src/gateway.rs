//! The ceiling of any HTTP → Kafka ingress on this machine: a hyper server
//! that writes each request's body and `ce-` headers to one topic with a
//! raw rdkafka producer (the receiver's settings: idempotent, acks=all) and
//! answers 202 once the record is acknowledged, 503 when it is not.
//!
//! It does what the receiver must do at the least: read the body, copy the
//! headers, wait for Kafka. It validates nothing and looks nothing up, so
//! the receiver's CPU per event against this one's is Ferry's own cost.

use std::{sync::Arc, time::Duration};

use ferry_common::{
    server::{self, Body, Handler},
    shutdown::Shutdown,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::baseline::producer_config;

struct Gateway {
    producer: FutureProducer,
    topic: String,
}

impl Handler for Gateway {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return server::text(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let mut headers = OwnedHeaders::new_with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            // The HTTP binding's ce- prefix is the Kafka binding's ce_.
            let key = match name.as_str().strip_prefix("ce-") {
                Some(attribute) => format!("ce_{attribute}"),
                None if name == http::header::CONTENT_TYPE => name.as_str().to_owned(),
                None => continue,
            };
            headers = headers.insert(Header {
                key: &key,
                value: Some(value.as_bytes()),
            });
        }
        let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .headers(headers)
            .payload(&body);
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => server::text(StatusCode::ACCEPTED, ""),
            Err((error, _)) => server::text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        }
    }
}

/// Serves the gateway on `listener` until `stop`, writing to `topic`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    bootstrap: &str,
    topic: &str,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let gateway = Gateway {
        producer: producer_config(bootstrap)?.create()?,
        topic: topic.to_owned(),
    };
    server::serve(listener, Arc::new(gateway), stop).await;
    Ok(())
}
