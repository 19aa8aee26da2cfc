//! The pool's waiting line: an agent (or `claim --wait`) that found the pool exhausted joins it
//! and waits for its turn (`plan::line_turn`: only the head claims, when an address came free
//! or the backstop interval is due) instead of retrying every `--interval`. Without Redis, or
//! while Redis fails, it waits the backstop between tries: polling at a bounded rate.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::adapters::redis::Redis;
use crate::pure::error::Error;
use crate::pure::plan::{self, LineTurn};
use crate::services::claim::{self, ClaimConfig, Prior};
use crate::services::context::Context;
use crate::services::identity::Resolved;
use crate::support::metrics;
use crate::support::output::Claimed;

/// `eipool claim --wait`: claim; while the pool is exhausted, wait in its line for a freed
/// address and claim again, until the claim's deadline leaves no time for another try (then the
/// exhaustion stands: exit 69). The line is left however it ends.
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
    let mut waiter = Waiter::new(ctx.redis.clone());
    let mut look = found.look;
    let mut exhausted_before: Option<Error> = None;
    let result = loop {
        let prior = Prior {
            prefer: None,
            look: look.take(),
            // Queue behind those waiting only when there is time left to wait: with none, a
            // free address is better taken than left (a plain claim would take it).
            behind_the_line: !waiter.in_line() && Instant::now() < stop_waiting,
        };
        let tried = claim::run(ctx, &found.me, cfg, prior, started, cancel.clone()).await;
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
        let turn = waiter.turn(plan::CLAIM_LINE_BACKSTOP, &cancel);
        match tokio::time::timeout_at(stop_waiting, turn).await {
            Ok(Woken::Turn) => exhausted_before = Some(exhausted),
            Ok(Woken::Cancelled) => break Err(Error::Interrupted),
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

/// One agent's place in the line.
#[derive(Debug)]
pub(crate) struct Waiter {
    redis: Option<Redis>,
    ticket: Option<u64>,
    /// The freed count at our last try: a new try only when it moved.
    tried_at: Option<u64>,
}

impl Waiter {
    pub(crate) fn new(redis: Option<Redis>) -> Waiter {
        Waiter {
            redis,
            ticket: None,
            tried_at: None,
        }
    }

    /// Wait for our turn: with Redis, in the line (joined on first use); without, `backstop`.
    pub(crate) async fn turn(&mut self, backstop: Duration, cancel: &CancellationToken) -> Woken {
        let since = Instant::now();
        loop {
            let pause = match self.ask(since.elapsed() >= backstop).await {
                Some(LineTurn::Claim) => return Woken::Turn,
                Some(_) => plan::LINE_POLL,
                // No Redis, or it failed: EC2 at the backstop's bounded rate; Redis asked
                // again meanwhile, so the line resumes as soon as it answers.
                None if since.elapsed() >= backstop => return Woken::Turn,
                None => plan::LINE_POLL.min(backstop.saturating_sub(since.elapsed())),
            };
            tokio::select! {
                _ = cancel.cancelled() => return Woken::Cancelled,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One ask of the line: the turn, or `None` without Redis or when it failed.
    async fn ask(&mut self, backstop_due: bool) -> Option<LineTurn> {
        let redis = self.redis.clone()?;
        if self.ticket.is_none() {
            let t = self.join(&redis).await?;
            info!(
                ticket = t,
                "the pool is exhausted: waiting in its line for a freed address"
            );
        }
        let place = match redis.line_ask().await {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "could not ask the line; polling EC2 at --interval meanwhile");
                return None;
            }
        };
        metrics::global()
            .line_place
            .set(place.place.map(|p| p as i64).unwrap_or(-1));
        let moved = self.tried_at != Some(place.freed);
        let turn = plan::line_turn(place.place, moved, backstop_due);
        match turn {
            LineTurn::Claim => self.tried_at = Some(place.freed),
            LineTurn::Rejoin => {
                warn!(ticket = ?self.ticket, "Redis lost our place in the line (a restart?): joining again with our ticket");
                self.join(&redis).await?;
            }
            LineTurn::Wait => {}
        }
        Some(turn)
    }

    async fn join(&mut self, redis: &Redis) -> Option<u64> {
        match redis.line_join(self.ticket).await {
            Ok(t) => {
                self.ticket = Some(t);
                Some(t)
            }
            Err(e) => {
                debug!(error = %e, "could not join the line");
                None
            }
        }
    }

    /// Whether we hold a place in the line (joined, not left).
    pub(crate) fn in_line(&self) -> bool {
        self.ticket.is_some()
    }

    /// Leave the line (an address is held, or we stop).
    pub(crate) async fn leave(&mut self) {
        if self.ticket.take().is_none() {
            return;
        }
        self.tried_at = None;
        metrics::global().line_place.set(-1);
        if let Some(redis) = &self.redis {
            if let Err(e) = redis.line_leave().await {
                debug!(error = %e, "could not leave the line; the next waiter drops us as a ghost");
            }
        }
    }
}
