//! Leases on addresses: a claimer takes one before associating an address (fenced, with a
//! lifetime it renews while working), gives it back after, and records what it won.

use std::net::Ipv4Addr;

use std::time::Duration;

use tokio::time::Instant;
use tracing::instrument;

use super::scripts::{
    ACQUIRE, CLEAR_MARKER, COMPARE_AND_DELETE, EXTEND, FORGET, MARK_TAKEN, RECORD_WIN, RELEASE,
    TAKE_INTERFACE_LEASE,
};
use super::{unix_ms, Redis, RedisError};
use crate::pure::holder::holder_at;
use crate::pure::ids::{AllocationId, EniId};
use crate::pure::plan::{self, INTENT_TTL};

/// What an acquisition attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The address is ours to try until the lease runs out.
    Acquired(Lease),
    /// Another claimer holds a live lease on it: skip it now, maybe look again later.
    Busy,
    /// A marker is on it (a claimer won it or found it taken), put `age` ago: skip it, unless EC2
    /// shows it free when asked by allocation id (`plan::masked_verdict`).
    Marked {
        /// How long ago the marker was set.
        age: Duration,
    },
}

/// A live lease on one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The leased address.
    pub(crate) alloc: AllocationId,
    /// The fencing number Redis handed out with this lease; later leases get larger ones.
    pub(crate) fence: u64,
    /// Until when the lease is certainly valid (measured from before the request was sent).
    pub(crate) valid_until: Instant,
}

impl Redis {
    /// Take a lease on `alloc` for `eni`/`ip`; records the intent under the interface so that a
    /// re-run after a crash finds what it was taking. Idempotent for the same owner.
    #[instrument(skip(self), fields(owner = %self.owner), err(level = "debug", Display))]
    pub(crate) async fn acquire(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Acquire, RedisError> {
        let sent = Instant::now();
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(self.lease_key(alloc))
            .key(self.key("fence"))
            .key(self.marker_key(alloc))
            .key(self.intent_key(eni, ip))
            .arg(&self.owner)
            .arg(self.timing.lease.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(INTENT_TTL.as_millis() as u64);
        let (answer, age_ms): (i64, i64) = self.eval(inv).await?;
        Ok(match answer {
            0 => Acquire::Busy,
            n if n < 0 => Acquire::Marked {
                age: Duration::from_millis(age_ms.max(0) as u64),
            },
            fence => Acquire::Acquired(Lease {
                alloc: alloc.clone(),
                fence: fence as u64,
                valid_until: sent + self.timing.lease,
            }),
        })
    }

    /// Renew `lease`. `Ok(false)`: the lease is no longer ours (expired and maybe
    /// taken by someone with a larger fence); stop working on that address.
    #[instrument(skip(self), fields(alloc = %lease.alloc, fence = lease.fence), err(level = "debug", Display))]
    pub(crate) async fn extend(&self, lease: &mut Lease) -> Result<bool, RedisError> {
        let sent = Instant::now();
        let mut inv = EXTEND.prepare_invoke();
        inv.key(self.lease_key(&lease.alloc))
            .arg(self.value(lease.fence))
            .arg(self.timing.lease.as_millis() as u64);
        let ok: i64 = self.eval(inv).await?;
        if ok == 1 {
            lease.valid_until = sent + self.timing.lease;
        }
        Ok(ok == 1)
    }

    /// Give the lease back (compare-and-delete: only if it is still ours). With `forget_intent`,
    /// also drop the interface's record of taking this address.
    #[instrument(skip(self), fields(alloc = %lease.alloc, fence = lease.fence), err(level = "debug", Display))]
    pub(crate) async fn release(
        &self,
        lease: &Lease,
        eni: &EniId,
        ip: Ipv4Addr,
        forget_intent: bool,
    ) -> Result<bool, RedisError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.lease_key(&lease.alloc))
            .key(self.intent_key(eni, ip))
            .arg(self.value(lease.fence))
            .arg(if forget_intent { "1" } else { "0" })
            .arg(lease.alloc.as_str());
        let ok: i64 = self.eval(inv).await?;
        Ok(ok == 1)
    }

    /// Record that `alloc` is now held by `eni`/`ip` (so claimers reading a stale
    /// DescribeAddresses skip it) and drop our lease on it, in one step.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn record_win(
        &self,
        alloc: &AllocationId,
        fence: Option<u64>,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), RedisError> {
        let mut inv = RECORD_WIN.prepare_invoke();
        inv.key(self.lease_key(alloc))
            .key(self.marker_key(alloc))
            .key(self.intent_key(eni, ip))
            .key(self.holder_records_key())
            .arg(fence.map(|f| self.value(f)).unwrap_or_default())
            .arg(holder_at(eni, ip))
            .arg(self.timing.marker_ttl.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(unix_ms())
            .arg(INTENT_TTL.as_millis() as u64);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// Note that EC2 said `alloc` is taken by someone else, so other claimers skip it too; and
    /// that a caller outside the herd takes addresses of this pool (the herd's leases and markers
    /// keep its own claimers off each other's), for [`plan::OUTSIDERS_SEEN`].
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn mark_taken(&self, alloc: &AllocationId) -> Result<(), RedisError> {
        let mut inv = MARK_TAKEN.prepare_invoke();
        inv.key(self.marker_key(alloc))
            .key(self.key("outsiders"))
            .arg(self.timing.marker_ttl.as_millis() as u64)
            .arg(plan::OUTSIDERS_SEEN.as_millis() as u64);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// Whether a caller outside the herd took an address of this pool in the last
    /// [`plan::OUTSIDERS_SEEN`] ([`Redis::mark_taken`]).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn outsiders(&self) -> Result<bool, RedisError> {
        let key = self.key("outsiders");
        let v: Option<String> = self
            .bounded(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await?;
        Ok(v.is_some())
    }

    /// Drop the marker on `alloc` if it is at least `min_age` old: EC2 showed the
    /// address free after the marker was set, and EC2 outvotes Redis. `Ok(true)` when dropped.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn clear_marker(
        &self,
        alloc: &AllocationId,
        min_age: Duration,
    ) -> Result<bool, RedisError> {
        let mut inv = CLEAR_MARKER.prepare_invoke();
        inv.key(self.marker_key(alloc))
            .arg(min_age.as_millis() as u64);
        let dropped: i64 = self.eval(inv).await?;
        Ok(dropped == 1)
    }

    /// Take (or renew) the interface lease: one claim per interface and private IP at a time,
    /// because AWS replaces an Elastic IP already on a private IP. `Ok(false)`: another claim
    /// for this interface holds it.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn take_interface_lease(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<bool, RedisError> {
        let mut inv = TAKE_INTERFACE_LEASE.prepare_invoke();
        inv.key(self.interface_lease_key(eni, ip))
            .arg(&self.owner)
            .arg(self.timing.lease.as_millis() as u64);
        let ours: i64 = self.eval(inv).await?;
        Ok(ours == 1)
    }

    /// Extend the interface lease only while it is still ours: a lease that ran out is lost to
    /// this claim (another claim of the interface may have run since), never taken back.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn hold_interface(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<bool, RedisError> {
        let mut inv = EXTEND.prepare_invoke();
        inv.key(self.interface_lease_key(eni, ip))
            .arg(&self.owner)
            .arg(self.timing.lease.as_millis() as u64);
        let ours: i64 = self.eval(inv).await?;
        Ok(ours == 1)
    }

    /// Give the interface lease back, if it is still ours.
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn give_back_interface_lease(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), RedisError> {
        let mut inv = COMPARE_AND_DELETE.prepare_invoke();
        inv.key(self.interface_lease_key(eni, ip)).arg(&self.owner);
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }

    /// The address this interface was last taking or holding, per Redis (a crash re-run checks it
    /// first, because a stale DescribeAddresses may not show the association yet).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn intent_of(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Option<AllocationId>, RedisError> {
        let key = self.intent_key(eni, ip);
        let v: Option<String> = self
            .bounded(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await?;
        // A value this version cannot read counts as none.
        Ok(v.and_then(|s| s.parse().ok()))
    }

    /// Forget everything about `alloc` held by `eni`/`ip` (after releasing it): its marker,
    /// the interface's record, the holder record. Others may claim it at once, and the
    /// pool's line learns that an address came free (`line:freed`).
    #[instrument(skip(self), err(level = "debug", Display))]
    pub(crate) async fn forget(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), RedisError> {
        let mut inv = FORGET.prepare_invoke();
        inv.key(self.marker_key(alloc))
            .key(self.intent_key(eni, ip))
            .key(self.holder_records_key())
            .key(self.key("line:freed"))
            .arg(alloc.as_str());
        let _: i64 = self.eval(inv).await?;
        Ok(())
    }
}
