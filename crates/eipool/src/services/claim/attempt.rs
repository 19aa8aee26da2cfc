//! One candidate: take its lease, associate it with EC2's compare-and-swap, validate, record.
//! Whatever happens, nothing of ours is left on it unless we won it.

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::cleanup;
use super::coordination::{Leasing, PaceClass};
use super::validate::{self, Validated};
use super::{Means, Stop};
use crate::adapters::aws::Ec2Error;
use crate::adapters::redis::Lease;
use crate::pure::address::Address;
use crate::pure::classify::standing;
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, AssociationId};
use crate::pure::plan::{self, HolderLook};
use crate::support::budget::Budget;
use crate::support::output::Claimed;

/// What trying one candidate came to.
#[derive(Debug)]
pub(super) enum Attempt {
    Won(Claimed),
    /// Someone else holds it (EC2 said so, or Redis knows it was just assigned).
    Taken,
    /// Another claimer is working on it: maybe later.
    Busy,
    /// A passing failure: try again later.
    Transient,
    /// Our own listing shows it free, but Redis marks it assigned, `age` ago: EC2 decides
    /// (`Coordination::settle_masked`) before the pool may be called exhausted.
    Masked(std::time::Duration),
    /// We associated it, then EC2 showed it free again: another association to our private IP
    /// replaced ours (AWS disassociates the Elastic IP already there). Look at what our private
    /// IP holds now, and never report this one.
    Displaced,
}

/// Who holds an address AssociateAddress called `AlreadyAssociated`, per EC2.
enum Holder {
    /// Our interface and private IP: an earlier call of ours associated it.
    Me(Box<Address>),
    /// Someone else (or it is gone).
    Other,
    /// Nobody, past EC2's consistency bound: whoever held it let go.
    Nobody,
}

/// How an AssociateAddress attempt ended.
#[derive(Debug)]
enum Associated {
    /// This call associated it; validation follows.
    New(AssociationId),
    /// An earlier call (whose answer was lost, or a crashed run's) had: EC2 shows it on our interface.
    Adopted(Address),
    /// Gave up on this candidate.
    GaveUp(Attempt),
}

/// Try to win one candidate. Returns `Err` only to stop the whole claim (deadline, signal,
/// fatal), after giving back anything taken for this candidate.
pub(super) async fn attempt(
    m: &mut Means,
    cand: &Address,
    me: &Identity,
    suspect_ours: bool,
) -> Result<Attempt, Stop> {
    let alloc = &cand.allocation_id;
    // The address a crashed run of ours was taking goes straight to EC2's compare-and-swap:
    // its lease may still belong to the dead run's owner token.
    let mut lease = if suspect_ours {
        None
    } else {
        match m.coord.take_lease(&m.work, alloc, me).await? {
            Leasing::Got(l) => Some(l),
            Leasing::WithoutRedis => None,
            Leasing::Busy => return Ok(Attempt::Busy),
            Leasing::Masked(age) => return Ok(Attempt::Masked(age)),
            Leasing::Unavailable => return Ok(Attempt::Transient),
        }
    };

    // Whether an association of ours may be on it without our knowing: a crashed run's (the
    // suspect), or a call of ours whose answer was lost or that was cut off in flight.
    let mut in_doubt = suspect_ours;
    let assoc = match associate(m, cand, me, &mut lease, &mut in_doubt).await {
        Ok(Associated::New(assoc)) => assoc,
        Ok(Associated::Adopted(addr)) => {
            validate::record(m, &addr, lease.as_ref(), me).await;
            info!(public_ip = %addr.public_ip, allocation_id = %alloc, "an earlier attempt had associated it: adopting");
            return validate::report(&addr, me, true).map(Attempt::Won);
        }
        Ok(Associated::GaveUp(outcome)) => {
            m.coord
                .release_lease(&m.cleanup, lease.as_ref(), me, true)
                .await;
            return Ok(outcome);
        }
        Err(stop) => {
            // Only an AssociateAddress that may have applied leaves something to undo: look (in
            // the herd's describe pace), and give it back if it is ours. A claim stopped before
            // any call went out (waiting for its slot, its lease) has nothing to look for: a
            // herd reaching its deadline costs EC2 no describe calls.
            if in_doubt {
                cleanup::undo_if_ours(m, alloc, me).await;
            }
            m.coord
                .release_lease(&m.cleanup, lease.as_ref(), me, !in_doubt)
                .await;
            return Err(stop);
        }
    };

    match validate::validate(m, cand, &assoc, me).await {
        Ok(Validated::Ours(addr)) => {
            validate::record(m, &addr, lease.as_ref(), me).await;
            // EC2's word, not AssociateAddress's answer: the env file and the holder tag
            // must name the association that is there.
            let seen = addr.association.as_ref().map(|x| &x.id);
            info!(public_ip = %addr.public_ip, allocation_id = %alloc, association_id = ?seen, fence = lease.as_ref().map(|l| l.fence), "claimed");
            validate::report(&addr, me, false).map(Attempt::Won)
        }
        Ok(Validated::Elsewhere) => {
            // EC2 shows someone else holding it: not ours to keep, nothing of ours to undo
            // beyond our own association id (idempotent if already gone).
            warn!(allocation_id = %alloc, "validation found the address held elsewhere; moving on");
            cleanup::disassociate_quietly(m, &assoc).await;
            m.coord
                .release_lease(&m.cleanup, lease.as_ref(), me, true)
                .await;
            Ok(Attempt::Taken)
        }
        Ok(Validated::Displaced) => {
            // Never report it: our private IP holds something else now. Our association is
            // gone already; disassociating it again is a no-op that makes sure, and wakes the
            // pool's line for the address that came free.
            warn!(allocation_id = %alloc, "our association was replaced by another on this private IP; looking again at what it holds");
            cleanup::disassociate_quietly(m, &assoc).await;
            m.coord
                .release_lease(&m.cleanup, lease.as_ref(), me, true)
                .await;
            Ok(Attempt::Displaced)
        }
        Err(stop) => {
            // Rolled back: the address is free again (which wakes the pool's line).
            cleanup::disassociate_quietly(m, &assoc).await;
            m.coord
                .release_lease(&m.cleanup, lease.as_ref(), me, true)
                .await;
            Err(stop)
        }
    }
}

/// AssociateAddress with `AllowReassociation=false`, retried on passing failures while the
/// lease allows. `maybe_ours` says, also when this returns `Err`, whether an association of ours
/// may be on the address without our knowing (it comes in `true` for a suspect): a call whose
/// answer was lost ("maybe applied"), or one cut off in flight by the deadline or a signal.
async fn associate(
    m: &mut Means,
    cand: &Address,
    me: &Identity,
    lease: &mut Option<Lease>,
    maybe_ours: &mut bool,
) -> Result<Associated, Stop> {
    let alloc = &cand.allocation_id;
    let mut attempt = 0u32;
    loop {
        // The lease gates *new* associations. Once an attempt may have applied, the retry
        // (still AllowReassociation=false, so it can take nothing from anyone) is how we
        // learn whether it did: giving up instead could leave the address on our interface
        // with nobody using it.
        // Our turn, if we waited for it before choosing this address.
        let slot = match m.slot.take() {
            Some(slot) => slot,
            None => {
                let renewing = lease.as_mut().filter(|_| !*maybe_ours);
                match m.coord.pace(&m.work, PaceClass::Mutating, renewing).await? {
                    Some(slot) => slot,
                    None => return Ok(Associated::GaveUp(Attempt::Busy)),
                }
            }
        };
        if let Some(l) = lease.as_mut().filter(|_| !*maybe_ours) {
            if !m.coord.renew(&m.work, l).await? {
                return Ok(Associated::GaveUp(Attempt::Busy));
            }
            let left = l.valid_until.saturating_duration_since(Instant::now());
            if !plan::lease_allows(left, m.ec2.call_timeout(), plan::LEASE_MARGIN) {
                warn!(allocation_id = %alloc, lease_left_ms = left.as_millis() as u64, "lease too short for another EC2 call; stopping before associating");
                return Ok(Associated::GaveUp(Attempt::Transient));
            }
        }
        // AWS replaces the address already on our private IP: associate only while no other
        // claim of this interface can be running (the interface lease is still ours).
        if !m.coord.still_holds_interface(&m.work).await? {
            return Err(Stop::InterfaceLost);
        }
        // Cut off in flight (deadline, signal), the call may have applied: in doubt until an
        // answer says otherwise.
        let before = std::mem::replace(maybe_ours, true);
        match m
            .work
            .bounded(m.ec2.associate(alloc, &me.eni, me.private_ip))
            .await?
        {
            Ok(assoc) => return Ok(Associated::New(assoc)),
            Err(Ec2Error::AlreadyAssociated(_)) => {
                *maybe_ours = before;
                if before {
                    match holder(m, alloc, me).await? {
                        Holder::Me(addr) => return Ok(Associated::Adopted(*addr)),
                        Holder::Other => {}
                        // Whoever held it let go: it may be free now; try it again later.
                        Holder::Nobody => return Ok(Associated::GaveUp(Attempt::Transient)),
                    }
                }
                debug!(allocation_id = %alloc, "taken (Resource.AlreadyAssociated)");
                m.coord.mark_taken(alloc).await;
                return Ok(Associated::GaveUp(Attempt::Taken));
            }
            Err(Ec2Error::AllocationNotFound(_)) => {
                *maybe_ours = before;
                return Ok(Associated::GaveUp(Attempt::Taken));
            }
            Err(e) if e.is_transient() => {
                *maybe_ours = before || e.maybe_applied();
                m.work.note(&e);
                // Throttled: the herd's pace slows, and spaces our retry with everyone's.
                let alone = match e {
                    Ec2Error::Throttled { .. } => m.coord.throttled(&m.work, &slot).await?,
                    _ => true,
                };
                if alone {
                    m.work.sleep(Budget::backoff(attempt)).await?;
                }
                attempt += 1;
            }
            Err(e) => {
                *maybe_ours = before;
                return Err(Stop::Fatal(e.into()));
            }
        }
    }
}

/// After `Resource.AlreadyAssociated` on an address we may have associated ourselves (an
/// answer was lost, or a crashed run did it): poll, in our slot of the herd's describe rate,
/// until EC2 shows the holder, or shows it free past EC2's consistency bound (whoever held
/// it let go).
async fn holder(m: &mut Means, alloc: &AllocationId, me: &Identity) -> Result<Holder, Stop> {
    let since = Instant::now();
    let mut poll = 0;
    loop {
        let ec2 = m.ec2.clone();
        let (seen, _) = m
            .coord
            .described(&m.work, PaceClass::Describe, "find holder", || {
                ec2.describe_address(alloc)
            })
            .await?;
        match (
            plan::after_holder_look(standing(seen.as_ref(), me), since.elapsed()),
            seen,
        ) {
            (HolderLook::Ours, Some(a)) => return Ok(Holder::Me(Box::new(a))),
            (HolderLook::Ours | HolderLook::NotOurs, _) => return Ok(Holder::Other),
            (HolderLook::NobodysNow, _) => return Ok(Holder::Nobody),
            (HolderLook::LookAgain, _) => {} // stale: not visible yet
        }
        m.work.sleep(plan::validation_delay(poll)).await?;
        poll += 1;
    }
}
