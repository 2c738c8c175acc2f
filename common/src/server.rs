//! The HTTP serve loop every Ferry server runs: HTTP/1.1 and h2c on one
//! port (or HTTPS, with h2 by ALPN), a header read timeout so slow clients
//! cannot hold connections, and a graceful drain on shutdown bounded by a
//! grace period.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, Either, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::shutdown::{Shutdown, GRACE_PERIOD};

/// A whole body, or (the admin port's event stream) one that goes on;
/// `Either` keeps the request path's bodies unboxed.
pub type Body = Either<Full<Bytes>, UnsyncBoxBody<Bytes, Infallible>>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// A body of frames as they come.
pub fn streaming(
    body: impl http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
) -> Body {
    Either::Right(UnsyncBoxBody::new(body))
}

/// A request handler: every error is already an HTTP answer.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` until shutdown, then lets open requests
/// finish within the grace period.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, shutdown: Shutdown) {
    serve_with(listener, None, handler, shutdown).await
}

/// [`serve`] over TLS: each connection's handshake runs in its own task
/// (bounded like a request's headers), so a slow one holds up no other.
/// Requests carry [`ViaTls`].
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    serve_with(listener, Some(tls), handler, shutdown).await
}

/// The extension of a request that came over TLS.
#[derive(Clone, Copy, Debug)]
pub struct ViaTls;

async fn serve_with<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (handler, builder, watcher, tls) = (
            handler.clone(),
            builder.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let via_tls = tls.is_some();
            let service = service_fn(move |mut request: Request<Incoming>| {
                let handler = handler.clone();
                if via_tls {
                    request.extensions_mut().insert(ViaTls);
                }
                async move { Ok::<_, Infallible>(handler.handle(request).await) }
            });
            let result = match tls {
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE_PERIOD, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

/// A listening socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: std::net::SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds a listening socket; the error names the address.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// A response with a status and a plain-text body.
pub fn text(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static parts are valid")
}
