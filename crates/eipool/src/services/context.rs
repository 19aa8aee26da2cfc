//! What every command talks to: the EC2 client and, when configured, the pool's shared state in
//! Redis.

use std::time::Duration;

use rand::Rng;
use tracing::warn;

use crate::adapters::aws::{self, Ec2};
use crate::adapters::redis::{Redis, RedisTarget, Timing};
use crate::pure::error::Error;
use crate::pure::plan::MARKER_TTL;

/// Bound on each Redis round trip.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Timeout of each EC2 call made by the operations commands (claim has `--call-timeout`).
pub(crate) const OPS_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Lease of claims made by commands that do not take `--lease`.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// EC2 and Redis for one pool.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The pool's name.
    pub(crate) pool: String,
    /// EC2.
    pub(crate) ec2: Ec2,
    /// The pool's shared state in Redis, when `--redis-url` is given.
    pub(crate) redis: Option<Redis>,
}

/// Connect to EC2 (standard AWS chain) and prepare Redis (lazily: nothing sent yet).
pub(crate) async fn connect(
    pool: &str,
    redis: Option<&RedisTarget>,
    call_timeout: Duration,
    lease: Duration,
) -> Result<Context, Error> {
    let ec2 = aws::connect(call_timeout).await.map_err(Error::Usage)?;
    let handle = redis.map(|target| {
        Redis::new(
            target.clone(),
            pool,
            ec2.region(),
            owner_token(),
            Timing {
                lease,
                marker_ttl: MARKER_TTL,
                op_timeout: REDIS_TIMEOUT.min(call_timeout),
            },
        )
    });
    Ok(Context {
        pool: pool.to_string(),
        ec2,
        redis: handle,
    })
}

/// A random owner token for this process's leases.
fn owner_token() -> String {
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

impl Context {
    /// Warn once that Redis is not configured.
    pub(crate) fn warn_without_redis(&self, what: &str) {
        if self.redis.is_none() {
            warn!("no --redis-url: {what}");
        }
    }
}
