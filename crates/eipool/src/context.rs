//! What every command talks to: the EC2 client and, when configured, the pool's Redis claims.

use std::time::Duration;

use rand::Rng;
use tracing::warn;

use crate::ec2::{self, Ec2};
use crate::error::Error;
use crate::lock::{Claims, Timing};

/// How long an address stays marked assigned in Redis after validation, so that claimers
/// reading a stale DescribeAddresses skip it.
pub const ASSIGNED_TTL: Duration = Duration::from_secs(300);
/// Bound on each Redis round trip.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Timeout of each EC2 call made by the operations commands (claim has `--call-timeout`).
pub const OPS_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Lease of claims made by commands that do not take `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// EC2 and Redis for one pool.
#[derive(Debug, Clone)]
pub struct Context {
    /// The pool's name.
    pub pool: String,
    /// EC2.
    pub ec2: Ec2,
    /// Redis claims, when `--redis-url` is given.
    pub claims: Option<Claims>,
}

/// Connect to EC2 (standard AWS chain) and prepare Redis (lazily: nothing sent yet).
pub async fn connect(
    pool: &str,
    redis: Option<&redis::Client>,
    call_timeout: Duration,
    lease: Duration,
) -> Result<Context, Error> {
    let ec2 = ec2::connect(call_timeout).await.map_err(Error::Usage)?;
    let claims = match redis {
        Some(client) => Some(
            Claims::new(
                client.clone(),
                pool,
                owner_token(),
                Timing {
                    lease,
                    assigned_ttl: ASSIGNED_TTL,
                    op_timeout: REDIS_TIMEOUT.min(call_timeout),
                },
            )
            .map_err(|e| Error::Usage(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Context {
        pool: pool.to_string(),
        ec2,
        claims,
    })
}

/// A random owner token for this process's Redis claims.
fn owner_token() -> String {
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

impl Context {
    /// Warn once that Redis is not configured.
    pub fn warn_without_redis(&self, what: &str) {
        if self.claims.is_none() {
            warn!("no --redis-url: {what}");
        }
    }
}
