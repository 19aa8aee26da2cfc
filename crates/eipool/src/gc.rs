//! `eipool gc`: find pool addresses that nobody can be using — held by an interface whose
//! instance is stopped or terminated, by a detached interface, or by one that no longer exists —
//! and Redis holder records that no longer match EC2. Prints the plan; `--apply` carries it out.
//! An address on an interface of a running instance is never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tracing::{info, warn};

use crate::budget::Budget;
use crate::claim::ec2_failure;
use crate::context::Context;
use crate::ec2::{AllocationId, AssociationId, EniId, InstanceId, InterfaceState};
use crate::error::Error;

/// Instance states in which nothing on the instance can be using an address.
const DEAD: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// An address to free, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    /// The Elastic IP.
    pub public_ip: std::net::Ipv4Addr,
    /// Its allocation id.
    pub allocation_id: AllocationId,
    /// The association to remove.
    pub association_id: AssociationId,
    /// The interface holding it.
    pub network_interface_id: EniId,
    /// Why nobody can be using it.
    pub reason: String,
    /// Whether `--apply` freed it.
    pub freed: bool,
}

/// What `gc` found (and did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Addresses held by nobody alive.
    pub leaks: Vec<Leak>,
    /// Redis holder records that no longer match EC2.
    pub stale_records: Vec<AllocationId>,
    /// Whether the plan was carried out.
    pub applied: bool,
}

impl Report {
    /// Human lines.
    pub fn text(&self) -> String {
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
            out.push_str(
                "nothing to collect: every associated pool address is on a live interface\n",
            );
        } else if !self.applied {
            out.push_str("dry run: run again with --apply to do it\n");
        }
        out
    }
}

/// Why an address on `eni` cannot be in use, if it cannot (pure).
pub fn why_dead(
    eni: &EniId,
    interfaces: &BTreeMap<EniId, InterfaceState>,
    instances: &BTreeMap<InstanceId, String>,
) -> Option<String> {
    let Some(iface) = interfaces.get(eni) else {
        return Some(format!("interface {eni} no longer exists"));
    };
    match &iface.instance_id {
        None => Some(format!(
            "interface {eni} is not attached to any instance (status {})",
            iface.status
        )),
        Some(i) => match instances.get(i) {
            None => Some(format!("instance {i} no longer exists")),
            Some(state) if DEAD.contains(&state.as_str()) => {
                Some(format!("instance {i} is {state}"))
            }
            Some(_) => None,
        },
    }
}

/// Find (and with `apply`, free) what nobody can be using.
pub async fn gc(ctx: &Context, budget: &Budget, apply: bool) -> Result<Report, Error> {
    let fail = |e| ec2_failure(e, Some(&ctx.pool));
    let listing = budget
        .retry("list pool", || ctx.ec2.describe_pool(&ctx.pool))
        .await
        .map_err(|i| budget.error(i))?
        .map_err(fail)?;
    let enis: Vec<EniId> = listing
        .iter()
        .filter_map(|a| a.association.as_ref()?.network_interface_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let interfaces: BTreeMap<EniId, InterfaceState> = budget
        .retry("describe interfaces", || ctx.ec2.interface_states(&enis))
        .await
        .map_err(|i| budget.error(i))?
        .map_err(fail)?
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
        .retry("describe instances", || ctx.ec2.instance_states(&ids))
        .await
        .map_err(|i| budget.error(i))?
        .map_err(fail)?;

    let mut leaks = Vec::new();
    for a in &listing {
        let Some(x) = &a.association else { continue };
        let Some(eni) = &x.network_interface_id else {
            continue;
        };
        if let Some(reason) = why_dead(eni, &interfaces, &instances) {
            leaks.push(Leak {
                public_ip: a.public_ip,
                allocation_id: a.allocation_id.clone(),
                association_id: x.id.clone(),
                network_interface_id: eni.clone(),
                reason,
                freed: false,
            });
        }
    }

    let mut stale_records = Vec::new();
    if let Some(claims) = &ctx.claims {
        let allocs: Vec<AllocationId> = listing.iter().map(|a| a.allocation_id.clone()).collect();
        match budget
            .bounded(claims.view(&allocs))
            .await
            .map_err(|i| budget.error(i))?
        {
            Ok(view) => {
                for (alloc, holder) in &view.holders {
                    let current = listing
                        .iter()
                        .find(|a| &a.allocation_id == alloc)
                        .and_then(|a| a.association.as_ref());
                    if !current.is_some_and(|x| holder.matches(x)) {
                        stale_records.push(alloc.clone());
                    }
                }
            }
            Err(e) => warn!(error = %e, "Redis unavailable: only EC2 was checked"),
        }
    }

    if apply {
        for l in &mut leaks {
            // Re-check just before acting: a claimer may have taken it since the listing.
            let now = budget
                .retry("re-check", || ctx.ec2.describe_address(&l.allocation_id))
                .await
                .map_err(|i| budget.error(i))?
                .map_err(fail)?;
            if now.and_then(|a| a.association).map(|x| x.id) != Some(l.association_id.clone()) {
                continue;
            }
            budget
                .retry("disassociate", || ctx.ec2.disassociate(&l.association_id))
                .await
                .map_err(|i| budget.error(i))?
                .map_err(fail)?;
            l.freed = true;
            info!(public_ip = %l.public_ip, allocation_id = %l.allocation_id, reason = %l.reason, "freed");
        }
        if let Some(claims) = &ctx.claims {
            for r in &stale_records {
                if let Err(e) = claims.drop_holder(r).await {
                    warn!(error = %e, allocation_id = %r, "could not drop the stale record");
                }
            }
        }
    }
    Ok(Report {
        leaks,
        stale_records,
        applied: apply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_nobody_can_use_are_collected() {
        let eni = |s: &str| EniId(s.into());
        let inst = |s: &str| InstanceId(s.into());
        let interfaces: BTreeMap<EniId, InterfaceState> = [
            ("eni-run", Some("i-run"), "in-use"),
            ("eni-stop", Some("i-stop"), "in-use"),
            ("eni-term", Some("i-term"), "in-use"),
            ("eni-gone-instance", Some("i-gone"), "in-use"),
            ("eni-detached", None, "available"),
        ]
        .into_iter()
        .map(|(e, i, st)| {
            (
                eni(e),
                InterfaceState {
                    id: eni(e),
                    status: st.into(),
                    instance_id: i.map(inst),
                },
            )
        })
        .collect();
        let instances: BTreeMap<InstanceId, String> = [
            ("i-run", "running"),
            ("i-stop", "stopped"),
            ("i-term", "terminated"),
        ]
        .into_iter()
        .map(|(i, s)| (inst(i), s.to_string()))
        .collect();
        // (interface, collected?)
        let cases = [
            ("eni-run", false),
            ("eni-stop", true),
            ("eni-term", true),
            ("eni-gone-instance", true),
            ("eni-detached", true),
            ("eni-missing", true),
        ];
        for (e, dead) in cases {
            assert_eq!(
                why_dead(&eni(e), &interfaces, &instances).is_some(),
                dead,
                "{e}"
            );
        }
    }
}
