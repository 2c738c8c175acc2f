//! The admin server every component runs (default port 9090): Prometheus
//! metrics at `/metrics`, liveness at `/healthz`, readiness at `/readyz`.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

use crate::{
    server::{self, Body, Handler},
    shutdown::Shutdown,
};

/// Tells whether the component can take traffic.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Answers a GET on a route of the component's own.
pub type Route = Arc<dyn Fn() -> Response<Body> + Send + Sync>;

pub struct Admin {
    registry: Registry,
    ready: Readiness,
    routes: Vec<(&'static str, Route)>,
}

impl Admin {
    pub fn new(registry: Registry, ready: Readiness) -> Self {
        Admin {
            registry,
            ready,
            routes: Vec::new(),
        }
    }

    /// Serves `route` at `path` too (e.g. standalone's `/resources`).
    pub fn with_route(mut self, path: &'static str, route: Route) -> Self {
        self.routes.push((path, route));
        self
    }

    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) {
        server::serve(listener, Arc::new(self), shutdown).await
    }
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if request.method() != Method::GET {
            return server::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        match request.uri().path() {
            "/metrics" => {
                let mut out = String::new();
                match encode(&mut out, &self.registry) {
                    Ok(()) => Response::builder()
                        .header(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Body::new(out.into()))
                        .expect("static parts are valid"),
                    Err(_) => {
                        server::text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
                    }
                }
            }
            "/healthz" => server::text(StatusCode::OK, "ok\n"),
            "/readyz" if (self.ready)() => server::text(StatusCode::OK, "ready\n"),
            "/readyz" => server::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            path => match self.routes.iter().find(|(p, _)| *p == path) {
                Some((_, route)) => route(),
                None => server::text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}
