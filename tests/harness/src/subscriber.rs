//! Subscribers for tests: HTTP servers on 127.0.0.1:0 that record every
//! request and answer as a script says.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request a subscriber got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn id(&self) -> &str {
        self.header("ce-id").unwrap_or_default()
    }
}

/// What a subscriber answers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
    /// Answers only once this is true.
    pub gate: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Answer {
            status,
            headers: vec![],
            body: Bytes::new(),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    pub fn with_body(mut self, body: &str) -> Self {
        self.body = Bytes::copy_from_slice(body.as_bytes());
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Holds the answer until `gate` is true.
    pub fn until(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }
}

/// Decides the answer from the request and how many came before it.
pub type Script = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

pub struct Subscriber {
    pub addr: SocketAddr,
    /// Whether it serves HTTPS.
    tls: bool,
    received: Arc<Mutex<Vec<Received>>>,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// A subscriber that answers 202 to everything.
    pub async fn accepting() -> Self {
        Self::scripted(|_, _| Answer::status(202)).await
    }

    /// A subscriber that answers 202 over HTTPS, with the server
    /// certificate of `pki` (for 127.0.0.1).
    pub async fn accepting_tls(pki: &crate::tls::Pki) -> Self {
        Self::serve(Some(pki.acceptor()), |_, _| Answer::status(202)).await
    }

    pub async fn scripted(
        script: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(None, script).await
    }

    async fn serve(
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let is_tls = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script: Script = Arc::new(script);
        let received = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (r, i, m) = (received.clone(), in_flight.clone(), max_in_flight.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (script, received, in_flight, max_in_flight) =
                    (script.clone(), r.clone(), i.clone(), m.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (script, received, in_flight, max_in_flight) = (
                            script.clone(),
                            received.clone(),
                            in_flight.clone(),
                            max_in_flight.clone(),
                        );
                        async move {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max_in_flight.fetch_max(now, Ordering::SeqCst);
                            let at = Instant::now();
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let request = Received {
                                at,
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            };
                            let answer = {
                                let mut all = received.lock().expect("lock");
                                let answer = script(&request, all.len());
                                all.push(request);
                                answer
                            };
                            if let Some(mut gate) = answer.gate {
                                let _ = gate.wait_for(|open| *open).await;
                            }
                            tokio::time::sleep(answer.delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let mut response = Response::new(Full::new(answer.body));
                            *response.status_mut() =
                                StatusCode::from_u16(answer.status).expect("status");
                            for (k, v) in answer.headers {
                                response.headers_mut().insert(
                                    http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                                    http::HeaderValue::from_str(&v).expect("value"),
                                );
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        // A client that does not trust the certificate fails here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Subscriber {
            addr,
            tls: is_tls,
            received,
            max_in_flight,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The most requests that were open at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Received> {
        crate::eventually(&format!("{n} requests at {}", self.url()), deadline, || {
            let got = self.received();
            async move { (got.len() >= n).then_some(got) }
        })
        .await
    }

    /// Waits until requests for every id arrived; returns them all.
    pub async fn wait_for_ids(&self, ids: &[String], deadline: Duration) -> Vec<Received> {
        crate::eventually(
            &format!("{} ids at {}", ids.len(), self.url()),
            deadline,
            || {
                let got = self.received();
                let all = ids.iter().all(|id| got.iter().any(|r| r.id() == id));
                async move { all.then_some(got) }
            },
        )
        .await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A subscriber that reads each request and closes the connection without
/// a word; counts the requests.
pub struct HangUp {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HangUp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = stream.read(&mut buf).await {
                        if n > 0 {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        HangUp {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
