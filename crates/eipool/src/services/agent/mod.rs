//! The agent's loop: hold an address for this interface (adopting one it already has, claiming
//! one otherwise), verify it every `interval` ([`verify`]: the node first, EC2 rarely), and on a
//! loss take the same address back if it is free, or claim another (or stop). Only SIGTERM or
//! SIGINT ends it; then it releases with `release_on_exit`. Readiness goes to a [`Health`] that
//! the HTTP module serves, and changes only on a holding or an observed loss: EC2 being slow or
//! down is not a reason to take a media server out of service.

mod verify;

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::pure::classify::Standing;
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::services::claim::{self, ClaimConfig, Prior};
use crate::services::context::Context;
use crate::services::identity::{InterfaceLook, Resolved};
use crate::services::line::{Waiter, Woken};
use crate::services::{pool_view, release};
use crate::support::budget::Budget;
use crate::support::health::Health;
use crate::support::metrics;
use crate::support::output::Claimed;

use verify::{Verdict, Verifier};

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
    /// How often to ask EC2 even when the node says the address is there.
    pub(crate) ec2_check_every: Duration,
    /// What to do on drift.
    pub(crate) on_drift: OnDrift,
    /// Release the address on SIGTERM/SIGINT.
    pub(crate) release_on_exit: bool,
    /// Bound on the release at exit.
    pub(crate) release_timeout: Duration,
    /// Also list the whole pool every interval and export `eipool_pool_addresses{state}`.
    pub(crate) pool_metrics: bool,
}

/// Who learns of the address besides the env file the claim writes (`--output`): nobody for the
/// sidecar ([`Nothing`]); the Node's label and taint in node mode
/// (`services::node::NodePublisher`). Told only what EC2 shows: `holding` after a claim
/// validated the address on our interface, `lost` when EC2 or the node showed none is ours,
/// `unassigned` after a try to claim failed for another reason.
pub(crate) trait Publish {
    /// An address is held: a claim (or an adoption) saw it associated to our interface.
    async fn holding(&mut self, c: &Claimed) -> Result<(), Error>;
    /// No address is held, after a try to claim one failed (the pool is full, EC2 is down).
    async fn unassigned(&mut self) -> Result<(), Error>;
    /// No address is held, and EC2 or the node showed that none is on our interface: a loss
    /// (drift), or a pool found exhausted (a claim adopts what is on the interface first).
    /// Whatever still names an address must stop naming it, at once, before a reclaim.
    async fn lost(&mut self) -> Result<(), Error>;
    /// Once per interval, holding an address or waiting in the pool's line: finish what could
    /// not be published yet, and put back what someone else changed.
    async fn tick(&mut self) -> Result<(), Error>;
}

/// The sidecar's: the env file is all it publishes.
pub(crate) struct Nothing;

impl Publish for Nothing {
    async fn holding(&mut self, _: &Claimed) -> Result<(), Error> {
        Ok(())
    }
    async fn unassigned(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// The env file stays as it was: the media container shares the pod, and its readiness
    /// follows the agent's.
    async fn lost(&mut self) -> Result<(), Error> {
        Ok(())
    }
    async fn tick(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Hold and watch the address until SIGTERM/SIGINT (Ok), then release it if asked; or stop on a
/// failure no retry fixes, or on drift with `OnDrift::Exit`. `publish` learns of every change.
pub(crate) async fn run(
    cfg: &AgentConfig,
    ctx: &Context,
    found: Resolved,
    health: &Health,
    publish: &mut impl Publish,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let me = &found.me;
    let result = watch(cfg, ctx, me, found.look, health, publish, cancel).await;
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

/// Hold and watch the address until cancelled; returns what is held at the end. `look` (what
/// the identity's lookup saw on the interface) serves the first claim only.
async fn watch(
    cfg: &AgentConfig,
    ctx: &Context,
    me: &Identity,
    mut look: Option<InterfaceLook>,
    health: &Health,
    publish: &mut impl Publish,
    cancel: &CancellationToken,
) -> Result<Option<Claimed>, Error> {
    let mut held: Option<Claimed> = None;
    // After a loss: the address to take back if it is free, and the cause, kept in /readyz's
    // answer until a new address is held.
    let mut take_back: Option<AllocationId> = None;
    let mut drifted: Option<String> = None;
    let mut verifier = Verifier::new(cfg.ec2_check_every, rand::rng().random());
    let mut last_verified = Instant::now();
    // An agent that found the pool exhausted waits in the pool's line for a freed address.
    let mut waiter = Waiter::new(ctx, me);
    let mut waiting = false;
    // Since when the agent has waited in the line, to measure the wait once an address is held.
    let mut waiting_since: Option<Instant> = None;
    loop {
        if held.is_none() {
            let started = Instant::now();
            let prior = Prior {
                prefer: take_back.clone(),
                look: look.take(),
                // A newcomer leaves what is free to the servers already waiting; one in the
                // line claims at its turn, and one taking its own address back does not wait.
                behind_the_line: !waiter.in_line() && take_back.is_none(),
                waited_since: waiting_since,
            };
            let claim = claim::run(ctx, me, &cfg.claim, prior, started, cancel.child_token());
            match waiter.beating(claim).await {
                Ok(c) => {
                    match &take_back {
                        Some(a) if *a == c.allocation_id => {
                            info!(public_ip = %c.public_ip, "took the same address back: the media server keeps announcing it")
                        }
                        Some(_) => {
                            warn!(public_ip = %c.public_ip, "holding a new address: the env file names it; the media server must restart on it")
                        }
                        None => {
                            info!(public_ip = %c.public_ip, allocation_id = %c.allocation_id, reused = c.reused, "holding")
                        }
                    }
                    health.set(
                        true,
                        format!("holding {} ({})", c.public_ip, c.allocation_id),
                    );
                    take_back = None;
                    last_verified = Instant::now();
                    waiting = false;
                    waiting_since = None;
                    waiter.leave().await;
                    publish.holding(&c).await?;
                    held = Some(c);
                }
                Err(Error::Interrupted) => {
                    // Stopped while waiting (the kubelet restarting us): keep the server's place.
                    waiter.step_away().await;
                    return Ok(None);
                }
                Err(
                    e @ (Error::Usage(_)
                    | Error::Permission { .. }
                    | Error::KubePermission { .. }
                    | Error::Internal(_)),
                ) => {
                    waiter.leave().await;
                    return Err(e);
                }
                Err(e) => {
                    // In the line already (a try at our turn failed for a passing reason): keep
                    // the place, and its heartbeat, rather than sleep silent and be dropped.
                    waiting = matches!(e, Error::Exhausted { .. }) || waiter.in_line();
                    if matches!(e, Error::Exhausted { .. }) {
                        waiting_since.get_or_insert(started);
                        warn!(error = %e, "no address yet; waiting in the pool's line");
                    } else if waiting {
                        warn!(error = %e, "no address yet; keeping our place in the pool's line");
                    } else {
                        warn!(error = %e, "no address yet; trying again next interval");
                    }
                    let after = drifted
                        .as_deref()
                        .map(|d| format!(" (after {d})"))
                        .unwrap_or_default();
                    health.set(false, format!("no address{after}: {e}"));
                    // A place in the line keeps its heartbeat while a slow API server answers.
                    let told = if matches!(e, Error::Exhausted { .. }) {
                        waiter.beating(publish.lost()).await
                    } else {
                        waiter.beating(publish.unassigned()).await
                    };
                    if let Err(e) = told {
                        waiter.leave().await;
                        return Err(e);
                    }
                }
            }
        }
        if waiting {
            match turn_ticking(&mut waiter, publish, cfg.interval, cancel).await {
                Ok(Woken::Turn) => {}
                Ok(Woken::Cancelled) => {
                    waiter.step_away().await;
                    return Ok(held);
                }
                Err(e) => {
                    waiter.leave().await;
                    return Err(e);
                }
            }
            continue;
        }
        publish.tick().await?;
        tokio::select! {
            _ = cancel.cancelled() => return Ok(held),
            _ = tokio::time::sleep(cfg.interval) => {}
        }
        if let Some(c) = &held {
            let budget = Budget::new(Instant::now() + cfg.interval, cancel.clone());
            let loss = match verifier.check(ctx, me, c, &budget).await {
                Verdict::Holds => {
                    last_verified = Instant::now();
                    None
                }
                Verdict::Cancelled => return Ok(held),
                Verdict::Unknown(why) => {
                    metrics::global().verify_failures.inc();
                    warn!(error = %why, unverified_for_s = last_verified.elapsed().as_secs(), "could not verify the address; keeping it and serving");
                    None
                }
                Verdict::Lost(standing, seen) => {
                    let now_at = match (
                        &standing,
                        seen.as_ref().and_then(|a| a.association.as_ref()),
                    ) {
                        (Standing::Elsewhere, Some(x)) => format!(
                            "associated to {}",
                            x.network_interface_id
                                .as_ref()
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "another resource".into())
                        ),
                        (Standing::Gone, _) => "released".into(),
                        _ => "not associated".into(),
                    };
                    let msg = format!(
                        "drift: {} ({}) is no longer on {}; it is {now_at}",
                        c.public_ip, c.allocation_id, me.eni
                    );
                    Some((msg, standing == Standing::Free))
                }
                Verdict::LostOnNode { for_s, ec2 } => {
                    metrics::global().verify_failures.inc();
                    let msg = format!(
                        "drift: {} ({}) is no longer on {}: the node (IMDSv2) has not shown it there for {for_s} s, and EC2 cannot say ({ec2})",
                        c.public_ip, c.allocation_id, me.eni
                    );
                    Some((msg, false))
                }
            };
            if let Some((msg, free)) = loss {
                error!("{msg}");
                metrics::global().drift.inc();
                health.set(false, msg.clone());
                match cfg.on_drift {
                    OnDrift::Exit => return Err(Error::Drift(msg)),
                    OnDrift::Reclaim => {
                        // Free again: take it back, so the media server's address stays.
                        take_back = free.then(|| c.allocation_id.clone());
                        held = None;
                        drifted = Some(msg);
                        // Until a reclaim holds one, nothing may name the lost address
                        // (another node's soon): node mode taints and unlabels now.
                        publish.lost().await?;
                    }
                }
            }
        }
        metrics::global()
            .last_verified_age
            .set(last_verified.elapsed().as_secs() as i64);
        if cfg.pool_metrics {
            let budget = Budget::new(Instant::now() + cfg.interval, cancel.clone());
            pool_view::publish_gauges(ctx, &budget).await;
        }
    }
}

/// Wait for our turn in the pool's line, and meanwhile `publish.tick()` every `interval`, as
/// while an address is held: a waiting node's taint removed by hand is put back, not left off
/// until its turn. The turn is polled all along, so its heartbeat never stops for a slow tick.
async fn turn_ticking(
    waiter: &mut Waiter,
    publish: &mut impl Publish,
    interval: Duration,
    cancel: &CancellationToken,
) -> Result<Woken, Error> {
    let mut turn = std::pin::pin!(waiter.turn(interval, cancel));
    loop {
        tokio::select! {
            woken = &mut turn => return woken,
            _ = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            woken = &mut turn => return woken,
            told = publish.tick() => told?,
        }
    }
}
