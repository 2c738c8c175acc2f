//! The admin server every component runs (default port 9090): Prometheus
//! metrics at `/metrics`, liveness at `/healthz`, readiness at `/readyz`.

use std::{net::SocketAddr, sync::Arc};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    metrics::Shared,
    server::{self, Body, Handler},
    shutdown::Shutdown,
    StartError,
};

/// Tells whether the component can take traffic.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Answers a GET on a route of the component's own.
pub type Route = Arc<dyn Fn(&Request<Incoming>) -> Response<Body> + Send + Sync>;

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

/// A component (receiver, dispatcher) run on its own, with an admin
/// server of its own: bound first, so a taken port fails the start; the
/// registry and the shared metrics are the ones the component reports into.
pub struct OwnAdmin {
    listener: TcpListener,
    pub registry: Registry,
    pub shared: Shared,
}

impl OwnAdmin {
    pub async fn bind(addr: SocketAddr, metrics_event_type: bool) -> Result<Self, StartError> {
        let listener = server::bind(addr).await?;
        let mut registry = Registry::default();
        let shared = Shared::register(&mut registry, metrics_event_type);
        Ok(OwnAdmin {
            listener,
            registry,
            shared,
        })
    }

    /// Serves the admin port beside the started component's `task`.
    pub fn serve(self, task: JoinHandle<()>, ready: Readiness, shutdown: Shutdown) -> Running {
        let admin = self.listener.local_addr().expect("bound");
        let server = Admin::new(self.registry, ready);
        let task = tokio::spawn(async move {
            let _ = tokio::join!(task, server.serve(self.listener, shutdown));
        });
        Running { admin, task }
    }
}

/// A component running with its admin server.
pub struct Running {
    pub admin: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    /// Waits until the component and its admin server have shut down.
    pub async fn join(self) {
        let _ = self.task.await;
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
                        .body(server::full(out))
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
                Some((_, route)) => route(&request),
                None => server::text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}
