//! `eipool status`: the pool as operators see it — every address, its state, who holds it and
//! since when — plus the CIDR blocks to publish to customers' firewall admins.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::budget::Budget;
use crate::cidr;
use crate::claim::ec2_failure;
use crate::context::Context;
use crate::ec2::{Address, EniId, InstanceId};
use crate::error::Error;
use crate::lock::View;

/// The state of one pool address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not associated, nobody claiming it.
    Free,
    /// Associated to the interface eipool assigned it to.
    Assigned,
    /// Not associated yet, but a claimer holds a Redis claim on it.
    Claiming,
    /// Associated, but not by eipool (or moved since): someone ran AssociateAddress by hand, or
    /// the claim record is gone.
    Foreign,
}

impl State {
    /// Every state, in display order.
    pub const ALL: [State; 4] = [
        State::Free,
        State::Assigned,
        State::Claiming,
        State::Foreign,
    ];

    /// The lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            State::Free => "free",
            State::Assigned => "assigned",
            State::Claiming => "claiming",
            State::Foreign => "foreign",
        }
    }
}

/// Classify one address from EC2's view and (when there is one) Redis's. Without Redis every
/// associated address counts as assigned: there is nothing to tell them apart by.
pub fn classify(a: &Address, redis: Option<&View>) -> State {
    match (&a.association, redis) {
        (Some(_), None) => State::Assigned,
        (Some(x), Some(view)) => match view.holders.get(&a.allocation_id) {
            Some(h) if h.matches(x) => State::Assigned,
            _ => State::Foreign,
        },
        (None, Some(view)) if view.claiming.contains(&a.allocation_id) => State::Claiming,
        (None, _) => State::Free,
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The Elastic IP.
    pub public_ip: Ipv4Addr,
    /// Its allocation id.
    pub allocation_id: String,
    /// Its state.
    pub state: State,
    /// The interface holding it.
    pub network_interface_id: Option<String>,
    /// That interface's instance.
    pub instance_id: Option<String>,
    /// The private IP it maps to.
    pub private_ip: Option<Ipv4Addr>,
    /// Since when eipool assigned it (RFC 3339), when Redis knows.
    pub since: Option<String>,
}

/// The whole pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The pool's name.
    pub pool: String,
    /// How many addresses it has.
    pub total: usize,
    /// Count per state (every state present, zero included).
    pub counts: BTreeMap<&'static str, usize>,
    /// Whether Redis was consulted (without it, claiming/foreign can't be told).
    pub redis: bool,
    /// Every address, by public IP.
    pub addresses: Vec<Row>,
}

impl PoolStatus {
    /// How many addresses are in `state`.
    pub fn count(&self, state: State) -> usize {
        self.counts.get(state.name()).copied().unwrap_or(0)
    }

    /// The minimal CIDR blocks covering every address of the pool.
    pub fn cidrs(&self) -> Vec<cidr::Block> {
        let ips: Vec<Ipv4Addr> = self.addresses.iter().map(|r| r.public_ip).collect();
        cidr::minimal_blocks(&ips)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<16} {:<27} {:<9} {:<23} {:<20} {:<15} {}\n",
            "PUBLIC IP", "ALLOCATION", "STATE", "INTERFACE", "INSTANCE", "PRIVATE IP", "SINCE"
        );
        for r in &self.addresses {
            out.push_str(&format!(
                "{:<16} {:<27} {:<9} {:<23} {:<20} {:<15} {}\n",
                r.public_ip,
                r.allocation_id,
                r.state.name(),
                r.network_interface_id.as_deref().unwrap_or("-"),
                r.instance_id.as_deref().unwrap_or("-"),
                r.private_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.since.as_deref().unwrap_or("-"),
            ));
        }
        let counts: Vec<String> = State::ALL
            .iter()
            .map(|s| format!("{} {}", self.count(*s), s.name()))
            .collect();
        out.push_str(&format!(
            "\npool {:?}: {} addresses: {}",
            self.pool,
            self.total,
            counts.join(", ")
        ));
        if !self.redis {
            out.push_str(
                " (no --redis-url: claiming and foreign cannot be told apart from assigned)",
            );
        }
        out.push('\n');
        out
    }
}

/// Read the pool from EC2 (one listing, one interface lookup) and Redis (one MGET, one HGETALL).
pub async fn collect(ctx: &Context, budget: &Budget) -> Result<PoolStatus, Error> {
    let interrupted = |i| budget.error(i);
    let listing = budget
        .retry("list pool", || ctx.ec2.describe_pool(&ctx.pool))
        .await
        .map_err(interrupted)?
        .map_err(|e| ec2_failure(e, Some(&ctx.pool)))?;
    let view = match &ctx.claims {
        Some(claims) => {
            let allocs: Vec<_> = listing.iter().map(|a| a.allocation_id.clone()).collect();
            match budget
                .bounded(claims.view(&allocs))
                .await
                .map_err(interrupted)?
            {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "Redis unavailable: showing EC2's view only");
                    None
                }
            }
        }
        None => None,
    };
    // moto (and EC2 for some association kinds) omit the instance: look it up by interface.
    let enis: Vec<EniId> = listing
        .iter()
        .filter(|a| {
            a.association
                .as_ref()
                .is_some_and(|x| x.instance_id.is_none())
        })
        .filter_map(|a| a.association.as_ref()?.network_interface_id.clone())
        .collect();
    let instances: BTreeMap<EniId, InstanceId> = budget
        .retry("describe interfaces", || ctx.ec2.interface_states(&enis))
        .await
        .map_err(interrupted)?
        .map_err(|e| ec2_failure(e, Some(&ctx.pool)))?
        .into_iter()
        .filter_map(|s| Some((s.id, s.instance_id?)))
        .collect();

    let mut rows: Vec<Row> = listing
        .iter()
        .map(|a| {
            let state = classify(a, view.as_ref());
            let x = a.association.as_ref();
            let eni = x.and_then(|x| x.network_interface_id.clone());
            let since = (state == State::Assigned)
                .then(|| view.as_ref()?.holders.get(&a.allocation_id))
                .flatten()
                .filter(|h| h.since_ms > 0)
                .map(|h| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.since_ms),
                    )
                    .to_string()
                });
            Row {
                public_ip: a.public_ip,
                allocation_id: a.allocation_id.to_string(),
                state,
                instance_id: x
                    .and_then(|x| x.instance_id.clone())
                    .or_else(|| eni.as_ref().and_then(|e| instances.get(e).cloned()))
                    .map(|i| i.0),
                network_interface_id: eni.map(|e| e.0),
                private_ip: x.and_then(|x| x.private_ip),
                since,
            }
        })
        .collect();
    rows.sort_by_key(|r| r.public_ip);
    let mut counts: BTreeMap<&'static str, usize> =
        State::ALL.iter().map(|s| (s.name(), 0)).collect();
    for r in &rows {
        *counts.entry(r.state.name()).or_default() += 1;
    }
    Ok(PoolStatus {
        pool: ctx.pool.clone(),
        total: rows.len(),
        counts,
        redis: view.is_some(),
        addresses: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::{AllocationId, Association, AssociationId};
    use crate::lock::Holder;

    fn addr(id: &str, on: Option<&str>) -> Address {
        Address {
            allocation_id: AllocationId(id.into()),
            public_ip: "203.0.113.1".parse().unwrap(),
            association: on.map(|eni| Association {
                id: AssociationId(format!("eipassoc-{id}")),
                network_interface_id: Some(EniId(eni.into())),
                private_ip: Some("10.0.0.5".parse().unwrap()),
                instance_id: None,
            }),
            pool: Some("p".into()),
        }
    }

    #[test]
    fn states_from_ec2_and_redis() {
        let mut view = View::default();
        view.claiming.insert(AllocationId("b".into()));
        view.holders.insert(
            AllocationId("c".into()),
            Holder {
                at: "eni-1/10.0.0.5".into(),
                since_ms: 1,
            },
        );
        view.holders.insert(
            AllocationId("d".into()),
            Holder {
                at: "eni-1/10.0.0.5".into(),
                since_ms: 1,
            },
        );
        // (address, with redis, without redis)
        let cases = [
            (addr("a", None), State::Free, State::Free),
            (addr("b", None), State::Claiming, State::Free),
            (addr("c", Some("eni-1")), State::Assigned, State::Assigned),
            (addr("d", Some("eni-2")), State::Foreign, State::Assigned), // moved since eipool assigned it
            (addr("e", Some("eni-3")), State::Foreign, State::Assigned), // never assigned by eipool
        ];
        for (a, with, without) in cases {
            assert_eq!(
                classify(&a, Some(&view)),
                with,
                "{} with Redis",
                a.allocation_id
            );
            assert_eq!(
                classify(&a, None),
                without,
                "{} without Redis",
                a.allocation_id
            );
        }
    }
}
