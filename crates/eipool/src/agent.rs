//! `eipool agent`: the sidecar. Holds an address for this interface (adopting one it already
//! has, claiming one otherwise), checks every `--interval` with one DescribeAddresses by
//! allocation id that the address is still ours, and on drift reclaims (or exits). Serves
//! `/metrics`, `/healthz` and `/readyz`. On SIGTERM/SIGINT, releases with `--release-on-exit`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::budget::Budget;
use crate::claim;
use crate::config::ClaimConfig;
use crate::context::{self, Context};
use crate::error::Error;
use crate::identity::{self, Identity};
use crate::metrics;
use crate::output::Claimed;
use crate::release;
use crate::status::{self, State as AddrState};

/// What to do when the address is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDrift {
    /// Claim a new address with the same protocol and rewrite `--output`.
    Reclaim,
    /// Exit with code 3 (let Kubernetes restart the pod).
    Exit,
}

/// The agent's validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// How to claim (pool, identity, Redis, timeouts, `--output`).
    pub claim: ClaimConfig,
    /// Where to serve HTTP.
    pub listen: SocketAddr,
    /// How often to check the address.
    pub interval: Duration,
    /// What to do on drift.
    pub on_drift: OnDrift,
    /// Release the address on SIGTERM/SIGINT.
    pub release_on_exit: bool,
    /// Bound on the release at exit.
    pub release_timeout: Duration,
    /// Also list the whole pool every interval and export `eipool_pool_addresses{state}`.
    pub pool_metrics: bool,
}

/// What `/readyz` answers.
#[derive(Debug, Default)]
pub struct Health {
    ready: bool,
    detail: String,
}

/// [`Health`], shared with the HTTP handlers.
pub type Shared = Arc<Mutex<Health>>;

/// Set readiness (and the `eipool_ready` gauge).
pub fn set(health: &Shared, ready: bool, detail: String) {
    metrics::global().ready.set(i64::from(ready));
    let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
    h.ready = ready;
    h.detail = detail;
}

async fn serve(
    listen: SocketAddr,
    health: Shared,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics::global().render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(h): State<Shared>| async move {
                let h = h.lock().unwrap_or_else(|p| p.into_inner());
                let code = if h.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, format!("{}\n", h.detail))
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Usage(format!("--listen {listen}: cannot listen there: {e}")))?;
    info!(%listen, "serving /metrics /healthz /readyz");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    }))
}

/// Run the agent until SIGTERM/SIGINT (Ok) or a failure no retry fixes.
pub async fn run(cfg: AgentConfig, cancel: CancellationToken) -> Result<(), Error> {
    let health: Shared = Arc::new(Mutex::new(Health {
        ready: false,
        detail: "starting: no address yet".into(),
    }));
    let http_stop = CancellationToken::new();
    let server = serve(cfg.listen, health.clone(), http_stop.clone()).await?;
    let ctx = context::connect(
        &cfg.claim.pool,
        cfg.claim.redis.as_ref(),
        cfg.claim.call_timeout,
        cfg.claim.lease,
    )
    .await?;
    let start_budget = Budget::new(Instant::now() + cfg.claim.timeout, cancel.clone());
    let me = match identity::resolve_in(
        &ctx.ec2,
        &start_budget,
        &cfg.claim.identity,
        cfg.claim.private_ip,
    )
    .await
    {
        Ok(me) => me,
        Err(Error::Interrupted) => return Ok(()),
        Err(e) => return Err(e),
    };

    let result = watch(&cfg, &ctx, &me, &health, &cancel).await;
    set(&health, false, "shutting down".into());
    if let Ok(held) = &result {
        if cfg.release_on_exit {
            let budget = Budget::new(
                Instant::now() + cfg.release_timeout,
                CancellationToken::new(),
            );
            match release::release(&ctx, &budget, &me, held.as_ref().map(|c| &c.association_id))
                .await
            {
                Ok(r) => info!(released = r.released.len(), "released on exit"),
                Err(e) => {
                    error!(error = %e, "could not release on exit; `eipool gc` or the next claim on this interface will deal with it")
                }
            }
        }
    }
    http_stop.cancel();
    let _ = server.await;
    result.map(drop)
}

/// Hold and watch the address until cancelled; returns what is held at the end.
async fn watch(
    cfg: &AgentConfig,
    ctx: &Context,
    me: &Identity,
    health: &Shared,
    cancel: &CancellationToken,
) -> Result<Option<Claimed>, Error> {
    let mut held: Option<Claimed> = None;
    // Kept in /readyz's answer until a new address is held, so the cause stays visible.
    let mut drifted: Option<String> = None;
    loop {
        if held.is_none() {
            match claim::run(cfg.claim.clone(), cancel.child_token()).await {
                Ok(c) => {
                    info!(public_ip = %c.public_ip, allocation_id = %c.allocation_id, reused = c.reused, "holding");
                    set(
                        health,
                        true,
                        format!("holding {} ({})", c.public_ip, c.allocation_id),
                    );
                    held = Some(c);
                }
                Err(Error::Interrupted) => return Ok(None),
                Err(e @ (Error::Usage(_) | Error::Permission { .. } | Error::Internal(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    warn!(error = %e, "no address yet; trying again next interval");
                    let after = drifted
                        .as_deref()
                        .map(|d| format!(" (after {d})"))
                        .unwrap_or_default();
                    set(health, false, format!("no address{after}: {e}"));
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(held),
            _ = tokio::time::sleep(cfg.interval) => {}
        }
        if let Some(c) = &held {
            let budget = Budget::new(Instant::now() + cfg.interval, cancel.clone());
            match budget
                .retry("verify", || ctx.ec2.describe_address(&c.allocation_id))
                .await
            {
                Err(_) => return Ok(held),
                Ok(Ok(Some(a))) if a.held_by(&me.eni, me.private_ip) => {}
                Ok(Ok(seen)) => {
                    let now_at = seen
                        .and_then(|a| a.association)
                        .map(|x| {
                            format!(
                                "associated to {}",
                                x.network_interface_id
                                    .map(|e| e.0)
                                    .unwrap_or_else(|| "another resource".into())
                            )
                        })
                        .unwrap_or_else(|| "not associated (or released)".into());
                    let msg = format!(
                        "drift: {} ({}) is no longer on {}; it is {now_at}",
                        c.public_ip, c.allocation_id, me.eni
                    );
                    error!("{msg}");
                    metrics::global().drift.inc();
                    set(health, false, msg.clone());
                    match cfg.on_drift {
                        OnDrift::Exit => return Err(Error::Drift(msg)),
                        OnDrift::Reclaim => {
                            held = None;
                            drifted = Some(msg);
                        }
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "could not verify the address this interval"),
            }
        }
        if cfg.pool_metrics {
            let budget = Budget::new(Instant::now() + cfg.interval, cancel.clone());
            match status::collect(ctx, &budget).await {
                Ok(st) => {
                    metrics::global().set_pool(&AddrState::ALL.map(|s| (s.name(), st.count(s))))
                }
                Err(e) => warn!(error = %e, "could not read the pool for its metrics"),
            }
        }
    }
}

/// Read the pool once (within `interval`) and set `eipool_pool_addresses{state}`.
async fn export_pool(ctx: &Context, interval: Duration, cancel: &CancellationToken) -> bool {
    let budget = Budget::new(Instant::now() + interval, cancel.clone());
    match status::collect(ctx, &budget).await {
        Ok(st) => {
            metrics::global().set_pool(&AddrState::ALL.map(|s| (s.name(), st.count(s))));
            true
        }
        Err(e) => {
            warn!(error = %e, "could not read the pool for its metrics");
            false
        }
    }
}

/// `eipool exporter`: the pool's gauges for alerts, from one replica (every agent listing the
/// whole pool would spend the describe budget a herd needs). Ready once a read succeeded.
pub async fn exporter(
    ctx: Context,
    listen: SocketAddr,
    interval: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let health: Shared = Arc::new(Mutex::new(Health {
        ready: false,
        detail: "starting: pool not read yet".into(),
    }));
    let stop = CancellationToken::new();
    let server = serve(listen, health.clone(), stop.clone()).await?;
    loop {
        if export_pool(&ctx, interval, &cancel).await {
            set(&health, true, format!("pool {:?} read", ctx.pool));
        } else {
            set(
                &health,
                false,
                format!("could not read pool {:?}", ctx.pool),
            );
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    stop.cancel();
    let _ = server.await;
    Ok(())
}
