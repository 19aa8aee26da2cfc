//! The HTTP endpoints of the agent and the exporter (axum): `/metrics` (OpenMetrics text),
//! `/healthz` (the process is alive) and `/readyz` (what [`Health`] says).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::pure::error::Error;
use crate::support::health::Health;
use crate::support::metrics::{self, Served};

/// A running server; [`Server::stop`] ends it gracefully.
pub(crate) struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Stop serving and wait for the server to finish.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serve `/metrics` (what `by` keeps), `/healthz` and `/readyz` on `listen` (`HOST:PORT`; a
/// host name is resolved here).
pub(crate) async fn serve(listen: &str, health: Health, by: Served) -> Result<Server, Error> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics::global().render(by),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                let (ready, detail) = h.get();
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, format!("{detail}\n"))
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::usage(format!("--listen {listen}: cannot listen there: {e}")))?;
    info!(%listen, "serving /metrics /healthz /readyz");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    });
    Ok(Server { stop, task })
}
