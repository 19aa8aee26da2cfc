//! Graceful shutdown: one [`CancellationToken`] for the process, cancelled on SIGTERM or SIGINT.
//! Every loop selects on it; work that holds something releases it before returning.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// A token cancelled when the process receives SIGTERM or SIGINT, which logs `then`: what the
/// command does next (it gives back what it holds, keeps its address, or just stops).
pub(crate) fn on_signals(then: &'static str) -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(signal = name, "shutting down: {then}");
        t.cancel();
    });
    Ok(token)
}
