//! After AssociateAddress answered: confirm our association stands (the node's own view first,
//! EC2's otherwise), and record the win in Redis and on the address itself.

use tokio::time::Instant;
use tracing::{debug, warn};

use super::coordination::PaceClass;
use super::{Means, Stop};
use crate::adapters::aws::Imds;
use crate::adapters::redis::Lease;
use crate::pure::address::{Address, Association, HolderTag};
use crate::pure::classify::standing;
use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::AssociationId;
use crate::pure::plan::{self, HolderLook};
use crate::support::output::Claimed;

/// What validating our association found.
pub(super) enum Validated {
    /// EC2 shows it on our interface and private IP.
    Ours(Box<Address>),
    /// EC2 shows it held by someone else past its consistency bound (or it is gone).
    Elsewhere,
    /// EC2 shows it free well after we associated it: another association to our private IP
    /// replaced ours.
    Displaced,
}

/// Confirm our association stands: first from the node (IMDSv2 maps the address to our
/// private IP: no EC2 call, no fixed wait), else by polling DescribeAddresses by allocation
/// id until it shows our association, or, past EC2's consistency bound, someone else's or
/// none (ours was replaced): [`plan::after_holder_look`].
pub(super) async fn validate(
    m: &mut Means,
    cand: &Address,
    assoc: &AssociationId,
    me: &Identity,
) -> Result<Validated, Stop> {
    let associated_at = Instant::now();
    if let Some(mac) = &me.mac {
        if let Some(ours) = seen_on_node(m, cand, assoc, me, mac).await? {
            return Ok(Validated::Ours(Box::new(ours)));
        }
    }
    let alloc = &cand.allocation_id;
    let mut poll = 0;
    loop {
        m.work.sleep(plan::validation_wait(poll, m.herd)).await?;
        poll += 1;
        let ec2 = m.ec2.clone();
        let (seen, _) = m
            .coord
            .described(&m.work, PaceClass::Describe, "validate", || {
                ec2.describe_address(alloc)
            })
            .await?;
        // Before EC2's consistency bound, a look may show the address as it was before we
        // associated it: free, or on its previous holder (who let go just before).
        match (
            plan::after_holder_look(standing(seen.as_ref(), me), associated_at.elapsed()),
            seen,
        ) {
            (HolderLook::Ours, Some(a)) => {
                if a.association.as_ref().map(|x| &x.id) != Some(assoc) {
                    warn!(allocation_id = %alloc, "validated with a different association id than AssociateAddress returned");
                }
                return Ok(Validated::Ours(Box::new(a)));
            }
            // Someone took it after us, past the bound (or it was released). Disassociating
            // our own association id is safe either way.
            (HolderLook::Ours | HolderLook::NotOurs, _) => return Ok(Validated::Elsewhere),
            (HolderLook::NobodysNow, _) => return Ok(Validated::Displaced),
            (HolderLook::LookAgain, _) => {
                debug!(allocation_id = %alloc, poll, "not visible yet (eventual consistency)")
            }
        }
    }
}

/// Look at the node's own view (IMDSv2) until it maps `cand`'s public IP to our private IP:
/// then our association stands (an address maps to one private IP at a time). `None` when the
/// node does not show it within EC2's consistency bound, or cannot answer: EC2 decides then.
async fn seen_on_node(
    m: &mut Means,
    cand: &Address,
    assoc: &AssociationId,
    me: &Identity,
    mac: &str,
) -> Result<Option<Address>, Stop> {
    let imds = Imds::new();
    let since = Instant::now();
    let mut poll = 0;
    while since.elapsed() < plan::CONSISTENCY_BOUND {
        m.work.sleep(plan::node_view_delay(poll)).await?;
        poll += 1;
        match m.work.bounded(imds.ipv4_associations(mac)).await? {
            Ok(pairs) if pairs.contains(&(cand.public_ip, me.private_ip)) => {
                debug!(allocation_id = %cand.allocation_id, polls = poll, "the node shows the address on our private IP");
                let mut ours = cand.clone();
                ours.association = Some(Association {
                    id: assoc.clone(),
                    network_interface_id: Some(me.eni.clone()),
                    private_ip: Some(me.private_ip),
                    instance_id: me.instance_id.clone(),
                });
                return Ok(Some(ours));
            }
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "IMDSv2 did not answer; validating with EC2");
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// Record a won address: in Redis as assigned to us (dropping our lease), so that claimers
/// with an older listing skip it, and on the address itself (the holder tag), the durable
/// record status, gc and the exporter read. The two at once: neither waits for the other.
pub(super) async fn record(m: &Means, addr: &Address, lease: Option<&Lease>, me: &Identity) {
    tokio::join!(
        m.coord.record_assigned(addr, lease, me),
        record_holder(m, addr, me)
    );
}

/// Write the holder tag on `addr` (on our interface) unless it already names this
/// association. Best effort: a failure is logged, and the address stays ours.
pub(super) async fn record_holder(m: &Means, addr: &Address, me: &Identity) {
    let Some(tag) = HolderTag::to_write(addr, me, std::time::SystemTime::now()) else {
        return;
    };
    let ec2 = &m.ec2;
    match m
        .work
        .retry("tag holder", || ec2.tag_holder(&addr.allocation_id, &tag))
        .await
    {
        Ok(()) => {
            debug!(allocation_id = %addr.allocation_id, holder = %tag.value(), "recorded the holder on the address")
        }
        Err(e) => {
            warn!(allocation_id = %addr.allocation_id, error = %e, "could not tag the address with its holder; `eipool status` shows it foreign until the agent or a re-run tags it (allow ec2:CreateTags on pool addresses)")
        }
    }
}

/// The report of a won address, `a` as EC2 (or the node) showed it on our interface, with the
/// association shown there: the env file and the holder tag name the same one. `elapsed_ms` is
/// filled in by [`super::run`].
pub(super) fn report(a: &Address, me: &Identity, reused: bool) -> Result<Claimed, Stop> {
    let Some(association) = &a.association else {
        return Err(Stop::Fatal(Error::Internal(format!(
            "{} was to be reported as ours but shows no association",
            a.allocation_id
        ))));
    };
    Ok(Claimed {
        public_ip: a.public_ip,
        allocation_id: a.allocation_id.clone(),
        association_id: association.id.clone(),
        network_interface_id: me.eni.clone(),
        private_ip: me.private_ip,
        reused,
        elapsed_ms: 0,
        waited_ms: None,
    })
}
