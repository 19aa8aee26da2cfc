//! Giving back what a failing claim took on EC2: an association it made or may have made. Plain
//! functions over the EC2 client and the cleanup budget (what is left of `--timeout` after the
//! work deadline), deaf to signals, because cleaning up is what a signal asks for. The Redis side
//! (leases, records) is [`super::coordination`]'s.

use tokio::time::Instant;
use tracing::{info, warn};

use super::Means;
use crate::adapters::aws::Ec2;
use crate::pure::classify::standing;
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, AssociationId};
use crate::pure::plan::{self, HolderLook};
use crate::support::budget::{Budget, Stopped};
use crate::support::output::Claimed;

/// After an interrupted AssociateAddress: if EC2 shows the address on our interface, take it
/// off again. Polls through eventual consistency until the cleanup budget runs out.
pub(super) async fn undo_if_ours(ec2: &Ec2, cleanup: &Budget, alloc: &AllocationId, me: &Identity) {
    // An association we made may take a while to show: look until one shows, or until EC2's
    // consistency bound has passed, or the deadline.
    let since = Instant::now();
    let mut poll = 0;
    loop {
        // Passing failures (throttling, 5xx) are retried: giving up on the first would leave
        // an association we perhaps made on the interface.
        let Ok(seen) = cleanup
            .retry("look for ours", || ec2.describe_address(alloc))
            .await
        else {
            return;
        };
        match plan::after_holder_look(standing(seen.as_ref(), me), since.elapsed()) {
            HolderLook::Ours => {
                if let Some(x) = seen.and_then(|a| a.association) {
                    disassociate_quietly(ec2, cleanup, &x.id).await;
                }
                return;
            }
            HolderLook::NotOurs | HolderLook::NobodysNow => return,
            HolderLook::LookAgain => {}
        }
        if cleanup.sleep(plan::validation_delay(poll)).await.is_err() {
            return;
        }
        poll += 1;
    }
}

/// Disassociate our own association, retrying passing failures until the overall deadline.
pub(super) async fn disassociate_quietly(ec2: &Ec2, cleanup: &Budget, assoc: &AssociationId) {
    match cleanup.retry("give back", || ec2.disassociate(assoc)).await {
        Ok(()) => info!(association_id = %assoc, "gave the address back"),
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
    disassociate_quietly(&m.ec2, &m.cleanup, &claimed.association_id).await;
    m.coord.forget(&m.cleanup, claimed).await;
}
