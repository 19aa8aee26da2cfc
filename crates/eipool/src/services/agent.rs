//! The agent's loop: hold an address for this interface (adopting one it already has, claiming
//! one otherwise), check every `interval` with one DescribeAddresses by allocation id that the
//! address is still ours, and on drift reclaim (or stop). On SIGTERM/SIGINT, release with
//! `release_on_exit`. Readiness goes to a [`Health`] that the HTTP module serves.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::services::claim::{self, ClaimConfig};
use crate::services::context::Context;
use crate::services::{pool_view, release};
use crate::support::budget::Budget;
use crate::support::health::Health;
use crate::support::metrics;
use crate::support::output::Claimed;

/// What to do when the address is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDrift {
    /// Claim a new address with the same protocol and rewrite `--output`.
    Reclaim,
    /// Exit with code 3 (let Kubernetes restart the pod).
    Exit,
}

/// The agent's validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct AgentConfig {
    /// How to claim (pool, identity, Redis, timeouts, `--output`).
    pub(crate) claim: ClaimConfig,
    /// How often to check the address.
    pub(crate) interval: Duration,
    /// What to do on drift.
    pub(crate) on_drift: OnDrift,
    /// Release the address on SIGTERM/SIGINT.
    pub(crate) release_on_exit: bool,
    /// Bound on the release at exit.
    pub(crate) release_timeout: Duration,
    /// Also list the whole pool every interval and export `eipool_pool_addresses{state}`.
    pub(crate) pool_metrics: bool,
}

/// Hold and watch the address until SIGTERM/SIGINT (Ok), then release it if asked; or stop on a
/// failure no retry fixes.
pub(crate) async fn run(
    cfg: &AgentConfig,
    ctx: &Context,
    me: &Identity,
    health: &Health,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let result = watch(cfg, ctx, me, health, cancel).await;
    health.set(false, "shutting down".into());
    if let Ok(held) = &result {
        if cfg.release_on_exit {
            let budget = Budget::cleanup(Instant::now() + cfg.release_timeout);
            match release::release(ctx, &budget, me, held.as_ref().map(|c| &c.association_id)).await
            {
                Ok(r) => info!(released = r.released.len(), "released on exit"),
                Err(e) => {
                    error!(error = %e, "could not release on exit; `eipool gc` or the next claim on this interface will deal with it")
                }
            }
        }
    }
    result.map(drop)
}

/// Hold and watch the address until cancelled; returns what is held at the end.
async fn watch(
    cfg: &AgentConfig,
    ctx: &Context,
    me: &Identity,
    health: &Health,
    cancel: &CancellationToken,
) -> Result<Option<Claimed>, Error> {
    let mut held: Option<Claimed> = None;
    // Kept in /readyz's answer until a new address is held, so the cause stays visible.
    let mut drifted: Option<String> = None;
    loop {
        if held.is_none() {
            match claim::run(ctx, me, &cfg.claim, Instant::now(), cancel.child_token()).await {
                Ok(c) => {
                    info!(public_ip = %c.public_ip, allocation_id = %c.allocation_id, reused = c.reused, "holding");
                    health.set(
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
                    health.set(false, format!("no address{after}: {e}"));
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
                Err(crate::support::budget::Stopped::Interrupted(_)) => return Ok(held),
                Ok(Some(a)) if a.held_by_me(me) => {}
                Ok(seen) => {
                    let now_at = seen
                        .and_then(|a| a.association)
                        .map(|x| {
                            format!(
                                "associated to {}",
                                x.network_interface_id
                                    .map(String::from)
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
                    health.set(false, msg.clone());
                    match cfg.on_drift {
                        OnDrift::Exit => return Err(Error::Drift(msg)),
                        OnDrift::Reclaim => {
                            held = None;
                            drifted = Some(msg);
                        }
                    }
                }
                Err(crate::support::budget::Stopped::Failed(e)) => {
                    warn!(error = %e, "could not verify the address this interval")
                }
            }
        }
        if cfg.pool_metrics {
            let budget = Budget::new(Instant::now() + cfg.interval, cancel.clone());
            pool_view::publish_gauges(ctx, &budget).await;
        }
    }
}
