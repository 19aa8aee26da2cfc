//! The pool's waiting line: an agent (or `claim --wait`) that found the pool exhausted joins it
//! and waits for its turn (`plan::line_turn`: only the head claims, when an address came free,
//! and the head alone looks at the pool every `plan::LINE_WATCH` for an address freed outside
//! eipool) instead of retrying every `--interval`. The place belongs to the server (its
//! interface and private IP): a waiter stopped by a signal steps away and keeps it for
//! `plan::LINE_RESTART_GRACE`. While the head claims, it keeps sending its heartbeat. Without
//! Redis, or while Redis fails, it waits the backstop between tries: polling at a bounded rate.
//! A Redis that refuses the line's commands (ACL) stops the wait with the command to grant.

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::adapters::aws::Ec2Error;
use crate::adapters::redis::{PaceAsk, RedisError};
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::EniId;
use crate::pure::line::{self, Line};
use crate::pure::plan;
use crate::services::claim::{self, ClaimConfig, Prior};
use crate::services::context::Context;
use crate::services::identity::Resolved;
use crate::support::metrics;
use crate::support::output::Claimed;

/// `eipool claim --wait`: claim; while the pool is exhausted, wait in its line for a freed
/// address and claim again, until the claim's deadline leaves no time for another try (then the
/// exhaustion stands: exit 69). The line is left however it ends: a person or a script that
/// stops `claim --wait` gives its place up (the agent, restarted by the kubelet, keeps its own).
pub(crate) async fn claim_waiting(
    ctx: &Context,
    found: Resolved,
    cfg: &ClaimConfig,
    started: Instant,
    cancel: CancellationToken,
) -> Result<Claimed, Error> {
    let window = cfg
        .timeout
        .saturating_sub(plan::cleanup_reserve(cfg.timeout))
        .saturating_sub(plan::LINE_LAST_TRY);
    let stop_waiting = started + window;
    let mut waiter = Waiter::new(ctx, &found.me);
    let mut look = found.look;
    let mut exhausted_before: Option<Error> = None;
    let mut waiting_since: Option<Instant> = None;
    let result = loop {
        let prior = Prior {
            prefer: None,
            look: look.take(),
            // Queue behind those waiting only when there is time left to wait: with none, a
            // free address is better taken than left (a plain claim would take it).
            behind_the_line: !waiter.in_line() && Instant::now() < stop_waiting,
            waited_since: waiting_since,
        };
        let tried = waiter
            .beating(claim::run(
                ctx,
                &found.me,
                cfg,
                prior,
                started,
                cancel.clone(),
            ))
            .await;
        let exhausted = match (tried, exhausted_before.take()) {
            (Err(e @ Error::Exhausted { .. }), _) => e,
            // Woken near the end, the last try ran out of time: the pool was and is full, which
            // is what the wait ends on (69), not a passing failure (75).
            (Err(Error::Temporary { .. }), Some(before)) if Instant::now() >= stop_waiting => {
                break Err(before)
            }
            (other, _) => break other,
        };
        if Instant::now() >= stop_waiting {
            break Err(exhausted);
        }
        waiting_since.get_or_insert_with(Instant::now);
        let turn = waiter.turn(plan::CLAIM_LINE_BACKSTOP, &cancel);
        match tokio::time::timeout_at(stop_waiting, turn).await {
            Ok(Ok(Woken::Turn)) => exhausted_before = Some(exhausted),
            Ok(Ok(Woken::Cancelled)) => break Err(Error::Interrupted),
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                info!("no address was freed in time: giving up the wait");
                break Err(exhausted);
            }
        }
    };
    waiter.leave().await;
    result
}

/// Why the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Our turn: claim now.
    Turn,
    /// Cancelled (SIGTERM/SIGINT).
    Cancelled,
}

/// One server's place in the line: the driver of the line machine ([`crate::pure::line`]).
#[derive(Debug)]
pub(crate) struct Waiter {
    ctx: Context,
    eni: EniId,
    ip: Ipv4Addr,
    line: Line,
    /// The line machine's clock.
    epoch: Instant,
}

impl Waiter {
    /// `me`'s place in `ctx`'s pool's line (joined on first wait).
    pub(crate) fn new(ctx: &Context, me: &Identity) -> Waiter {
        Waiter {
            ctx: ctx.clone(),
            eni: me.eni.clone(),
            ip: me.private_ip,
            line: Line::new(),
            epoch: Instant::now(),
        }
    }

    /// Wait for our turn: with Redis, in the line (joined on first use); without, `backstop`.
    /// `Err`: Redis refuses the line's commands (a misconfiguration: exit 2, naming what to
    /// grant). The line machine decides; this performs its calls.
    pub(crate) async fn turn(
        &mut self,
        backstop: Duration,
        cancel: &CancellationToken,
    ) -> Result<Woken, Error> {
        let mut input = line::Input::Start { backstop };
        loop {
            let call = self.line.step(input, self.epoch.elapsed());
            input = match call {
                line::Call::Turn => return Ok(Woken::Turn),
                line::Call::Join { ticket } => line::Input::Joined(self.join(ticket).await?),
                line::Call::Ask => line::Input::Asked(self.ask().await?),
                // The look may wait for a describe slot: the heartbeat goes on meanwhile.
                line::Call::Look => line::Input::Looked(tokio::select! {
                    _ = cancel.cancelled() => return Ok(Woken::Cancelled),
                    free = self.beating(self.look()) => free,
                }),
                line::Call::Sleep(pause) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(Woken::Cancelled),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    line::Input::Slept
                }
            };
        }
    }

    /// Our place, or `None` without Redis or when it is unavailable.
    async fn ask(&mut self) -> Result<Option<line::Place>, Error> {
        let Some(redis) = self.ctx.redis.clone() else {
            return Ok(None);
        };
        match redis.line_ask(&self.eni, self.ip).await {
            Ok(p) => {
                metrics::global()
                    .line_place
                    .set(p.place.map(|p| p as i64).unwrap_or(-1));
                Ok(Some(line::Place {
                    place: p.place,
                    freed: p.freed,
                }))
            }
            Err(e) => {
                loud(e, "ask the line")?;
                Ok(None)
            }
        }
    }

    /// Join the line (again, with our `ticket`, when Redis lost our place): our ticket, or
    /// `None` without Redis or when it is unavailable.
    async fn join(&mut self, ticket: Option<u64>) -> Result<Option<u64>, Error> {
        let Some(redis) = self.ctx.redis.clone() else {
            return Ok(None);
        };
        if ticket.is_some() {
            warn!(?ticket, "Redis lost our place in the line (a restart, or we were silent too long): joining again with our ticket");
        }
        match redis.line_join(&self.eni, self.ip, ticket).await {
            Ok(t) => {
                match ticket {
                    None => info!(
                        ticket = t,
                        "the pool is exhausted: waiting in its line for a freed address"
                    ),
                    Some(had) if had != t => info!(ticket = t, "rejoined the line"),
                    Some(_) => {}
                }
                Ok(Some(t))
            }
            Err(e) => {
                loud(e, "join the line")?;
                Ok(None)
            }
        }
    }

    /// The head's look at the pool (one DescribeAddresses in the herd's describe pace): whether
    /// it shows an address free, which an address freed outside eipool (by hand, by an instance
    /// terminated without a preStop) wakes no one else to.
    async fn look(&self) -> bool {
        let (class, rate) = (plan::PACE_DESCRIBE_ADDRESSES, &plan::DESCRIBE_PACE);
        let mut ticket = None;
        if let Some(redis) = &self.ctx.redis {
            match redis.paced(class, rate).await {
                Ok(t) => ticket = Some(t),
                Err(e) => debug!(error = %e, "no describe slot from Redis; looking anyway"),
            }
        }
        match self.ctx.ec2.describe_pool(&self.ctx.pool).await {
            Ok(listing) => {
                let free = listing.iter().any(|a| a.association.is_none());
                if free {
                    info!("the pool shows a free address (freed outside eipool?): our turn");
                }
                free
            }
            Err(e) => {
                debug!(error = %e, "could not look at the pool; the line's wake-up still counts");
                // Throttled: the herd's describe pace slows, as for a claim's own call.
                if let (Ec2Error::Throttled { .. }, Some(redis), Some(t)) =
                    (&e, &self.ctx.redis, ticket)
                {
                    if let Ok(a) = redis.pace(class, rate, PaceAsk::Throttled(t)).await {
                        if a.cut {
                            info!(per_second = a.rate, "EC2 throttled the line's look at the pool: the herd's describe pace slows");
                        }
                    }
                }
                false
            }
        }
    }

    /// Run `claim` while keeping our place: the head's heartbeat goes on while it claims, so a
    /// claim slower than `plan::LINE_GHOST_AFTER` (EC2 throttling, a slow validation) is not
    /// taken for a dead waiter, which would let the waiter behind claim too.
    pub(crate) async fn beating<F: Future>(&self, claim: F) -> F::Output {
        let Some(redis) = self.ctx.redis.clone().filter(|_| self.in_line()) else {
            return claim.await;
        };
        let (eni, ip) = (self.eni.clone(), self.ip);
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(plan::LINE_POLL).await;
                if let Err(e) = redis.line_ask(&eni, ip).await {
                    debug!(error = %e, "could not send the line our heartbeat while claiming");
                }
            }
        });
        let _stop = AbortOnDrop(beat);
        claim.await
    }

    /// Whether we hold a place in the line (joined, not left).
    pub(crate) fn in_line(&self) -> bool {
        self.line.ticket().is_some()
    }

    /// Leave the line (an address is held, or we give up). Also when this process never joined:
    /// a server restarted within its grace that got an address at once leaves the place it kept.
    pub(crate) async fn leave(&mut self) {
        self.line.left();
        metrics::global().line_place.set(-1);
        if let Some(redis) = &self.ctx.redis {
            if let Err(e) = redis.line_leave(&self.eni, self.ip).await {
                quiet(e, "leave the line; the sweep drops us within seconds");
            }
        }
    }

    /// Step away to restart (SIGTERM/SIGINT while waiting: the kubelet restarting the agent):
    /// the place stays ours for `plan::LINE_RESTART_GRACE`.
    pub(crate) async fn step_away(&mut self) {
        if self.line.left().is_none() {
            return;
        }
        metrics::global().line_place.set(-1);
        if let Some(redis) = &self.ctx.redis {
            match redis
                .line_step_away(&self.eni, self.ip, plan::LINE_RESTART_GRACE)
                .await
            {
                Ok(()) => info!(
                    grace_s = plan::LINE_RESTART_GRACE.as_secs(),
                    "stepped away from the pool's line: a restart within the grace keeps our place"
                ),
                Err(e) => quiet(e, "keep our place in the line"),
            }
        }
    }
}

/// A Redis failure while waiting: a misconfiguration (the ACL refuses a command of the line)
/// stops the wait, naming what to grant; unavailability is ridden out (`Ok`).
fn loud(e: RedisError, what: &str) -> Result<(), Error> {
    match e {
        e @ RedisError::Misconfigured(_) => Err(e.into()),
        e => {
            debug!(error = %e, "could not {what}; polling EC2 at the backstop meanwhile");
            Ok(())
        }
    }
}

/// A Redis failure on the way out: warned when Redis refuses (an ACL to fix), else noted.
fn quiet(e: RedisError, what: &str) {
    match e {
        e @ RedisError::Misconfigured(_) => warn!(error = %e, "could not {what}"),
        e => debug!(error = %e, "could not {what}"),
    }
}

/// Stops the heartbeat when the claim ends (or is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
