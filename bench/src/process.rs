//! The processes a benchmark runs and measures: Ferry's components as
//! children, their footprint sampled while a measurement runs, and the
//! local addresses they are given.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::process::Child;

use crate::procstat::{self, Footprint};

/// A child process: `stop` ends it with SIGTERM; one left behind by an
/// error is killed when dropped.
pub struct Process {
    pub child: Child,
    /// Where /readyz is served (receiver, dispatcher).
    pub admin: Option<SocketAddr>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let admin = self.admin.context("this process serves no /readyz")?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let url: http::Uri = format!("http://{admin}/readyz").parse()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(response) = client.get(url.clone()).await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{admin} not ready after {timeout:?}")
    }

    /// SIGTERM, then wait for the exit (deliveries drain, offsets commit).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.wait().await;
    }
}

/// Samples a process's footprint while a measurement runs; keeps the peak.
///
/// On a thread of its own: reading `/proc/<pid>/net/tcp` takes milliseconds
/// with a few hundred sockets open, and on a worker of the bench's runtime
/// it held up the load generator and the sink, and so the very latencies
/// measured beside it.
pub struct Sampler {
    peak: Arc<Mutex<Footprint>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    pid: u32,
    cpu_at_start: f64,
}

impl Sampler {
    const PERIOD: Duration = Duration::from_millis(100);

    pub fn start(pid: u32, kafka_port: u16) -> Self {
        Self::sampling(pid, Some(kafka_port))
    }

    /// Memory, threads and CPU only: what a latency measurement reports,
    /// without the cost of counting connections beside it.
    pub fn memory(pid: u32) -> Self {
        Self::sampling(pid, None)
    }

    fn sampling(pid: u32, kafka_port: Option<u16>) -> Self {
        let cpu_at_start = procstat::cpu_seconds(pid);
        let peak = Arc::new(Mutex::new(Footprint::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = procstat::footprint(pid, kafka_port);
                    {
                        let mut peak = peak.lock().expect("peak lock");
                        peak.rss_mib = peak.rss_mib.max(now.rss_mib);
                        peak.threads = peak.threads.max(now.threads);
                        peak.connections = peak.connections.max(now.connections);
                    }
                    // The sampling period, not a wait for anything.
                    std::thread::park_timeout(Self::PERIOD);
                }
            })
        };
        Sampler {
            peak,
            stop,
            thread,
            pid,
            cpu_at_start,
        }
    }

    /// The peaks, and the CPU time used while sampling.
    pub fn finish(self) -> Footprint {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
        let mut footprint = *self.peak.lock().expect("peak lock");
        footprint.cpu_seconds = procstat::cpu_seconds(self.pid) - self.cpu_at_start;
        footprint
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A port free right now (the process given it binds it soon after).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind(loopback())?.local_addr()?)
}

pub async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() >= deadline {
            bail!("nothing listens on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
