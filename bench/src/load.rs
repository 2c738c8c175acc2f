//! The load generator: N keep-alive HTTP/1.1 connections posting binary-mode
//! CloudEvents, at a fixed rate (each event has a scheduled send time) or as
//! fast as the connections go.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferry_common::shutdown::Shutdown;
use ferry_event::{http::encode_binary_headers, Value, PARTITIONKEY};
use fixedbitset::FixedBitSet;
use hdrhistogram::Histogram;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{event, event::RunId, sink::new_histogram};

#[derive(Clone, Debug)]
pub struct Load {
    pub url: Uri,
    pub connections: usize,
    /// Events per second over all connections; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many events...
    pub count: u64,
    /// ...or after this long, whichever comes first.
    pub duration: Duration,
    /// Bytes of data per event.
    pub size: usize,
    /// HTTPS: how the connections verify the server (`url` is https).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `Authorization: Bearer` on every request.
    pub bearer: Option<String>,
    /// Events carry `partitionkey` `k<seq % keys>` (the record key).
    pub keys: Option<u64>,
}

/// What the senders saw.
pub struct Sent {
    pub sent: u64,
    /// Sequence numbers that got 202 (or any 2xx).
    pub accepted: FixedBitSet,
    /// Answers that were not 2xx, by status code.
    pub rejected: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused, reset, timeout).
    pub errors: u64,
    /// Request round trips in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

impl Sent {
    pub fn accepted_count(&self) -> u64 {
        self.accepted.count_ones(..) as u64
    }

    pub fn rate(&self) -> f64 {
        self.accepted_count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(load: &Load, run: RunId) -> anyhow::Result<Sent> {
    run_until(load, run, Shutdown::new()).await
}

/// [`run`], ending early (with what was sent so far) once `stop` is
/// cancelled: the fault tests stream until their faults are injected.
pub async fn run_until(load: &Load, run: RunId, stop: Shutdown) -> anyhow::Result<Sent> {
    let authority = load
        .url
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{} has no host", load.url))?
        .clone();
    let path: Uri = load
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        start: Instant::now(),
        load: load.clone(),
        data: event::data(load.size),
        authority: authority.to_string(),
        path,
        bearer: match &load.bearer {
            Some(token) => Some(format!("Bearer {token}").parse()?),
            None => None,
        },
        run,
        stop,
    });
    let workers: Vec<_> = (0..load.connections.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut sent = Sent {
        sent: 0,
        accepted: FixedBitSet::with_capacity(0),
        rejected: BTreeMap::new(),
        errors: 0,
        latency: new_histogram(),
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let part = worker.await?;
        sent.sent += part.sent;
        sent.errors += part.errors;
        for (code, n) in part.rejected {
            *sent.rejected.entry(code).or_default() += n;
        }
        sent.latency.add(&part.latency)?;
        for seq in part.accepted {
            let seq = seq as usize;
            if seq >= sent.accepted.len() {
                sent.accepted.grow((seq + 1).next_power_of_two());
            }
            sent.accepted.insert(seq);
        }
    }
    sent.elapsed = shared.start.elapsed();
    Ok(sent)
}

struct Shared {
    next: AtomicU64,
    start: Instant,
    load: Load,
    data: Bytes,
    authority: String,
    path: Uri,
    bearer: Option<http::HeaderValue>,
    run: RunId,
    stop: Shutdown,
}

struct Part {
    sent: u64,
    accepted: Vec<u64>,
    rejected: BTreeMap<u16, u64>,
    errors: u64,
    latency: Histogram<u64>,
}

async fn worker(shared: Arc<Shared>) -> Part {
    let mut part = Part {
        sent: 0,
        accepted: Vec::new(),
        rejected: BTreeMap::new(),
        errors: 0,
        latency: new_histogram(),
    };
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    let end = shared.start + shared.load.duration;
    loop {
        let seq = shared.next.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.load.count || Instant::now() >= end || shared.stop.is_cancelled() {
            break;
        }
        if let Some(rate) = shared.load.rate {
            let due = shared.start + Duration::from_secs_f64(seq as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        part.sent += 1;
        if let Some(sender) = connection.as_mut() {
            if sender.ready().await.is_err() {
                connection = None;
            }
        }
        let sender = match connection {
            Some(ref mut sender) => sender,
            None => match connect(&shared.authority, shared.load.tls.as_ref()).await {
                Ok(sender) => connection.insert(sender),
                Err(_) => {
                    part.errors += 1;
                    // Nothing listens (a killed receiver): don't spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = request(&shared, seq);
        let started = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) => {
                let micros = started.elapsed().as_micros() as u64;
                let _ = part.latency.record(micros.max(1));
                if status.is_success() {
                    part.accepted.push(seq);
                } else {
                    *part.rejected.entry(status.as_u16()).or_default() += 1;
                }
            }
            _ => {
                part.errors += 1;
                connection = None;
            }
        }
    }
    part
}

fn request(shared: &Shared, seq: u64) -> Request<Full<Bytes>> {
    let mut event = event::event(shared.run, seq, &shared.data);
    if let Some(keys) = shared.load.keys {
        event.set(PARTITIONKEY, Value::String(format!("k{}", seq % keys)));
    }
    let mut request = Request::post(shared.path.clone())
        .header(header::HOST, &shared.authority)
        .body(Full::new(shared.data.clone()))
        .expect("valid request");
    request.headers_mut().extend(encode_binary_headers(&event));
    if let Some(bearer) = &shared.bearer {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, bearer.clone());
    }
    request
}

async fn connect(
    authority: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        return Ok(sender);
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
