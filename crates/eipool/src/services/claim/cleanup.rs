//! Giving back what a failing claim took on EC2: an association it made or may have made. Plain
//! functions over the EC2 client and the cleanup budget (what is left of `--timeout` after the
//! work deadline), deaf to signals, because cleaning up is what a signal asks for. The Redis side
//! (leases, records) is [`super::coordination`]'s.

use tokio::time::Instant;
use tracing::{info, warn};

use super::coordination::PaceClass;
use super::Means;
use crate::pure::address::Address;
use crate::pure::ids::{AllocationId, AssociationId};
use crate::support::budget::{Budget, Stopped};
use crate::support::output::Claimed;

/// On the cleanup budget, one look at `alloc`, to see whether an association of ours that may
/// have applied (its answer lost, or cut off in flight) is there: the attempt machine decides
/// what the look means and whether to look again. The look waits for our slot of the herd's
/// describe pace (a herd stopping at once must not burst EC2's describe bucket), but never so
/// long that the look no longer fits before the deadline (a look that may give back an address
/// is worth more than the pace); passing failures (throttling, 5xx) are retried. `None`: no
/// look could be made before the deadline.
pub(super) async fn look_for_ours(m: &mut Means, alloc: &AllocationId) -> Option<Option<Address>> {
    let latest = m.cleanup.left().saturating_sub(m.ec2.call_timeout());
    let _ = m
        .coord
        .pace(
            &Budget::cleanup(Instant::now() + latest),
            PaceClass::Describe,
            None,
        )
        .await;
    let ec2 = &m.ec2;
    m.cleanup
        .retry("look for ours", || ec2.describe_address(alloc))
        .await
        .ok()
}

/// Give back our own association, retrying passing failures until the overall deadline. The
/// one way a claim gives an address back, and it wakes the pool's line once the association is
/// gone (also when it was gone already: replaced by another on our private IP, or given back
/// before), so that a waiting server takes the address at once.
pub(super) async fn disassociate_quietly(m: &Means, assoc: &AssociationId) {
    match m
        .cleanup
        .retry("give back", || m.ec2.disassociate(assoc))
        .await
    {
        Ok(()) => {
            info!(association_id = %assoc, "gave the address back");
            m.coord.freed(&m.cleanup).await;
        }
        Err(Stopped::Failed(e)) => {
            warn!(association_id = %assoc, error = %e, "could not give the address back; `eipool gc` or a re-run will")
        }
        Err(Stopped::Interrupted(_)) => {
            warn!(association_id = %assoc, "no time left to give the address back; a re-run adopts it")
        }
    }
}

/// Undo a finished claim (used when its result cannot be delivered): disassociate it, and
/// clear its Redis records so that the next claim can take it at once.
pub(super) async fn give_back(m: &Means, claimed: &Claimed) {
    disassociate_quietly(m, &claimed.association_id).await;
    m.coord.forget(&m.cleanup, claimed).await;
}
