//! The claim's side of the herd: its slot of the shared EC2 pace, renewing its lease, what its
//! interface was taking before a crash, and going on without Redis for a while when Redis fails.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::protocol::Claimer;
use super::Stop;
use crate::adapters::herd::{Herd, HerdError, Lease};
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::plan;

/// After Redis fails (without `--require-lock`), how long to claim without it before trying again.
const REDIS_COOL_DOWN: Duration = Duration::from_secs(5);

impl Claimer {
    /// Wait for our slot of the herd's shared `rate` for `class` calls (reserved in Redis), so the
    /// herd reaches EC2 at the rate EC2 allows instead of being throttled. A lease held meanwhile
    /// is renewed every third of its lifetime. `Ok(false)`: that lease was lost while waiting.
    /// Without Redis there is no shared pace: backoff on throttling is all there is.
    pub(super) async fn pace(
        &mut self,
        class: &str,
        rate: plan::Rate,
        mut lease: Option<&mut Lease>,
    ) -> Result<bool, Stop> {
        let Some(herd) = self.live_herd().cloned() else {
            return Ok(true);
        };
        let mut left = match self.work.bounded(herd.pace(class, rate)).await? {
            Ok(wait) => wait,
            Err(e) => {
                let _ = self.redis_failed(e);
                return Ok(true);
            }
        };
        if !left.is_zero() {
            debug!(
                class,
                wait_ms = left.as_millis() as u64,
                "waiting for our slot of the herd's EC2 rate"
            );
        }
        while !left.is_zero() {
            let step = left.min(self.lease / 3);
            self.work.sleep(step).await?;
            left -= step;
            if let Some(l) = lease.as_deref_mut() {
                if !self.renew(l).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Renew the lease before an EC2 call. `Ok(false)`: the lease is gone; stop on this address.
    pub(super) async fn renew(&mut self, lease: &mut Lease) -> Result<bool, Stop> {
        let Some(herd) = self.live_herd().cloned() else {
            return Ok(true);
        };
        match self.work.bounded(herd.extend(lease)).await? {
            Ok(true) => Ok(true),
            Ok(false) => {
                warn!(allocation_id = %lease.alloc, fence = lease.fence, "lost the Redis lease (it ran out); stopping on this address");
                Ok(false)
            }
            // Redis went away mid-claim: keep going on the local lease only while it lasts;
            // EC2's compare-and-swap still guards the association.
            Err(e) => Ok(!self.redis_failed(e)),
        }
    }

    /// Record a Redis failure. Returns true when the claim must not go on without Redis.
    pub(super) fn redis_failed(&mut self, e: HerdError) -> bool {
        self.work.note(&e);
        if self.require_lock {
            warn!(error = %e, "Redis unavailable and --require-lock is set: waiting for it");
            true
        } else {
            warn!(error = %e, "Redis unavailable: claiming on EC2's compare-and-swap alone for a while");
            self.redis_down_until = Some(Instant::now() + REDIS_COOL_DOWN);
            false
        }
    }

    /// The herd's Redis, unless it is cooling down after a failure.
    pub(super) fn live_herd(&self) -> Option<&Herd> {
        match self.redis_down_until {
            Some(t) if Instant::now() < t && !self.require_lock => None,
            _ => self.herd.as_ref(),
        }
    }

    /// The address this interface was taking when a run of ours last stopped, per Redis.
    pub(super) async fn intent(&mut self, me: &Identity) -> Option<AllocationId> {
        let herd = self.live_herd()?.clone();
        match self
            .work
            .bounded(herd.intent_of(&me.eni, me.private_ip))
            .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.redis_failed(e);
                None
            }
            Err(_) => None,
        }
    }
}
