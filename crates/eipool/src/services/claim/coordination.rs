//! With or without Redis: the claim's coordination with the herd, owned here alone. Redis, when
//! it answers, keeps the herd off each other's toes: the interface lease (one claim per interface
//! at a time), a lease per address, the shared EC2 pace, the shared listing, what an interface
//! was taking before a crash, and the markers on what was just taken. When Redis fails, the
//! claim goes on without it for a cool-down (or waits for it, `--require-leases`), and every
//! method here answers as "no coordination" meanwhile: no other file asks whether Redis is live.
//! The decisions (the cool-down, a marker's verdict) are in [`plan`].

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Stop;
use crate::adapters::aws::Ec2;
use crate::adapters::redis::{Acquire, Lease, Redis, RedisError, SharedListing};
use crate::pure::address::Address;
use crate::pure::claim::Recalled;
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, EniId};
use crate::pure::plan::{self, RedisFailure, RedisHealth};
use crate::support::budget::Budget;
use crate::support::output::Claimed;

mod pace;

pub(super) use pace::{PaceClass, Slot};

/// The claim's coordination with the herd: Redis when configured and not cooling down after a
/// failure, nothing otherwise.
pub(super) struct Coordination {
    redis: Option<Redis>,
    /// Whether to ask Redis now, fed the time since `epoch` ([`RedisHealth`]: a cool-down after
    /// a failure, or `--require-leases`).
    health: RedisHealth,
    epoch: Instant,
    /// Lease on an address (renewed while waiting for a paced slot).
    lease: Duration,
    /// The interface and private IP whose interface lease this claim holds, while it holds it.
    interface: Option<(EniId, Ipv4Addr)>,
}

/// How taking the lease on a candidate went.
pub(super) enum Leasing {
    /// Ours until it runs out.
    Got(Lease),
    /// Go on without one (no Redis, or Redis down and the lease not required).
    WithoutRedis,
    /// Another claimer is working on it.
    Busy,
    /// A marker hides it, put this long ago: EC2 decides (the passes machine, [`crate::pure::passes`]).
    Masked(Duration),
    /// Redis is down and `--require-leases` is set: not now.
    Unavailable,
}

/// The interface lease, held while the claim runs: a background task renews it.
pub(super) struct InterfaceLease {
    renewer: Option<JoinHandle<()>>,
}

impl InterfaceLease {
    /// Whether Redis holds it (claims of this interface are serialized), not the fallback
    /// without Redis.
    pub(super) fn in_redis(&self) -> bool {
        self.renewer.is_some()
    }
}

impl Drop for InterfaceLease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

/// Redis's liveness, the interface lease and what it recalls, and the herd's pace and line.
impl Coordination {
    pub(super) fn new(redis: Option<Redis>, require_leases: bool, lease: Duration) -> Self {
        if redis.is_none() {
            warn!("no --redis-url: claiming on EC2's compare-and-swap alone (safe, but a herd will collide more)");
        }
        Coordination {
            redis,
            health: RedisHealth::new(require_leases),
            epoch: Instant::now(),
            lease,
            interface: None,
        }
    }

    /// Redis, unless it is cooling down after a failure.
    fn live(&self) -> Option<Redis> {
        self.redis
            .clone()
            .filter(|_| self.health.live(self.epoch.elapsed()))
    }

    /// Whether the herd tells this claim what the others took (Redis answers): without it, each
    /// "taken" costs a mutating call, and a fresh listing beats trying a stale one blind.
    pub(super) fn knows_what_others_took(&self) -> bool {
        self.live().is_some()
    }

    /// Record a Redis failure ([`RedisHealth::failed`]). `Ok(true)`: the claim must not go on
    /// without Redis (it waits for it, `--require-leases`); `Ok(false)`: it goes on without Redis
    /// for a cool-down. A Redis that answers but can never work stops the claim.
    fn failed(&mut self, work: &Budget, e: RedisError) -> Result<bool, Stop> {
        let misconfigured = matches!(e, RedisError::Misconfigured(_));
        match self.health.failed(misconfigured, self.epoch.elapsed()) {
            RedisFailure::Stop => Err(Stop::Fatal(e.into())),
            RedisFailure::WaitForIt => {
                work.note(&e);
                warn!(error = %e, "Redis unavailable and --require-leases is set: waiting for it");
                Ok(true)
            }
            RedisFailure::WithoutItFor(cool_down) => {
                work.note(&e);
                warn!(error = %e, cool_down_ms = cool_down.as_millis() as u64, "Redis unavailable: claiming on EC2's compare-and-swap alone for a while");
                Ok(false)
            }
        }
    }

    /// Take the interface lease, waiting while another claim for this interface runs: AWS
    /// replaces an Elastic IP already on a private IP, so two claims for one interface at once
    /// could each associate an address and leave one of them reporting an address it lost.
    /// Without Redis (and without `--require-leases`) there is no lease: the occupant check and
    /// validation still catch a replaced association.
    pub(super) async fn take_interface_lease(
        &mut self,
        work: &Budget,
        me: &Identity,
    ) -> Result<InterfaceLease, Stop> {
        let mut said = false;
        let mut failures = 0;
        let redis = loop {
            let Some(redis) = self.live() else {
                return Ok(InterfaceLease { renewer: None });
            };
            match work
                .bounded(redis.take_interface_lease(&me.eni, me.private_ip))
                .await?
            {
                Ok(true) => break redis,
                Ok(false) => {
                    if !said {
                        info!(eni = %me.eni, private_ip = %me.private_ip, "another claim for this interface is running; waiting for it to finish");
                        said = true;
                    }
                    work.sleep(plan::INTERFACE_POLL).await?;
                }
                Err(e) => {
                    if !self.failed(work, e)? {
                        return Ok(InterfaceLease { renewer: None });
                    }
                    work.sleep(Budget::backoff(failures)).await?;
                    failures += 1;
                }
            }
        };
        self.interface = Some((me.eni.clone(), me.private_ip));
        let (eni, ip, every) = (me.eni.clone(), me.private_ip, self.lease / 3);
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Extend only: a lease that ran out is never taken back here (another claim of
                // this interface may have run in between); the claim checks before associating.
                if let Ok(false) = redis.hold_interface(&eni, ip).await {
                    warn!(%eni, "lost the interface lease (it ran out); another claim for this interface may start");
                    return;
                }
            }
        });
        Ok(InterfaceLease {
            renewer: Some(renewer),
        })
    }

    /// Before an association: whether this claim still holds its interface lease (`true` too
    /// when it has none: no Redis when it started). A lease that ran out (the process was paused
    /// longer than it, or Redis lost it) is lost: another claim of this interface may have run
    /// and associated since, so the claim must take the lease again and look again.
    pub(super) async fn still_holds_interface(&mut self, work: &Budget) -> Result<bool, Stop> {
        let (Some((eni, ip)), Some(redis)) = (self.interface.clone(), self.live()) else {
            return Ok(true);
        };
        match work.bounded(redis.hold_interface(&eni, ip)).await? {
            Ok(true) => Ok(true),
            Ok(false) => {
                warn!(%eni, private_ip = %ip, "the interface lease ran out; another claim for this interface may have run");
                self.interface = None;
                Ok(false)
            }
            // Redis went away: as with the address lease, go on without it unless it is
            // required (then take the lease again once Redis is back).
            Err(e) => {
                let wait = self.failed(work, e)?;
                if wait {
                    self.interface = None;
                }
                Ok(!wait)
            }
        }
    }

    /// Give the interface lease back (best effort: it expires on its own).
    pub(super) async fn give_back_interface_lease(
        &mut self,
        cleanup: &Budget,
        mut lease: InterfaceLease,
        me: &Identity,
    ) {
        self.interface = None;
        let Some(renewer) = lease.renewer.take() else {
            return;
        };
        renewer.abort();
        if let Some(redis) = &self.redis {
            if let Ok(Err(e)) = cleanup
                .bounded(redis.give_back_interface_lease(&me.eni, me.private_ip))
                .await
            {
                debug!(error = %e, "could not give the interface lease back; it will expire");
            }
        }
    }

    /// The address this interface was taking when a run of ours last stopped, per Redis.
    pub(super) async fn intent(&mut self, work: &Budget, me: &Identity) -> Result<Recalled, Stop> {
        let Some(redis) = self.live() else {
            return Ok(Recalled::Unknown);
        };
        match work.bounded(redis.intent_of(&me.eni, me.private_ip)).await {
            Ok(Ok(Some(alloc))) => Ok(Recalled::Taking(alloc)),
            Ok(Ok(None)) => Ok(Recalled::Nothing),
            Ok(Err(e)) => {
                self.failed(work, e)?;
                Ok(Recalled::Unknown)
            }
            Err(_) => Ok(Recalled::Unknown),
        }
    }

    /// Whether callers outside the herd took addresses of the pool lately (`false` without
    /// Redis, or when it does not answer).
    pub(super) async fn outsiders(&mut self, work: &Budget) -> Result<bool, Stop> {
        let Some(redis) = self.live() else {
            return Ok(false);
        };
        match work.bounded(redis.outsiders()).await? {
            Ok(seen) => Ok(seen),
            Err(e) => {
                self.failed(work, e)?;
                Ok(false)
            }
        }
    }

    /// How many wait in the pool's line for a freed address (0 without Redis, or when it does
    /// not answer or refuses: fairness is not worth a failed claim; a refusal is warned).
    pub(super) async fn waiting(&mut self, work: &Budget) -> Result<u64, Stop> {
        let Some(redis) = self.live() else {
            return Ok(0);
        };
        match work.bounded(redis.line_len()).await? {
            Ok(n) => Ok(n),
            // An ACL without the line's commands: loud, but a free address is still taken (a
            // claim needs none of them; waiting does, and stops there).
            Err(e @ RedisError::Misconfigured(_)) => {
                warn!(error = %e, "could not count the pool's waiting line; claiming as if it were empty");
                Ok(0)
            }
            Err(e) => {
                debug!(error = %e, "could not see the pool's line; claiming as if it were empty");
                self.failed(work, e)?;
                Ok(0)
            }
        }
    }
}

/// Each address: its lease, the markers on what was just taken, what was freed or
/// forgotten, and the herd's shared listing.
impl Coordination {
    /// Renew the lease before an EC2 call. `Ok(false)`: the lease is gone; stop on this address.
    pub(super) async fn renew(&mut self, work: &Budget, lease: &mut Lease) -> Result<bool, Stop> {
        let Some(redis) = self.live() else {
            return Ok(true);
        };
        match work.bounded(redis.extend(lease)).await? {
            Ok(true) => Ok(true),
            Ok(false) => {
                warn!(allocation_id = %lease.alloc, fence = lease.fence, "lost the Redis lease (it ran out); stopping on this address");
                Ok(false)
            }
            // Redis went away mid-claim: keep going on the local lease only while it lasts;
            // EC2's compare-and-swap still guards the association.
            Err(e) => Ok(!self.failed(work, e)?),
        }
    }

    /// Take the lease on `alloc` for `me`.
    pub(super) async fn take_lease(
        &mut self,
        work: &Budget,
        alloc: &AllocationId,
        me: &Identity,
    ) -> Result<Leasing, Stop> {
        let Some(redis) = self.live() else {
            return Ok(Leasing::WithoutRedis);
        };
        Ok(
            match work
                .bounded(redis.acquire(alloc, &me.eni, me.private_ip))
                .await?
            {
                Ok(Acquire::Acquired(l)) => {
                    debug!(allocation_id = %alloc, fence = l.fence, "leased in Redis");
                    Leasing::Got(l)
                }
                Ok(Acquire::Busy) => Leasing::Busy,
                Ok(Acquire::Marked { age }) => Leasing::Masked(age),
                Err(e) => {
                    if self.failed(work, e)? {
                        Leasing::Unavailable
                    } else {
                        Leasing::WithoutRedis
                    }
                }
            },
        )
    }

    /// Tell the herd EC2 called `alloc` taken, so claimers with an older listing skip it.
    pub(super) async fn mark_taken(&self, alloc: &AllocationId) {
        if let Some(redis) = self.live() {
            let _ = redis.mark_taken(alloc).await;
        }
    }

    /// Give back a lease (best effort, bounded by the overall deadline). With `forget_intent`,
    /// also drop the interface's record of taking this address.
    pub(super) async fn release_lease(
        &self,
        cleanup: &Budget,
        lease: Option<&Lease>,
        me: &Identity,
        forget_intent: bool,
    ) {
        let (Some(l), Some(redis)) = (lease, self.redis.as_ref()) else {
            return;
        };
        match cleanup
            .bounded(redis.release(l, &me.eni, me.private_ip, forget_intent))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "could not release the Redis lease; it will expire")
            }
            Err(_) => debug!("no time left to release the Redis lease; it will expire"),
        }
    }

    /// Record a won address in Redis (dropping our lease): a marker, so that claimers with an
    /// older listing skip it, the interface's intent and the holder record.
    pub(super) async fn record_win(&self, addr: &Address, lease: Option<&Lease>, me: &Identity) {
        let Some(redis) = self.live() else {
            return;
        };
        if let Err(e) = redis
            .record_win(
                &addr.allocation_id,
                lease.map(|l| l.fence),
                &me.eni,
                me.private_ip,
            )
            .await
        {
            warn!(error = %e, "could not record the win in Redis; others will learn it from EC2");
        }
    }

    /// Wake the pool's waiting line: an association of this claim is gone (given back, or
    /// replaced by another on our private IP), so an address came free. Called by
    /// `cleanup::disassociate_quietly`, the one way a claim gives an address back.
    pub(super) async fn freed(&self, cleanup: &Budget) {
        let Some(redis) = &self.redis else {
            return;
        };
        if let Ok(Err(e)) = cleanup.bounded(redis.line_freed(1)).await {
            debug!(error = %e, "could not wake the pool's line; its head tries again at its --interval");
        }
    }

    /// Clear the Redis records of a claim given back, so that the next claim can take it at once.
    pub(super) async fn forget(&self, cleanup: &Budget, claimed: &Claimed) {
        let Some(redis) = &self.redis else {
            return;
        };
        let forget = redis.forget(
            &claimed.allocation_id,
            &claimed.network_interface_id,
            claimed.private_ip,
        );
        if let Ok(Err(e)) = cleanup.bounded(forget).await {
            debug!(error = %e, "could not clear the Redis records; they expire on their own");
        }
    }

    /// The herd's recent listing of `pool` (made at most `max_age` ago) and its age, waiting
    /// while another claimer makes one. `None`: list the pool ourselves (we lead, Redis is down,
    /// or there is no Redis), then [`share_listing`](Self::share_listing).
    pub(super) async fn shared_listing(
        &mut self,
        work: &Budget,
        pool: &str,
        lead_ttl: Duration,
        max_age: Duration,
    ) -> Result<Option<(Vec<Address>, Duration)>, Stop> {
        let mut poll = 0;
        while let Some(redis) = self.live() {
            match work
                .bounded(redis.shared_listing_within(lead_ttl, max_age))
                .await?
            {
                Ok((SharedListing::Recent(mut listing), age)) => {
                    // Whatever Redis holds, only the pool's own addresses are candidates.
                    listing.retain(|a| a.pool.as_deref() == Some(pool));
                    return Ok(Some((listing, age)));
                }
                Ok((SharedListing::Lead, _)) => break,
                Ok((SharedListing::Pending, _)) => {
                    work.sleep(plan::listing_poll(poll)).await?;
                    poll += 1;
                }
                Err(e) => {
                    // Listing needs no lease, even with --require-leases.
                    self.failed(work, e)?;
                    break;
                }
            }
        }
        Ok(None)
    }

    /// Share our own listing with the herd, or on failure (`None`) just end our lead so another
    /// claimer takes over.
    pub(super) async fn share_listing(&self, cleanup: &Budget, listed: Option<&[Address]>) {
        let Some(redis) = self.live() else {
            return;
        };
        let shared = cleanup.bounded(redis.share_listing(listed, plan::SHARED_LISTING_TTL));
        if let Ok(Err(e)) = shared.await {
            debug!(error = %e, "could not share the listing");
        }
    }

    /// Ask EC2 (one DescribeAddresses by allocation id, paced with the describe calls) about
    /// masked addresses (our own listing shows them free, a marker hides them): the passes machine weighs
    /// its answer against each marker's age ([`plan::masked_verdict`]).
    pub(super) async fn describe_masked(
        &mut self,
        work: &Budget,
        ec2: &Ec2,
        allocs: &[AllocationId],
    ) -> Result<Vec<Address>, Stop> {
        let (seen, _) = self
            .described(work, PaceClass::Describe, "check masked", || {
                ec2.describe_addresses(allocs)
            })
            .await?;
        Ok(seen)
    }

    /// Drop the marker on `alloc` (EC2 outvoted it), if it is at least EC2's
    /// consistency bound old.
    pub(super) async fn clear_marker(
        &mut self,
        work: &Budget,
        alloc: &AllocationId,
    ) -> Result<(), Stop> {
        let Some(redis) = self.live() else {
            return Ok(());
        };
        if let Ok(Err(e)) = work
            .bounded(redis.clear_marker(alloc, plan::CONSISTENCY_BOUND))
            .await
        {
            self.failed(work, e)?;
        }
        Ok(())
    }
}
