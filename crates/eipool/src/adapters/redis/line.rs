//! The pool's waiting line: servers that found the pool exhausted wait here in ticket order, and
//! only the head may take a freed address (`plan::line_turn`). A place belongs to the server (its
//! interface and private IP), not to the process: a waiter restarted by the kubelet keeps its
//! ticket. Every path that frees an address (release, release on exit, gc, a claim giving back)
//! counts it in `line:freed` (in the same script that forgets its records); `pool grow` counts
//! what it adds. Waiters ask every `plan::LINE_POLL` on the same multiplexed connection as
//! everything else; the ask is their heartbeat. A waiter silent for `plan::LINE_GHOST_AFTER` (or
//! stepped away past its grace) is dead: every ask drops the dead from the front of the line,
//! and the head's ask and every count of the line drop them wherever they stand.

use std::net::Ipv4Addr;
use std::time::Duration;

use tracing::instrument;

use super::scripts::{LINE_ASK, LINE_AWAY, LINE_JOIN, LINE_LEAVE, LINE_LEN};
use super::{Redis, RedisError};
use crate::pure::ids::EniId;
use crate::pure::plan::LINE_GHOST_AFTER;

/// One ask's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinePlace {
    /// Our place among the waiters present (0 = the head), or `None` when Redis lost it.
    pub(crate) place: Option<u64>,
    /// How many addresses the pool has seen freed (grows; starts again after an empty restart).
    pub(crate) freed: u64,
}

/// A waiting server's name in the line: its interface and private IP.
fn server(eni: &EniId, ip: Ipv4Addr) -> String {
    format!("{eni}/{ip}")
}

impl Redis {
    fn line_keys(&self) -> [String; 3] {
        [
            self.key("line"),
            self.key("line:beats"),
            self.key("line:away"),
        ]
    }

    /// Join the line for `eni`/`ip` (again, with `ticket` when we had one) and return the ticket:
    /// the one the server already holds, if it is still in the line.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_join(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
        ticket: Option<u64>,
    ) -> Result<u64, RedisError> {
        let mut inv = LINE_JOIN.prepare_invoke();
        inv.key(&self.line_keys())
            .arg(server(eni, ip))
            .arg(ticket.unwrap_or(0));
        self.eval(inv).await
    }

    /// Heartbeat, drop the dead, and say our place and the freed count.
    #[instrument(skip(self), level = "debug", err(level = "debug", Display))]
    pub(crate) async fn line_ask(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<LinePlace, RedisError> {
        let mut inv = LINE_ASK.prepare_invoke();
        inv.key(&self.line_keys())
            .key(self.key("line:freed"))
            .arg(server(eni, ip))
            .arg(LINE_GHOST_AFTER.as_millis() as u64);
        let (place, freed): (i64, i64) = self.eval(inv).await?;
        Ok(LinePlace {
            place: u64::try_from(place).ok(),
            freed: freed.max(0) as u64,
        })
    }

    /// Step away to restart: the server keeps its place for `grace` (the waiters behind take the
    /// turns meanwhile), then the sweep drops it.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_step_away(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
        grace: Duration,
    ) -> Result<(), RedisError> {
        let mut inv = LINE_AWAY.prepare_invoke();
        inv.key(&self.line_keys())
            .arg(server(eni, ip))
            .arg(grace.as_millis() as u64);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// Leave the line (holding an address now, or giving up).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_leave(&self, eni: &EniId, ip: Ipv4Addr) -> Result<(), RedisError> {
        let mut inv = LINE_LEAVE.prepare_invoke();
        inv.key(&self.line_keys()).arg(server(eni, ip));
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// Count `n` addresses as come free (`pool grow`), waking the line.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_freed(&self, n: u64) -> Result<(), RedisError> {
        let key = self.key("line:freed");
        let _: i64 = self
            .bounded(|mut c| async move {
                redis::cmd("INCRBY")
                    .arg(key)
                    .arg(n)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// How many servers wait in the line (for status, the exporter and a newcomer's yield), the
    /// dead dropped first; those stepped away to restart count until their grace ends.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn line_len(&self) -> Result<u64, RedisError> {
        let mut inv = LINE_LEN.prepare_invoke();
        inv.key(&self.line_keys())
            .arg(LINE_GHOST_AFTER.as_millis() as u64);
        self.eval(inv).await
    }
}
