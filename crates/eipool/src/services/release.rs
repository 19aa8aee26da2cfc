//! `eipool release` (the preStop hook): give back this interface's pool address. Only an
//! address of the pool that EC2 shows on our interface and private IP is touched, and it is
//! disassociated by the association id seen there (or the one given), so a newer claim is safe.

use serde::Serialize;
use tracing::{info, warn};

use crate::pure::error::Error;
use crate::pure::identity::Identity;
use crate::pure::ids::{AllocationId, AssociationId, EniId};
use crate::services::context::Context;
use crate::support::budget::Budget;

/// One address given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReleasedAddress {
    /// The Elastic IP.
    pub(crate) public_ip: std::net::Ipv4Addr,
    /// Its allocation id.
    pub(crate) allocation_id: AllocationId,
    /// The association removed.
    pub(crate) association_id: AssociationId,
}

/// What `eipool release` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Released {
    /// Our interface.
    pub(crate) network_interface_id: EniId,
    /// What was given back (empty when nothing was held: still success).
    pub(crate) released: Vec<ReleasedAddress>,
}

/// Disassociate the pool addresses on `me`; with `only`, just the one with that association id.
pub(crate) async fn release(
    ctx: &Context,
    budget: &Budget,
    me: &Identity,
    only: Option<&AssociationId>,
) -> Result<Released, Error> {
    let held = budget
        .call("list ours", || ctx.ec2.describe_pool_on(&ctx.pool, &me.eni))
        .await?;
    let mut released = Vec::new();
    let mut kept = 0;
    for a in held.iter().filter(|a| a.held_by_me(me)) {
        let Some(x) = &a.association else { continue };
        if only.is_some_and(|o| *o != x.id) {
            warn!(allocation_id = %a.allocation_id, held = %x.id, asked = %only.map(|a| a.to_string()).unwrap_or_default(), "this interface holds the address under another association id (a newer claim?): leaving it");
            kept += 1;
            continue;
        }
        budget
            .call("disassociate", || ctx.ec2.disassociate(&x.id))
            .await?;
        if let Some(redis) = &ctx.redis {
            if let Err(e) = redis.forget(&a.allocation_id, &me.eni, me.private_ip).await {
                warn!(error = %e, "could not clear the Redis records; they expire on their own");
            }
        }
        info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, association_id = %x.id, "released");
        released.push(ReleasedAddress {
            public_ip: a.public_ip,
            allocation_id: a.allocation_id.clone(),
            association_id: x.id.clone(),
        });
    }
    if released.is_empty() && kept > 0 {
        info!(eni = %me.eni, "nothing released: what this interface holds is under another association id than the one asked for");
    } else if released.is_empty() {
        info!(eni = %me.eni, "nothing of the pool is held by this interface: nothing to release");
    }
    Ok(Released {
        network_interface_id: me.eni.clone(),
        released,
    })
}
