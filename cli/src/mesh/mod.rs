//! Standalone's admin port beyond metrics and health: a page at `/` that
//! pictures the mesh (brokers and channels, their triggers and
//! subscriptions with lag, rate and last outcome, sources feeding them,
//! their EventTypes), the JSON it reads (`/resources`, `/contract`), and
//! the live tail of a broker's events (`/events?broker=ns/name`, as
//! server-sent events). The page is plain HTML, CSS and a script, built
//! into the binary.

use std::{path::PathBuf, sync::Arc};

use ferry_common::{admin::Admin, server, shutdown::Shutdown, tail::Tail};
use ferry_controller::{plan::Status, StatusRx};
use ferry_dispatcher::observed::ObservedEgresses;
use http::{header, HeaderValue, Response, StatusCode};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// What the routes read.
pub struct Sources {
    pub statuses: StatusRx,
    pub observed: Arc<ObservedEgresses>,
    pub contract: PathBuf,
    pub tail: Arc<Tail>,
    /// Ends the event streams, so a shutdown does not wait for watchers.
    pub shutdown: Shutdown,
}

pub fn routes(admin: Admin, sources: Sources) -> Admin {
    let Sources {
        statuses,
        observed,
        contract,
        tail,
        shutdown,
    } = sources;
    admin
        .with_route(
            "/",
            Arc::new(|_| with_type(PAGE, "text/html; charset=utf-8")),
        )
        .with_route(
            "/page.js",
            Arc::new(|_| with_type(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .with_route(
            "/page.css",
            Arc::new(|_| with_type(STYLE, "text/css; charset=utf-8")),
        )
        .with_route(
            "/resources",
            Arc::new(move |_| {
                let body = serde_json::to_vec_pretty(&resources(&statuses.borrow(), &observed))
                    .expect("statuses serialise");
                json(body)
            }),
        )
        .with_route(
            "/contract",
            Arc::new(move |_| match std::fs::read(&contract) {
                Ok(body) => json(body),
                Err(error) => server::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the contract: {error}\n"),
                ),
            }),
        )
        .with_route(
            "/events",
            Arc::new(move |request| {
                let broker = request.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|pair| pair.strip_prefix("broker="))
                        .map(|b| b.replace("%2F", "/").replace("%2f", "/"))
                });
                let Some(broker) = broker.filter(|b| b.split('/').count() == 2) else {
                    return server::text(
                        StatusCode::BAD_REQUEST,
                        "name the broker: /events?broker=<namespace>/<name>\n",
                    );
                };
                let body = tail.watch(&broker, shutdown.child_token());
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }),
        )
}

/// Every resource's status; triggers and subscriptions with the lag, the
/// delivery count and the last delivery the dispatcher sees.
fn resources(statuses: &[Status], observed: &ObservedEgresses) -> serde_json::Value {
    let mut observed = observed.by_name();
    statuses
        .iter()
        .map(|status| {
            let mut entry = serde_json::to_value(status).expect("statuses serialise");
            let name = format!("{}/{}", status.namespace, status.name);
            if let (Some(state), Some(fields)) = (
                observed.remove(&(status.kind.clone(), name)),
                entry.as_object_mut(),
            ) {
                let state = serde_json::to_value(state).expect("states serialise");
                fields.extend(
                    state
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            entry
        })
        .collect()
}

fn json(body: Vec<u8>) -> Response<server::Body> {
    with_type(body, "application/json")
}

fn with_type(body: impl Into<bytes::Bytes>, content_type: &'static str) -> Response<server::Body> {
    let mut response = server::text(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
