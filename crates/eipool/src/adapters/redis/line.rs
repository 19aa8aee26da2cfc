//! The pool's waiting line: agents that found the pool exhausted wait here in ticket order, and
//! only the head may take a freed address (`plan::line_turn`). Every path that frees an address
//! (release, release on exit, gc, a claim giving back) counts it in `line:freed` (in the same
//! script that forgets its records); `pool grow` counts what it adds. Waiters ask every
//! `plan::LINE_POLL` on the same multiplexed connection as everything else; the ask is their
//! heartbeat, and a waiter silent for `plan::LINE_GHOST_AFTER` is dropped by the next ask.

use redis::AsyncCommands;
use tracing::instrument;

use super::scripts::{LINE_ASK, LINE_JOIN, LINE_LEAVE};
use super::{Redis, RedisError};
use crate::pure::plan::LINE_GHOST_AFTER;

/// One ask's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinePlace {
    /// Our place (0 = the head), or `None` when Redis lost it.
    pub(crate) place: Option<u64>,
    /// How many addresses the pool has seen freed (grows; starts again after an empty restart).
    pub(crate) freed: u64,
}

impl Redis {
    /// Join the line (again, with `ticket` when we had one) and return our ticket.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_join(&self, ticket: Option<u64>) -> Result<u64, RedisError> {
        let mut inv = LINE_JOIN.prepare_invoke();
        inv.key(self.key("line"))
            .key(self.key("line:beats"))
            .key(self.key("line:seq"))
            .arg(self.owner())
            .arg(ticket.unwrap_or(0));
        self.eval(inv).await
    }

    /// Heartbeat, drop the ghosts ahead of us, and say our place and the freed count.
    #[instrument(skip(self), level = "debug", err(level = "debug", Display))]
    pub(crate) async fn line_ask(&self) -> Result<LinePlace, RedisError> {
        let mut inv = LINE_ASK.prepare_invoke();
        inv.key(self.key("line"))
            .key(self.key("line:beats"))
            .key(self.key("line:freed"))
            .arg(self.owner())
            .arg(LINE_GHOST_AFTER.as_millis() as u64);
        let (place, freed): (i64, i64) = self.eval(inv).await?;
        Ok(LinePlace {
            place: u64::try_from(place).ok(),
            freed: freed.max(0) as u64,
        })
    }

    /// Leave the line (holding an address now, or shutting down).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_leave(&self) -> Result<(), RedisError> {
        let mut inv = LINE_LEAVE.prepare_invoke();
        inv.key(self.key("line"))
            .key(self.key("line:beats"))
            .arg(self.owner());
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// Count `n` addresses as come free (`pool grow`), waking the line.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_freed(&self, n: u64) -> Result<(), RedisError> {
        let key = self.key("line:freed");
        let _: i64 = self
            .bounded(|mut c| async move { c.incr(key, n).await })
            .await?;
        Ok(())
    }

    /// How many wait in the line (for status and the exporter; ghosts included until dropped).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_len(&self) -> Result<u64, RedisError> {
        let key = self.key("line");
        self.bounded(|mut c| async move { c.zcard(key).await })
            .await
    }
}
