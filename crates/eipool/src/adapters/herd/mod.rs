//! The Redis adapter: what a herd of claimers shares to stay off each other's toes — leases on
//! addresses ([`leases`]), the pace of EC2 calls ([`pace`]), the pool's listing ([`listing`]) and
//! holder records ([`records`]) — each step one atomic Lua script ([`scripts`]).
//!
//! Every key of a pool carries the hash tag `{<pool>}` so that all scripts touch one slot and
//! also run on Redis Cluster / ElastiCache; the pace keys, shared by every pool in the region,
//! have their own `{pace:<region>}` (one key per script):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `eipool:{P}:fence` | counter, `INCR` per acquisition | forever |
//! | `eipool:{P}:claim:<alloc>` | lease: `<owner>\|<fence>` | lease (PX), renewed while working |
//! | `eipool:{P}:assigned:<alloc>` | marker: `<eni>/<ip>` of the holder (or `?`), `\|<ms>` set | `plan::ASSIGNED_MARK_TTL` |
//! | `eipool:{P}:iface:<eni>/<ip>` | `<alloc>` this interface is taking or holds | `plan::INTENT_TTL` |
//! | `eipool:{P}:iface-lease:<eni>/<ip>` | owner token of the one claim running for this interface | lease, renewed |
//! | `eipool:{pace:<region>}:<class>` | GCRA theoretical arrival time (ms) of the class's shared rate, one per AWS region (EC2's buckets are per account and region) | seconds |
//! | `eipool:{P}:listing:v1` | the herd's most recent pool listing (JSON) | `plan::SHARED_LISTING_TTL` |
//! | `eipool:{P}:listing:lead` | owner token of the claimer making the next listing | a few call timeouts |
//! | `eipool:{P}:holders` (hash) | `<alloc>` → `<eni>/<ip>\|<unix ms>` of each claim eipool made | until released |
//!
//! Redis speeds the herd up and keeps claimers off each other's toes; it is not what makes the
//! claim safe: EC2's `AllowReassociation=false` is. A Redis that restarts empty loses leases and
//! fences; the worst that follows is a wasted AssociateAddress answered `Resource.AlreadyAssociated`.

mod leases;
mod listing;
mod pace;
mod records;
mod scripts;

use std::net::Ipv4Addr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub(crate) use leases::{Acquire, Lease};
pub use listing::SharedListing;

use crate::pure::error::Error;
use crate::pure::ids::{AllocationId, EniId};
use crate::support::budget::Transient;
use crate::support::metrics;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum HerdError {
    /// `--redis-url` is not a valid redis:// or rediss:// URL; fix the flag.
    #[error("--redis-url is not a valid Redis URL ({0}); expected redis://host:port or rediss://host:port")]
    BadUrl(String),
    /// Redis did not answer in time, refused the connection or failed the command; retry later.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
}

impl Transient for HerdError {
    fn is_transient(&self) -> bool {
        matches!(self, HerdError::Unavailable(_))
    }
}

impl From<HerdError> for Error {
    fn from(e: HerdError) -> Error {
        match e {
            e @ HerdError::BadUrl(_) => Error::usage(e.to_string()),
            e @ HerdError::Unavailable(_) => Error::Temporary {
                last: e.to_string(),
                elapsed: Duration::ZERO,
            },
        }
    }
}

/// Timing of leases and records.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Lease on an address; renewed before every EC2 call made under it.
    pub lease: Duration,
    /// How long an address stays marked assigned after a claimer validated it.
    pub assigned_ttl: Duration,
    /// Bound on every Redis round trip (connect included).
    pub op_timeout: Duration,
}

/// One process's handle on a pool's shared state in Redis, as one owner (a random token).
#[derive(Clone)]
pub struct Herd {
    conn: ConnectionManager,
    pool: String,
    /// The AWS region, whose EC2 request buckets every pool's herd in it shares.
    region: String,
    owner: String,
    timing: Timing,
}

impl std::fmt::Debug for Herd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Herd")
            .field("pool", &self.pool)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Parse `--redis-url` without connecting. Fails only on a malformed URL.
pub(crate) fn parse_url(url: &str) -> Result<redis::Client, HerdError> {
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://"))
    {
        return Err(HerdError::BadUrl(format!(
            "{url:?} has no redis:// or rediss:// scheme"
        )));
    }
    redis::Client::open(url).map_err(|e| HerdError::BadUrl(e.to_string()))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Herd {
    /// `owner`'s handle on `pool` (in AWS `region`) over a lazily connecting, self-reconnecting
    /// connection: nothing is sent until the first call, so a Redis that is down at start costs
    /// nothing more than its first timeout.
    pub fn new(
        client: redis::Client,
        pool: &str,
        region: &str,
        owner: String,
        timing: Timing,
    ) -> Result<Self, HerdError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timing.op_timeout))
            .set_response_timeout(Some(timing.op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(timing.op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| HerdError::Unavailable(e.to_string()))?;
        Ok(Herd {
            conn,
            pool: pool.to_string(),
            region: region.to_string(),
            owner,
            timing,
        })
    }

    /// This process's owner token.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The key of `what` in this pool, with the pool's hash tag.
    pub fn key(&self, what: &str) -> String {
        format!("eipool:{{{}}}:{what}", self.pool)
    }

    fn lease_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("claim:{alloc}"))
    }
    fn assigned_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("assigned:{alloc}"))
    }
    fn iface_key(&self, eni: &EniId, ip: Ipv4Addr) -> String {
        self.key(&format!("iface:{eni}/{ip}"))
    }
    fn interface_lease_key(&self, eni: &EniId, ip: Ipv4Addr) -> String {
        self.key(&format!("iface-lease:{eni}/{ip}"))
    }
    /// The key of the region-wide pace of `class` calls (its own hash slot).
    fn pace_key(&self, class: &str) -> String {
        format!("eipool:{{pace:{}}}:{class}", self.region)
    }
    fn value(&self, fence: u64) -> String {
        format!("{}|{fence}", self.owner)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, HerdError> {
        let result = match tokio::time::timeout(self.timing.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(HerdError::Unavailable(e.to_string())),
            Err(_) => Err(HerdError::Unavailable(format!(
                "no answer within {:?}",
                self.timing.op_timeout
            ))),
        };
        if result.is_err() {
            metrics::global().redis_errors.inc();
        }
        result
    }

    /// Round trip to Redis (PING), for health checks.
    pub(crate) async fn ping(&self) -> Result<(), HerdError> {
        let mut conn = self.conn.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }
}
