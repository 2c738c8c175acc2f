//! The sink triggers deliver to: it counts every arrival of this run's
//! events per request path (a path per trigger), and records end-to-end
//! latency from the `benchsent` extension.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use ferry_common::{
    server::{self, Body, Handler},
    shutdown::Shutdown,
};
use fixedbitset::FixedBitSet;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::event::{self, RunId};

/// How the sink answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// How long each answer takes (a slow subscriber).
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            delay: Duration::ZERO,
        }
    }
}

/// Which of this run's events one path received.
#[derive(Clone, Debug, Default)]
pub struct PathCounts {
    pub seen: FixedBitSet,
    pub arrivals: u64,
}

impl PathCounts {
    fn record(&mut self, seq: u64) {
        let seq = seq as usize;
        if seq >= self.seen.len() {
            self.seen.grow((seq + 1).next_power_of_two());
        }
        self.seen.insert(seq);
        self.arrivals += 1;
    }

    pub fn distinct(&self) -> u64 {
        self.seen.count_ones(..) as u64
    }
}

/// Everything the sink saw, at one moment.
#[derive(Clone)]
pub struct Received {
    pub paths: HashMap<String, PathCounts>,
    /// End-to-end latency in microseconds.
    pub latency: Histogram<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Events of other runs, or not CloudEvents.
    pub foreign: u64,
}

impl Received {
    pub fn empty() -> Self {
        Received {
            paths: HashMap::new(),
            latency: new_histogram(),
            first: None,
            last: None,
            foreign: 0,
        }
    }

    pub fn arrivals(&self) -> u64 {
        self.paths.values().map(|p| p.arrivals).sum()
    }

    /// Events per second between the first and last arrival.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                self.arrivals() as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

pub struct Sink {
    /// Whose events it counts; a new measurement may change it.
    run: AtomicU32,
    behaviour: Behaviour,
    received: Mutex<Received>,
}

/// A running sink.
pub struct SinkHandle {
    pub addr: SocketAddr,
    sink: Arc<Sink>,
    stop: Shutdown,
}

impl SinkHandle {
    pub async fn start(addr: SocketAddr, run: RunId, behaviour: Behaviour) -> anyhow::Result<Self> {
        let listener = server::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sink = Arc::new(Sink {
            run: AtomicU32::new(run.0),
            behaviour,
            received: Mutex::new(Received::empty()),
        });
        let stop = Shutdown::new();
        tokio::spawn(server::serve(listener, sink.clone(), stop.clone()));
        Ok(SinkHandle { addr, sink, stop })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn received(&self) -> Received {
        self.sink.received.lock().expect("sink lock").clone()
    }

    /// Total arrivals so far (cheaper than [`Self::received`]).
    pub fn arrivals(&self) -> u64 {
        self.sink.received.lock().expect("sink lock").arrivals()
    }

    /// Waits until each of `copies` paths received every `accepted` event,
    /// or until `deadline`; returns whether they did. Stops early once
    /// nothing arrived for `quiet`. (Counting arrivals would not do: a
    /// duplicate would stand in for an event still missing.)
    pub async fn wait_for(
        &self,
        accepted: &FixedBitSet,
        copies: usize,
        deadline: Instant,
        quiet: Duration,
    ) -> bool {
        let expected = accepted.count_ones(..) as u64 * copies as u64;
        let mut last = (self.arrivals(), Instant::now());
        loop {
            let now = self.arrivals();
            if now >= expected && self.has_all(accepted, copies) {
                return true;
            }
            if now != last.0 {
                last = (now, Instant::now());
            }
            if Instant::now() >= deadline || last.1.elapsed() >= quiet {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn has_all(&self, accepted: &FixedBitSet, copies: usize) -> bool {
        let received = self.sink.received.lock().expect("sink lock");
        received.paths.len() >= copies
            && received.paths.values().all(|p| accepted.is_subset(&p.seen))
    }

    pub fn run(&self) -> RunId {
        RunId(self.sink.run.load(Ordering::Relaxed))
    }

    /// Counts `run`'s events from now on, and forgets what it saw, so a
    /// second measurement can use the subscriber a trigger already has.
    pub fn begin(&self, run: RunId) {
        self.sink.run.store(run.0, Ordering::Relaxed);
        self.reset();
    }

    /// Arrivals that were not this run's events.
    pub fn foreign(&self) -> u64 {
        self.sink.received.lock().expect("sink lock").foreign
    }

    pub fn reset(&self) {
        *self.sink.received.lock().expect("sink lock") = Received::empty();
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl Handler for Sink {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return server::text(StatusCode::BAD_REQUEST, "unreadable body"),
        };
        let arrived = Instant::now();
        let arrival = event::arrival(&parts.headers, body);
        {
            let mut received = self.received.lock().expect("sink lock");
            match arrival
                .as_ref()
                .and_then(|a| Some((a, RunId(self.run.load(Ordering::Relaxed)).seq(&a.id)?)))
            {
                Some((arrival, seq)) => {
                    let path = parts.uri.path();
                    match received.paths.get_mut(path) {
                        Some(counts) => counts.record(seq),
                        None => {
                            let mut counts = PathCounts::default();
                            counts.record(seq);
                            received.paths.insert(path.to_owned(), counts);
                        }
                    }
                    if let Some(sent) = arrival.sent_micros {
                        let micros = event::now_micros().saturating_sub(sent).max(1);
                        let _ = received.latency.record(micros);
                    }
                    received.first.get_or_insert(arrived);
                    received.last = Some(arrived);
                }
                None => received.foreign += 1,
            }
        }
        if !self.behaviour.delay.is_zero() {
            tokio::time::sleep(self.behaviour.delay).await;
        }
        server::text(StatusCode::OK, "")
    }
}
