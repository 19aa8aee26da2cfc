//! Leases on addresses: a claimer takes one before associating an address (fenced, with a
//! lifetime it renews while working), gives it back after, and records what it assigned.

use std::net::Ipv4Addr;

use redis::AsyncCommands;
use tokio::time::Instant;
use tracing::instrument;

use super::scripts::{ACQUIRE, ASSIGN, EXTEND, FORGET, RELEASE};
use super::{unix_ms, Herd, HerdError};
use crate::pure::holder::holder_at;
use crate::pure::ids::{AllocationId, EniId};

/// What an acquisition attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The address is ours to try until the lease runs out.
    Acquired(Lease),
    /// Another claimer holds a live lease on it: skip it now, maybe look again later.
    Busy,
    /// It was recently assigned (or found taken): skip it.
    Assigned,
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

impl Herd {
    /// Take a lease on `alloc` for `eni`/`ip`; records the intent under the interface so that a
    /// re-run after a crash finds what it was taking. Idempotent for the same owner.
    #[instrument(skip(self), fields(owner = %self.owner), err(Display))]
    pub(crate) async fn acquire(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Acquire, HerdError> {
        let sent = Instant::now();
        let mut conn = self.conn.clone();
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(self.lease_key(alloc))
            .key(self.key("fence"))
            .key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .arg(&self.owner)
            .arg(self.timing.lease.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(self.timing.assigned_ttl.as_millis() as u64);
        let answer: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(match answer {
            0 => Acquire::Busy,
            n if n < 0 => Acquire::Assigned,
            fence => Acquire::Acquired(Lease {
                alloc: alloc.clone(),
                fence: fence as u64,
                valid_until: sent + self.timing.lease,
            }),
        })
    }

    /// Renew `lease`. `Ok(false)`: the lease is no longer ours (expired and maybe
    /// taken by someone with a larger fence); stop working on that address.
    #[instrument(skip(self), fields(alloc = %lease.alloc, fence = lease.fence), err(Display))]
    pub(crate) async fn extend(&self, lease: &mut Lease) -> Result<bool, HerdError> {
        let sent = Instant::now();
        let mut conn = self.conn.clone();
        let mut inv = EXTEND.prepare_invoke();
        inv.key(self.lease_key(&lease.alloc))
            .arg(self.value(lease.fence))
            .arg(self.timing.lease.as_millis() as u64);
        let ok: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        if ok == 1 {
            lease.valid_until = sent + self.timing.lease;
        }
        Ok(ok == 1)
    }

    /// Give the lease back (compare-and-delete: only if it is still ours). With `forget_intent`,
    /// also drop the interface's record of taking this address.
    #[instrument(skip(self), fields(alloc = %lease.alloc, fence = lease.fence), err(Display))]
    pub(crate) async fn release(
        &self,
        lease: &Lease,
        eni: &EniId,
        ip: Ipv4Addr,
        forget_intent: bool,
    ) -> Result<bool, HerdError> {
        let mut conn = self.conn.clone();
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.lease_key(&lease.alloc))
            .key(self.iface_key(eni, ip))
            .arg(self.value(lease.fence))
            .arg(if forget_intent { "1" } else { "0" })
            .arg(lease.alloc.as_str());
        let ok: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(ok == 1)
    }

    /// Record that `alloc` is now held by `eni`/`ip` (so claimers reading a stale
    /// DescribeAddresses skip it) and drop our lease on it, in one step.
    #[instrument(skip(self), err(Display))]
    pub(crate) async fn mark_assigned(
        &self,
        alloc: &AllocationId,
        fence: Option<u64>,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), HerdError> {
        let mut conn = self.conn.clone();
        let mut inv = ASSIGN.prepare_invoke();
        inv.key(self.lease_key(alloc))
            .key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .key(self.key("holders"))
            .arg(fence.map(|f| self.value(f)).unwrap_or_default())
            .arg(holder_at(eni, ip))
            .arg(self.timing.assigned_ttl.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(unix_ms());
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Note that EC2 said `alloc` is taken by someone else, so other claimers skip it too.
    #[instrument(skip(self), err(Display))]
    pub(crate) async fn mark_taken(&self, alloc: &AllocationId) -> Result<(), HerdError> {
        let mut conn = self.conn.clone();
        let key = self.assigned_key(alloc);
        let ttl = self.timing.assigned_ttl.as_millis() as u64;
        let _: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(key)
                    .arg("?")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// The address this interface was last taking or holding, per Redis (a crash re-run checks it
    /// first, because a stale DescribeAddresses may not show the association yet).
    #[instrument(skip(self), err(Display))]
    pub(crate) async fn intent_of(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Option<AllocationId>, HerdError> {
        let mut conn = self.conn.clone();
        let key = self.iface_key(eni, ip);
        let v: Option<String> = self.bounded(conn.get(key)).await?;
        // A value this version cannot read counts as none.
        Ok(v.and_then(|s| s.parse().ok()))
    }

    /// Forget everything about `alloc` held by `eni`/`ip` (after releasing it): the assigned
    /// mark, the interface's record, the holder record. Others may claim it at once.
    #[instrument(skip(self), err(Display))]
    pub(crate) async fn forget(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), HerdError> {
        let mut conn = self.conn.clone();
        let mut inv = FORGET.prepare_invoke();
        inv.key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .key(self.key("holders"))
            .arg(alloc.as_str());
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }
}
