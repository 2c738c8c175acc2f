//! The sink of the sources scenario: for every PingSource event that
//! arrives, how long after its tick (`ce-time`) it came, and from which
//! source; only ticks within the window count.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use ferry_common::{
    server::{self, Body, Handler},
    shutdown::Shutdown,
};
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::sink::new_histogram;

#[derive(Clone)]
pub struct Ticks {
    /// Microseconds from the tick to the arrival.
    pub lateness: Histogram<u64>,
    pub arrivals: u64,
    pub sources: HashSet<String>,
    /// Ticks outside the window, ignored.
    pub early: u64,
}

struct TickSink {
    window: Mutex<Option<(DateTime<Utc>, DateTime<Utc>)>>,
    ticks: Mutex<Ticks>,
}

pub struct TickSinkHandle {
    pub addr: SocketAddr,
    sink: Arc<TickSink>,
    stop: Shutdown,
}

impl TickSinkHandle {
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = server::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sink = Arc::new(TickSink {
            window: Mutex::new(None),
            ticks: Mutex::new(Ticks {
                lateness: new_histogram(),
                arrivals: 0,
                sources: HashSet::new(),
                early: 0,
            }),
        });
        let stop = Shutdown::new();
        tokio::spawn(server::serve(listener, sink.clone(), stop.clone()));
        Ok(TickSinkHandle { addr, sink, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/ticks", self.addr)
    }

    /// Counts the ticks from `start` (inclusive) to `end` (exclusive).
    pub fn open_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) {
        *self.sink.window.lock().expect("window") = Some((start, end));
    }

    /// Ticks outside the window (the warm-up's).
    pub fn early(&self) -> u64 {
        self.sink.ticks.lock().expect("ticks").early
    }

    pub fn ticks(&self) -> Ticks {
        self.sink.ticks.lock().expect("ticks").clone()
    }
}

impl Drop for TickSinkHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Handler for TickSink {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let _ = body.collect().await;
        let arrived = Utc::now();
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let tick = header("ce-time").and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let (Some(tick), Some(source)) = (tick, header("ce-source")) else {
            return server::text(StatusCode::BAD_REQUEST, "not a tick");
        };
        let window = *self.window.lock().expect("window");
        let mut ticks = self.ticks.lock().expect("ticks");
        match window {
            Some((start, end)) if tick >= start && tick < end => {
                let micros = (arrived - tick.to_utc()).num_microseconds().unwrap_or(0);
                let _ = ticks.lateness.record(micros.max(1) as u64);
                ticks.arrivals += 1;
                ticks.sources.insert(source.to_owned());
            }
            _ => ticks.early += 1,
        }
        server::text(StatusCode::OK, "")
    }
}
