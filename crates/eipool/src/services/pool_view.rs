//! The pool as operators see it — every address, its state, who holds it and since when — plus
//! the CIDR blocks to publish to customers' firewall admins. Read by `status`, `pool shrink`,
//! the exporter and the agent's pool metrics.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::pure::cidr;
use crate::pure::classify::{pool_state, State};
use crate::pure::error::Error;
use crate::pure::ids::{EniId, InstanceId};
use crate::services::context::Context;
use crate::support::budget::Budget;
use crate::support::metrics;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    /// The Elastic IP.
    pub(crate) public_ip: Ipv4Addr,
    /// Its allocation id.
    pub(crate) allocation_id: String,
    /// Its state.
    pub(crate) state: State,
    /// The interface holding it.
    pub(crate) network_interface_id: Option<String>,
    /// That interface's instance.
    pub(crate) instance_id: Option<String>,
    /// The private IP it maps to.
    pub(crate) private_ip: Option<Ipv4Addr>,
    /// Since when eipool assigned it (RFC 3339), when Redis knows.
    pub(crate) since: Option<String>,
}

/// The whole pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PoolStatus {
    /// The pool's name.
    pub(crate) pool: String,
    /// How many addresses it has.
    pub(crate) total: usize,
    /// Count per state (every state present, zero included).
    pub(crate) counts: BTreeMap<&'static str, usize>,
    /// Whether Redis was consulted (without it, `claiming` can't be told from `free`).
    pub(crate) redis: bool,
    /// `--redis-url` (its password redacted) when it was given but Redis did not answer.
    #[serde(skip)]
    pub(crate) redis_unanswered: Option<String>,
    /// Servers waiting in the pool's line for a freed address (needs Redis; 0 without).
    pub(crate) waiting: u64,
    /// Why the line could not be counted, when Redis answered the rest but not that.
    #[serde(skip)]
    pub(crate) waiting_unknown: Option<String>,
    /// Every address, by public IP.
    pub(crate) addresses: Vec<Row>,
}

impl PoolStatus {
    /// How many addresses are in `state`.
    pub(crate) fn count(&self, state: State) -> usize {
        self.counts.get(state.name()).copied().unwrap_or(0)
    }

    /// The minimal CIDR blocks covering every address of the pool.
    pub(crate) fn cidrs(&self) -> Vec<cidr::Block> {
        let ips: Vec<Ipv4Addr> = self.addresses.iter().map(|r| r.public_ip).collect();
        cidr::minimal_blocks(&ips)
    }

    /// The human table.
    pub(crate) fn table(&self) -> String {
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
        match (&self.redis_unanswered, self.redis) {
            (_, true) => {}
            (Some(url), false) => out.push_str(&format!(
                " (Redis at {url} did not answer: this is EC2's view alone, where addresses being claimed show as free and the waiting line is not counted)"
            )),
            (None, false) => {
                out.push_str(" (no --redis-url: addresses being claimed show as free)")
            }
        }
        out.push('\n');
        if let Some(why) = &self.waiting_unknown {
            out.push_str(&format!(
                "the pool's waiting line could not be counted: {why}\n"
            ));
        } else if self.waiting > 0 {
            out.push_str(&format!(
                "{} servers waiting in the pool's line for a freed address\n",
                self.waiting
            ));
        }
        out
    }
}

/// Read the pool from EC2 (one listing, one interface lookup) and Redis (one MGET, one HGETALL).
pub(crate) async fn collect(ctx: &Context, budget: &Budget) -> Result<PoolStatus, Error> {
    let listing = budget
        .call("list pool", || ctx.ec2.describe_pool(&ctx.pool))
        .await?;
    let view = match &ctx.redis {
        Some(redis) => {
            let allocs: Vec<_> = listing.iter().map(|a| a.allocation_id.clone()).collect();
            match budget
                .bounded(redis.view(&allocs))
                .await
                .map_err(|i| budget.error(i))?
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
        .call("describe interfaces", || ctx.ec2.interface_states(&enis))
        .await?
        .into_iter()
        .filter_map(|s| Some((s.id, s.instance_id?)))
        .collect();

    let mut rows: Vec<Row> = listing
        .iter()
        .map(|a| {
            let state = pool_state(a, view.as_ref());
            let x = a.association.as_ref();
            let eni = x.and_then(|x| x.network_interface_id.clone());
            // Since when: the holder tag on the address says; else Redis's record.
            let since = (state == State::Assigned)
                .then(|| {
                    a.holder
                        .as_ref()
                        .filter(|t| x.is_some_and(|x| t.matches(x)))
                        .map(|t| t.since.clone())
                        .or_else(|| {
                            view.as_ref()?
                                .holder_records
                                .get(&a.allocation_id)
                                .filter(|h| h.since_ms > 0)
                                .map(|h| {
                                    humantime::format_rfc3339_seconds(
                                        std::time::UNIX_EPOCH
                                            + std::time::Duration::from_millis(h.since_ms),
                                    )
                                    .to_string()
                                })
                        })
                })
                .flatten();
            Row {
                public_ip: a.public_ip,
                allocation_id: a.allocation_id.to_string(),
                state,
                instance_id: x
                    .and_then(|x| x.instance_id.clone())
                    .or_else(|| eni.as_ref().and_then(|e| instances.get(e).cloned()))
                    .map(String::from),
                network_interface_id: eni.map(String::from),
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
    let (waiting, waiting_unknown) = match (&ctx.redis, &view) {
        (Some(redis), Some(_)) => match budget.bounded(redis.line_len()).await {
            Ok(Ok(n)) => (n, None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not count the pool's waiting line");
                (0, Some(e.to_string()))
            }
            Err(_) => (0, Some("no time left to ask Redis".to_string())),
        },
        (Some(_), None) => (0, Some("Redis did not answer".to_string())),
        (None, _) => (0, None),
    };
    Ok(PoolStatus {
        pool: ctx.pool.clone(),
        total: rows.len(),
        counts,
        redis: view.is_some(),
        redis_unanswered: match (&ctx.redis, &view) {
            (Some(redis), None) => Some(redis.target_shown().to_string()),
            _ => None,
        },
        waiting,
        waiting_unknown,
        addresses: rows,
    })
}

/// Read the pool once within `budget` and set `eipool_pool_addresses{state}`. Returns whether
/// the read succeeded.
pub(crate) async fn publish_gauges(ctx: &Context, budget: &Budget) -> bool {
    match collect(ctx, budget).await {
        Ok(st) => {
            metrics::global().set_pool(&st.pool, &State::ALL.map(|s| (s.name(), st.count(s))));
            match st.waiting_unknown {
                None => metrics::global().set_waiting(&st.pool, Some(st.waiting)),
                Some(_) => metrics::global().set_waiting(&st.pool, None),
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the pool for its metrics");
            false
        }
    }
}

/// Count the pool's waiting line (the dead dropped first) and set `eipool_pool_waiting`: the
/// exporter does it every `plan::LINE_COUNT_EVERY`, so the gauge follows a waiter's death within
/// seconds also when no one else waits. `Err`: why it could not (the gauge is then absent).
pub(crate) async fn publish_waiting(ctx: &Context) -> Result<u64, String> {
    let Some(redis) = &ctx.redis else {
        return Err("no --redis-url".into());
    };
    match redis.line_len().await {
        Ok(n) => {
            metrics::global().set_waiting(&ctx.pool, Some(n));
            Ok(n)
        }
        Err(e) => {
            metrics::global().set_waiting(&ctx.pool, None);
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(redis: bool, redis_unanswered: Option<&str>) -> PoolStatus {
        PoolStatus {
            pool: "media".into(),
            total: 0,
            counts: State::ALL.iter().map(|s| (s.name(), 0)).collect(),
            redis,
            redis_unanswered: redis_unanswered.map(String::from),
            waiting: 0,
            waiting_unknown: None,
            addresses: vec![],
        }
    }

    #[test]
    fn the_table_tells_a_redis_that_did_not_answer_from_none_configured() {
        let down = status(false, Some("redis://eipool:***@redis:6379")).table();
        assert!(
            down.contains("Redis at redis://eipool:***@redis:6379 did not answer")
                && down.contains("EC2's view alone")
                && !down.contains("no --redis-url"),
            "{down}"
        );
        let none = status(false, None).table();
        assert!(none.contains("no --redis-url"), "{none}");
        let up = status(true, None).table();
        assert!(!up.contains("Redis") && !up.contains("redis"), "{up}");
    }
}
