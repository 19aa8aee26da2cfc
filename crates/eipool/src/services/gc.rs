//! `eipool gc`: find pool addresses that nobody can be using — held by an interface whose
//! instance is stopped or terminated, by a detached interface, or by one that no longer exists —
//! and Redis holder records that no longer match EC2. Prints the plan; `--apply` carries it out.
//! It frees only what eipool claimed (the address's holder tag names its association:
//! `classify::collect`): an address associated by hand is reported with why it is left alone,
//! never freed, whatever its interface looks like. An address on an interface of a running
//! instance is never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tracing::{info, warn};

use crate::pure::address::InterfaceState;
use crate::pure::classify::{collect, why_dead, Collect};
use crate::pure::error::Error;
use crate::pure::ids::{AllocationId, AssociationId, EniId, InstanceId};
use crate::services::context::Context;
use crate::support::budget::Budget;

/// An address to free, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Leak {
    /// The Elastic IP.
    pub(crate) public_ip: std::net::Ipv4Addr,
    /// Its allocation id.
    pub(crate) allocation_id: AllocationId,
    /// The association to remove.
    pub(crate) association_id: AssociationId,
    /// The interface holding it.
    pub(crate) network_interface_id: EniId,
    /// Why nobody can be using it.
    pub(crate) reason: String,
    /// Whether `--apply` freed it.
    pub(crate) freed: bool,
}

/// An address that looks unused but that eipool did not put there: gc leaves it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LeftAlone {
    /// The Elastic IP.
    pub(crate) public_ip: std::net::Ipv4Addr,
    /// Its allocation id.
    pub(crate) allocation_id: AllocationId,
    /// Its association.
    pub(crate) association_id: AssociationId,
    /// The interface holding it.
    pub(crate) network_interface_id: EniId,
    /// Why it looks unused.
    pub(crate) reason: String,
    /// Why gc leaves it alone.
    pub(crate) why: String,
    /// What the operator can do.
    pub(crate) hint: String,
}

/// What `gc` found (and did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    /// Addresses eipool claimed, held by nobody alive.
    pub(crate) leaks: Vec<Leak>,
    /// Addresses that look unused but that eipool did not put there: never freed.
    pub(crate) left_alone: Vec<LeftAlone>,
    /// Redis holder records that no longer match EC2.
    pub(crate) stale_records: Vec<AllocationId>,
    /// Whether the plan was carried out.
    pub(crate) applied: bool,
}

impl Report {
    /// Human lines.
    pub(crate) fn text(&self) -> String {
        let verb = |done: bool| {
            if !self.applied {
                "would free"
            } else if done {
                "freed"
            } else {
                "skipped (changed since listed)"
            }
        };
        let mut out = String::new();
        for l in &self.leaks {
            out.push_str(&format!(
                "{} {} ({}) from {}: {}\n",
                verb(l.freed),
                l.public_ip,
                l.allocation_id,
                l.network_interface_id,
                l.reason
            ));
        }
        for l in &self.left_alone {
            out.push_str(&format!(
                "left alone {} ({}) on {}: {}, but {}. {}\n",
                l.public_ip, l.allocation_id, l.network_interface_id, l.reason, l.why, l.hint
            ));
        }
        for r in &self.stale_records {
            out.push_str(&format!(
                "{} stale Redis holder record of {r}\n",
                if self.applied {
                    "dropped"
                } else {
                    "would drop"
                }
            ));
        }
        if self.leaks.is_empty() && self.stale_records.is_empty() {
            if self.left_alone.is_empty() {
                out.push_str(
                    "nothing to collect: every associated pool address is on a live interface\n",
                );
            }
        } else if !self.applied {
            out.push_str("dry run: run again with --apply to do it\n");
        }
        out
    }
}

/// Find (and with `apply`, free) what nobody can be using.
pub(crate) async fn gc(ctx: &Context, budget: &Budget, apply: bool) -> Result<Report, Error> {
    let listing = budget
        .call("list pool", || ctx.ec2.describe_pool(&ctx.pool))
        .await?;
    let enis: Vec<EniId> = listing
        .iter()
        .filter_map(|a| a.association.as_ref()?.network_interface_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let interfaces: BTreeMap<EniId, InterfaceState> = budget
        .call("describe interfaces", || ctx.ec2.interface_states(&enis))
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let ids: Vec<InstanceId> = interfaces
        .values()
        .filter_map(|s| s.instance_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let instances = budget
        .call("describe instances", || ctx.ec2.instance_states(&ids))
        .await?;

    // What Redis recorded: holder records of claims older than the holder tag (gc may free
    // those), and records that no longer match EC2 (dropped, each only if it still says what
    // gc read).
    let view = match &ctx.redis {
        Some(redis) => {
            let allocs: Vec<AllocationId> =
                listing.iter().map(|a| a.allocation_id.clone()).collect();
            match budget
                .bounded(redis.view(&allocs))
                .await
                .map_err(|i| budget.error(i))?
            {
                Ok(view) => Some(view),
                Err(e) => {
                    warn!(error = %e, "Redis unavailable: only EC2 was checked");
                    None
                }
            }
        }
        None => None,
    };
    let record = |alloc: &AllocationId| view.as_ref().and_then(|v| v.holder_records.get(alloc));
    let mut stale: Vec<(AllocationId, String)> = Vec::new();
    for (alloc, holder) in view.iter().flat_map(|v| v.holder_records.iter()) {
        let current = listing
            .iter()
            .find(|a| &a.allocation_id == alloc)
            .and_then(|a| a.association.as_ref());
        if !current.is_some_and(|x| holder.matches(x)) {
            stale.push((alloc.clone(), holder.record.clone()));
        }
    }

    let mut leaks = Vec::new();
    let mut left_alone = Vec::new();
    for a in &listing {
        let Some(x) = &a.association else { continue };
        let Some(eni) = &x.network_interface_id else {
            continue;
        };
        match collect(
            a,
            why_dead(eni, &interfaces, &instances),
            record(&a.allocation_id),
        ) {
            Collect::InUse => {}
            Collect::Free { reason } => leaks.push(Leak {
                public_ip: a.public_ip,
                allocation_id: a.allocation_id.clone(),
                association_id: x.id.clone(),
                network_interface_id: eni.clone(),
                reason,
                freed: false,
            }),
            Collect::LeaveAlone { reason, why } => {
                warn!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, %reason, %why, "looks unused, but eipool did not put it there: left alone");
                left_alone.push(LeftAlone {
                    public_ip: a.public_ip,
                    allocation_id: a.allocation_id.clone(),
                    association_id: x.id.clone(),
                    network_interface_id: eni.clone(),
                    reason,
                    why,
                    hint: format!(
                        "If nobody uses it, disassociate it yourself (aws ec2 disassociate-address --association-id {}); if a media server uses it, claim on that node, which tags it",
                        x.id
                    ),
                });
            }
        }
    }

    if apply {
        for l in &mut leaks {
            // Re-check just before acting: a claimer may have taken it since the listing, or
            // someone associated it again. The same rule, on what EC2 shows now.
            let now = budget
                .call("re-check", || ctx.ec2.describe_address(&l.allocation_id))
                .await?
                .filter(|a| {
                    a.association
                        .as_ref()
                        .is_some_and(|x| x.id == l.association_id)
                        && matches!(
                            collect(a, Some(l.reason.clone()), record(&a.allocation_id)),
                            Collect::Free { .. }
                        )
                });
            let Some(x) = now.and_then(|a| a.association) else {
                continue;
            };
            budget
                .call("disassociate", || ctx.ec2.disassociate(&l.association_id))
                .await?;
            l.freed = true;
            // Claimable at once: no Redis marker keeps claimers off it.
            if let (Some(redis), Some(ip)) = (&ctx.redis, x.private_ip) {
                if let Err(e) = redis
                    .forget(&l.allocation_id, &l.network_interface_id, ip)
                    .await
                {
                    warn!(error = %e, allocation_id = %l.allocation_id, "could not clear its Redis records; they expire within seconds");
                }
            }
            info!(public_ip = %l.public_ip, allocation_id = %l.allocation_id, reason = %l.reason, "freed");
        }
        if let Some(redis) = &ctx.redis {
            for (r, seen) in &stale {
                match redis.drop_holder_record(r, seen).await {
                    Ok(true) => {}
                    Ok(false) => {
                        info!(allocation_id = %r, "its holder record changed since gc read it (a fresh claim): kept")
                    }
                    Err(e) => {
                        warn!(error = %e, allocation_id = %r, "could not drop the stale record")
                    }
                }
            }
        }
    }
    Ok(Report {
        leaks,
        left_alone,
        stale_records: stale.into_iter().map(|(a, _)| a).collect(),
        applied: apply,
    })
}
