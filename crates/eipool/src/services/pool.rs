//! `eipool pool grow` and `eipool pool shrink`: change the pool's size. Grow allocates addresses
//! tagged into the pool at creation (no untagged window, no duplicate tags); with an idempotency
//! token a re-run after a crash allocates only what is missing. Shrink releases free addresses
//! only: never an associated one (EC2 refuses that too), never one a claimer is working on.

use serde::Serialize;
use tracing::{info, warn};

use crate::adapters::aws::Ec2Error;
use crate::pure::address::{Address, AddressSource};
use crate::pure::classify::State;
use crate::pure::error::Error;
use crate::pure::ids::AllocationId;
use crate::services::context::Context;
use crate::services::pool_view;
use crate::support::budget::{Budget, Stopped};

/// The tag a grow marks its addresses with when given an idempotency token.
pub(crate) const TOKEN_TAG: &str = "eipool:grow-token";

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    /// The Elastic IP.
    pub(crate) public_ip: std::net::Ipv4Addr,
    /// Its allocation id.
    pub(crate) allocation_id: String,
}

impl From<&Address> for Entry {
    fn from(a: &Address) -> Self {
        Entry {
            public_ip: a.public_ip,
            allocation_id: a.allocation_id.to_string(),
        }
    }
}

/// What `pool grow` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Grown {
    /// The pool.
    pub(crate) pool: String,
    /// Addresses allocated by this run.
    pub(crate) allocated: Vec<Entry>,
    /// Addresses an earlier run with the same token had allocated already.
    pub(crate) already: Vec<Entry>,
}

/// What `pool shrink` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Shrunk {
    /// The pool.
    pub(crate) pool: String,
    /// How many were asked for.
    pub(crate) requested: usize,
    /// Addresses released.
    pub(crate) released: Vec<Entry>,
}

/// Allocate `count` addresses into the pool (with `token`: so that the pool has `count` addresses
/// carrying that token, allocating only the missing ones).
pub(crate) async fn grow(
    ctx: &Context,
    budget: &Budget,
    count: usize,
    token: Option<&str>,
    source: &AddressSource,
) -> Result<Grown, Error> {
    let already: Vec<Address> = match token {
        Some(t) => {
            budget
                .call("find earlier grow", || {
                    ctx.ec2.describe_pool_tagged(&ctx.pool, TOKEN_TAG, t)
                })
                .await?
        }
        None => Vec::new(),
    };
    let mut allocated = Vec::new();
    let mut failed = None;
    for _ in already.len()..count {
        // Not retried: a lost answer could mean an allocation we don't know of. With a token,
        // the re-run finds it by its tag; without one, the error says so.
        let a = match budget
            .bounded(
                ctx.ec2
                    .allocate(&ctx.pool, token.map(|t| (TOKEN_TAG, t)), source),
            )
            .await
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                failed = Some(match e {
                    e @ (Ec2Error::Throttled { .. } | Ec2Error::Transient { .. }) => {
                        Error::Temporary {
                            last: format!(
                                "{e}; allocated {} of {count} so far. Re-run with --idempotency-token to allocate only the rest",
                                allocated.len() + already.len()
                            ),
                            timeout: None,
                        }
                    }
                    e => e.into(),
                });
                break;
            }
            Err(i) => {
                failed = Some(budget.error(i));
                break;
            }
        };
        info!(public_ip = %a.public_ip, allocation_id = %a.allocation_id, pool = %ctx.pool, "allocated");
        allocated.push(Entry::from(&a));
    }
    // Wake the pool's line for what was allocated, also when a later allocation failed: the
    // head takes one of these at once rather than at its next --interval.
    if let (Some(redis), false) = (&ctx.redis, allocated.is_empty()) {
        if let Err(e) = redis.line_freed(allocated.len() as u64).await {
            warn!(error = %e, "could not wake the pool's line; its waiters find the new addresses at their next --interval");
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Grown {
        pool: ctx.pool.clone(),
        allocated,
        already: already.iter().map(Entry::from).collect(),
    })
}

/// Release up to `count` free addresses of the pool.
pub(crate) async fn shrink(ctx: &Context, budget: &Budget, count: usize) -> Result<Shrunk, Error> {
    let st = pool_view::collect(ctx, budget).await?;
    let mut released = Vec::new();
    for row in st.addresses.iter().filter(|r| r.state == State::Free) {
        if released.len() == count {
            break;
        }
        let alloc: AllocationId = row
            .allocation_id
            .parse()
            .map_err(|e| Error::Internal(format!("{e}")))?;
        match budget
            .retry("release", || ctx.ec2.release_address(&alloc))
            .await
        {
            Ok(()) => {
                info!(public_ip = %row.public_ip, allocation_id = %alloc, "released to AWS");
                released.push(Entry {
                    public_ip: row.public_ip,
                    allocation_id: row.allocation_id.clone(),
                });
            }
            // Taken since the listing: EC2 refuses to release an associated address.
            Err(Stopped::Failed(Ec2Error::Rejected { code, .. }))
                if code == "InvalidIPAddress.InUse" =>
            {
                warn!(allocation_id = %alloc, "associated since listed: kept");
            }
            Err(Stopped::Failed(Ec2Error::AllocationNotFound(_))) => {}
            Err(s) => return Err(budget.stopped(s)),
        }
    }
    if released.len() < count {
        warn!(
            requested = count,
            released = released.len(),
            "fewer free addresses than requested; associated ones are never released"
        );
    }
    Ok(Shrunk {
        pool: ctx.pool.clone(),
        requested: count,
        released,
    })
}
