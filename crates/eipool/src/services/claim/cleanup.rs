//! Giving back what a failing claim took on EC2: an association it made or may have made. Plain
//! functions over the EC2 client and the cleanup budget (what is left of `--timeout` after the
//! work deadline), deaf to signals, because cleaning up is what a signal asks for. The Redis side
//! (leases, records) is [`super::coordination`]'s.

use tokio::time::Instant;
use tracing::{info, warn};

use super::Means;
use crate::pure::classify::standing;
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, AssociationId};
use crate::pure::plan::{self, HolderLook};
use crate::support::budget::{Budget, Stopped};
use crate::support::output::Claimed;

/// After an AssociateAddress that may have applied (its answer lost, or cut off in flight): if
/// EC2 shows the address on our interface, take it off again. Polls through eventual
/// consistency until the cleanup budget runs out, each look in our slot of the herd's describe
/// pace (a herd stopping at once must not burst EC2's describe bucket), but never waiting so
/// long for a slot that the look no longer fits before the deadline.
pub(super) async fn undo_if_ours(m: &mut Means, alloc: &AllocationId, me: &Identity) {
    // An association we made may take a while to show: look until one shows, or until EC2's
    // consistency bound has passed, or the deadline.
    let since = Instant::now();
    let mut poll = 0;
    loop {
        // Our slot, waited for no later than leaves the look time before the deadline (a look
        // that may give back an address is worth more than the pace): the wait, cut short, ends.
        let latest = m.cleanup.left().saturating_sub(m.ec2.call_timeout());
        let _ = m
            .coord
            .describe_slot(&Budget::cleanup(Instant::now() + latest))
            .await;
        // Passing failures (throttling, 5xx) are retried: giving up on the first would leave
        // an association we perhaps made on the interface.
        let ec2 = &m.ec2;
        let Ok(seen) = m
            .cleanup
            .retry("look for ours", || ec2.describe_address(alloc))
            .await
        else {
            return;
        };
        match plan::after_holder_look(standing(seen.as_ref(), me), since.elapsed()) {
            HolderLook::Ours => {
                if let Some(x) = seen.and_then(|a| a.association) {
                    disassociate_quietly(m, &x.id).await;
                }
                return;
            }
            HolderLook::NotOurs | HolderLook::NobodysNow => return,
            HolderLook::LookAgain => {}
        }
        if m.cleanup.sleep(plan::validation_delay(poll)).await.is_err() {
            return;
        }
        poll += 1;
    }
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
