//! One shutdown signal for every task of a process: SIGINT or SIGTERM
//! cancels the token; tasks finish within their grace period.

use std::time::Duration;

pub use tokio_util::sync::CancellationToken as Shutdown;

/// How long components may take to drain once shutdown starts.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> Shutdown {
    let token = Shutdown::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
