//! The herd's shared pace of EC2 calls: an adaptive GCRA in Redis ([`plan::PaceState`], run by
//! the `PACE` script) hands out numbered tickets and says when each is due, so a herd reaches
//! EC2 at the rate EC2 allows instead of being throttled; when EC2 throttles one of its calls
//! anyway (another caller in the account draws from the same bucket), the whole herd slows, and
//! speeds up again once throttling stops.

use std::time::Duration;

use tracing::instrument;

use super::scripts::PACE;
use super::{Redis, RedisError};
use crate::pure::plan::{self, Rate};

/// What a caller asks the pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceAsk {
    /// A ticket for one call.
    Take,
    /// How long until this ticket is due (asked again before the call: the pace may have slowed).
    Due(u64),
    /// EC2 throttled the call made on this ticket.
    Throttled(u64),
}

/// The pace's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceAnswer {
    /// The ticket (the one asked about, or the one taken).
    pub ticket: u64,
    /// How long until it is due; `None` for a ticket the pace does not know (Redis lost its
    /// state since): take another.
    pub wait: Option<Duration>,
    /// The rate is below its ceiling, growing back: a waiting caller asks again every
    /// [`plan::PACE_RECHECK`], as its ticket may come due sooner.
    pub recovering: bool,
    /// This report of a throttled call slowed the pace.
    pub cut: bool,
    /// The pace's rate now, in calls per second.
    pub rate: f64,
}

impl Redis {
    /// Ask the region's shared pace of `class` calls (e.g. EC2's AssociateAddress), whose
    /// ceiling is `rate`.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn pace(
        &self,
        class: &str,
        rate: &Rate,
        ask: PaceAsk,
    ) -> Result<PaceAnswer, RedisError> {
        self.pace_at(class, rate, ask, None).await
    }

    /// [`Redis::pace`] at a given time (ms) instead of Redis's clock: for the tests that check
    /// the script against [`plan::PaceState`].
    pub async fn pace_at(
        &self,
        class: &str,
        rate: &Rate,
        ask: PaceAsk,
        now_ms: Option<f64>,
    ) -> Result<PaceAnswer, RedisError> {
        let (op, ticket) = match ask {
            PaceAsk::Take => ("take", 0),
            PaceAsk::Due(t) => ("due", t),
            PaceAsk::Throttled(t) => ("throttled", t),
        };
        let mut inv = PACE.prepare_invoke();
        inv.key(self.pace_key(class))
            .arg(op)
            .arg(ticket)
            .arg(rate.burst)
            .arg(rate.per_second)
            .arg(rate.spacing.as_secs_f64() * 1000.0)
            .arg(plan::PACE_DECREASE)
            .arg(plan::PACE_RECOVERY)
            .arg(plan::PACE_FLOOR)
            .arg(now_ms.map(|t| t.to_string()).unwrap_or_default());
        let (ticket, wait_ms, recovering, cut, millirate): (u64, i64, i64, i64, i64) =
            self.eval(inv).await?;
        Ok(PaceAnswer {
            ticket,
            wait: u64::try_from(wait_ms).ok().map(Duration::from_millis),
            recovering: recovering == 1,
            cut: cut == 1,
            rate: millirate as f64 / 1000.0,
        })
    }

    /// Take a ticket of the shared pace of `class` calls and wait until it is due, asking again
    /// before returning it (for callers that hold no lease meanwhile: the identity's lookup, the
    /// line's look at the pool). Report a throttled call with [`PaceAsk::Throttled`].
    pub(crate) async fn paced(&self, class: &str, rate: &Rate) -> Result<u64, RedisError> {
        let mut turn = self.pace(class, rate, PaceAsk::Take).await?;
        loop {
            match turn.wait {
                Some(w) if w.is_zero() => return Ok(turn.ticket),
                Some(w) => {
                    let step = if turn.recovering {
                        w.min(plan::PACE_RECHECK)
                    } else {
                        w
                    };
                    tokio::time::sleep(step).await;
                    turn = self.pace(class, rate, PaceAsk::Due(turn.ticket)).await?;
                }
                None => turn = self.pace(class, rate, PaceAsk::Take).await?,
            }
        }
    }
}
