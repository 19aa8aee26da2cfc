//! Giving back what a failing claim took: its lease, and an association it made or may have
//! made. Runs in the cleanup budget (what is left of `--timeout` after the work deadline), deaf to
//! signals, because cleaning up is what a signal asks for.

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::protocol::Claimer;
use crate::adapters::herd::Lease;
use crate::pure::classify::{standing, Standing};
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, AssociationId};
use crate::pure::plan;
use crate::support::budget::Stopped;
use crate::support::output::Claimed;

impl Claimer {
    /// Give back a lease (best effort, bounded by the overall deadline). With `forget_intent`,
    /// also drop the interface's record of taking this address.
    pub(super) async fn release_lease(
        &self,
        lease: Option<&Lease>,
        me: &Identity,
        forget_intent: bool,
    ) {
        let (Some(l), Some(herd)) = (lease, self.herd.as_ref()) else {
            return;
        };
        match self
            .cleanup
            .bounded(herd.release(l, &me.eni, me.private_ip, forget_intent))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "could not release the Redis lease; it will expire")
            }
            Err(_) => debug!("no time left to release the Redis lease; it will expire"),
        }
    }

    /// After an interrupted AssociateAddress: if EC2 shows the address on our interface, take it
    /// off again. Polls through eventual consistency until the cleanup budget runs out.
    pub(super) async fn undo_if_ours(&self, alloc: &AllocationId, me: &Identity) {
        // An association we made may take a while to show: look until one shows, or until EC2's
        // consistency bound has passed, or the deadline.
        let give_up = Instant::now() + plan::CONSISTENCY_BOUND;
        let mut poll = 0;
        loop {
            // Passing failures (throttling, 5xx) are retried: giving up on the first would leave
            // an association we perhaps made on the interface.
            let Ok(seen) = self
                .cleanup
                .retry("look for ours", || self.ec2.describe_address(alloc))
                .await
            else {
                return;
            };
            match standing(seen.as_ref(), me) {
                Standing::Mine => {
                    if let Some(x) = seen.and_then(|a| a.association) {
                        self.disassociate_quietly(&x.id).await;
                    }
                    return;
                }
                Standing::Elsewhere | Standing::Gone => return, // someone else's, or released
                Standing::Free if Instant::now() >= give_up => return,
                Standing::Free => {}
            }
            if self
                .cleanup
                .sleep(plan::validation_delay(poll))
                .await
                .is_err()
            {
                return;
            }
            poll += 1;
        }
    }

    /// Disassociate our own association, retrying passing failures until the overall deadline.
    pub(super) async fn disassociate_quietly(&self, assoc: &AssociationId) {
        match self
            .cleanup
            .retry("give back", || self.ec2.disassociate(assoc))
            .await
        {
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
    pub(super) async fn give_back(&mut self, claimed: &Claimed) {
        self.disassociate_quietly(&claimed.association_id).await;
        if let Some(herd) = &self.herd {
            let forget = herd.forget(
                &claimed.allocation_id,
                &claimed.network_interface_id,
                claimed.private_ip,
            );
            if let Ok(Err(e)) = self.cleanup.bounded(forget).await {
                debug!(error = %e, "could not clear the Redis records; they expire on their own");
            }
        }
    }
}
