//! The claim's side of the herd: the interface lease (one claim per interface at a time), its
//! slot of the shared EC2 pace, renewing its address lease, settling Redis markers against EC2,
//! what its interface was taking before a crash, and going on without Redis for a while when
//! Redis fails.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::protocol::Claimer;
use super::Stop;
use crate::adapters::herd::{Herd, HerdError, Lease};
use crate::pure::address::Address;
use crate::pure::identity::Identity;
use crate::pure::ids::AllocationId;
use crate::pure::plan::{self, MaskedVerdict};
use crate::support::budget::Budget;

/// After Redis fails (without `--require-lock`), how long to claim without it before trying again.
const REDIS_COOL_DOWN: Duration = Duration::from_secs(5);
/// How often a claim waiting for another claim of the same interface looks again.
const INTERFACE_POLL: Duration = Duration::from_millis(200);

/// The interface lease, held while the claim runs: a background task renews it.
pub(super) struct InterfaceLease {
    renewer: Option<JoinHandle<()>>,
}

impl Drop for InterfaceLease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

impl Claimer {
    /// Take the interface lease, waiting while another claim for this interface runs: AWS
    /// replaces an Elastic IP already on a private IP, so two claims for one interface at once
    /// could each associate an address and leave one of them reporting an address it lost.
    /// Without Redis (and without `--require-lock`) there is no lease: the occupant check and
    /// validation still catch a replaced association.
    pub(super) async fn lock_interface(&mut self, me: &Identity) -> Result<InterfaceLease, Stop> {
        let mut said = false;
        let mut failures = 0;
        let herd = loop {
            let Some(herd) = self.live_herd().cloned() else {
                return Ok(InterfaceLease { renewer: None });
            };
            match self
                .work
                .bounded(herd.lock_interface(&me.eni, me.private_ip))
                .await?
            {
                Ok(true) => break herd,
                Ok(false) => {
                    if !said {
                        info!(eni = %me.eni, private_ip = %me.private_ip, "another claim for this interface is running; waiting for it to finish");
                        said = true;
                    }
                    self.work.sleep(INTERFACE_POLL).await?;
                }
                Err(e) => {
                    if !self.redis_failed(e)? {
                        return Ok(InterfaceLease { renewer: None });
                    }
                    self.work.sleep(Budget::backoff(failures)).await?;
                    failures += 1;
                }
            }
        };
        let (eni, ip, every) = (me.eni.clone(), me.private_ip, self.lease / 3);
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(false) = herd.lock_interface(&eni, ip).await {
                    warn!(%eni, "lost the interface lease (it ran out); another claim for this interface may start");
                }
            }
        });
        Ok(InterfaceLease {
            renewer: Some(renewer),
        })
    }

    /// Give the interface lease back (best effort: it expires on its own).
    pub(super) async fn unlock_interface(&self, mut lease: InterfaceLease, me: &Identity) {
        let Some(renewer) = lease.renewer.take() else {
            return;
        };
        renewer.abort();
        if let Some(herd) = &self.herd {
            if let Ok(Err(e)) = self
                .cleanup
                .bounded(herd.unlock_interface(&me.eni, me.private_ip))
                .await
            {
                debug!(error = %e, "could not give the interface lease back; it will expire");
            }
        }
    }

    /// Ask EC2 (one DescribeAddresses by allocation id) about addresses our own listing shows
    /// free but Redis marks assigned: EC2 outvotes a marker older than its consistency bound,
    /// which is then dropped. Returns the candidates to try again now, and those to wait for
    /// with how long until their marker is old enough to be outvoted.
    pub(super) async fn settle_masked(
        &mut self,
        masked: Vec<(Address, Duration)>,
    ) -> Result<(Vec<Address>, Vec<(Address, Duration)>), Stop> {
        let allocs: Vec<AllocationId> = masked
            .iter()
            .map(|(a, _)| a.allocation_id.clone())
            .collect();
        self.pace("describe", plan::DESCRIBE_PACE, None).await?;
        let ec2 = self.ec2.clone();
        let seen = self
            .work
            .retry("check masked", || ec2.describe_addresses(&allocs))
            .await?;
        let (mut cleared, mut waiting) = (Vec::new(), Vec::new());
        for (cand, age) in masked {
            let now = seen.iter().find(|a| a.allocation_id == cand.allocation_id);
            let free = now.is_some_and(|a| a.association.is_none());
            match plan::masked_verdict(free, age) {
                MaskedVerdict::Taken => {}
                MaskedVerdict::Wait => waiting.push((cand, plan::CONSISTENCY_BOUND - age)),
                MaskedVerdict::ClearMarker => {
                    info!(allocation_id = %cand.allocation_id, marker_age_ms = age.as_millis() as u64, "Redis marks it assigned but EC2 shows it free: dropping the marker");
                    if let Some(herd) = self.live_herd().cloned() {
                        if let Ok(Err(e)) = self
                            .work
                            .bounded(
                                herd.clear_marker(&cand.allocation_id, plan::CONSISTENCY_BOUND),
                            )
                            .await
                        {
                            self.redis_failed(e)?;
                        }
                    }
                    cleared.extend(now.cloned());
                }
            }
        }
        Ok((cleared, waiting))
    }

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
                self.redis_failed(e)?;
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
            Err(e) => Ok(!self.redis_failed(e)?),
        }
    }

    /// Record a Redis failure. `Ok(true)`: the claim must not go on without Redis (it waits for
    /// it, `--require-lock`); `Ok(false)`: it goes on without Redis for a while. A Redis that
    /// answers but can never work (credentials, ACL, a replica, TLS trust) stops the claim at
    /// once, whatever `--require-lock` says: running without locks forever is not an outage
    /// to ride out but a deployment to fix.
    pub(super) fn redis_failed(&mut self, e: HerdError) -> Result<bool, Stop> {
        if matches!(e, HerdError::Misconfigured(_)) {
            return Err(Stop::Fatal(e.into()));
        }
        self.work.note(&e);
        if self.require_lock {
            warn!(error = %e, "Redis unavailable and --require-lock is set: waiting for it");
            Ok(true)
        } else {
            warn!(error = %e, "Redis unavailable: claiming on EC2's compare-and-swap alone for a while");
            self.redis_down_until = Some(Instant::now() + REDIS_COOL_DOWN);
            Ok(false)
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
    pub(super) async fn intent(&mut self, me: &Identity) -> Result<Option<AllocationId>, Stop> {
        let Some(herd) = self.live_herd().cloned() else {
            return Ok(None);
        };
        match self
            .work
            .bounded(herd.intent_of(&me.eni, me.private_ip))
            .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.redis_failed(e)?;
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }
}
