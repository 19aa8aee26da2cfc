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
//! | `eipool:{P}:fence` | fencing number: `INCR` per acquisition, never below Redis's clock in 100 µs units, so it grows across a failover or an empty restart; below 10^14, which the previous release can print | forever |
//! | `eipool:{P}:claim:<alloc>` | lease: `<owner>\|<fence>` | lease (PX), renewed while working |
//! | `eipool:{P}:assigned:<alloc>` | marker: `<eni>/<ip>` of the holder (or `?`), `\|<ms>` set | `plan::MARKER_TTL` |
//! | `eipool:{P}:iface:<eni>/<ip>` | `<alloc>` this interface is taking or holds | `plan::INTENT_TTL` |
//! | `eipool:{P}:iface-lease:<eni>/<ip>` | owner token of the one claim running for this interface | lease, renewed |
//! | `eipool:{pace:<region>}:<class>:adaptive` | the class's shared pace, one per AWS region (EC2's buckets are per account and region): its GCRA schedule of tickets and its rate, cut on throttling and growing back (`plan::PaceState`) | until idle and back at its ceiling |
//! | `eipool:{P}:listing:v1` | the herd's most recent pool listing (JSON) | `plan::SHARED_LISTING_TTL` |
//! | `eipool:{P}:listing:at` | Redis ms when it was shared (its age; none from the previous release: counted as old) | as `listing:v1` |
//! | `eipool:{P}:outsiders` | Redis ms when a caller outside the herd last took an address its listing and Redis showed free (another cluster on the pool, someone by hand) | `plan::OUTSIDERS_SEEN` |
//! | `eipool:{P}:listing:lead` | owner token of the claimer making the next listing | a few call timeouts |
//! | `eipool:{P}:line` (sorted set) | each waiting server (`<eni>/<ip>`), scored by its ticket (Redis's ms when it joined) | until it leaves, its heartbeat lapses, or its restart grace ends |
//! | `eipool:{P}:line:beats` (hash) | waiting server → Redis ms of its last ask (heartbeat) | as `line` |
//! | `eipool:{P}:line:away` (hash) | waiting server stopped by a signal → Redis ms until which it keeps its place | its grace |
//! | `eipool:{P}:line:freed` | how many addresses came free | forever |
//! | `eipool:{P}:holders` (hash) | `<alloc>` → `<eni>/<ip>\|<unix ms>` of each claim eipool made | until released |
//!
//! Redis speeds the herd up and keeps claimers off each other's toes; it is not what makes the
//! claim safe: EC2's `AllowReassociation=false` is. A Redis that restarts empty or fails over to
//! a replica that missed the last writes loses leases (fences keep growing); the worst that
//! follows is a wasted AssociateAddress answered `Resource.AlreadyAssociated`.
//!
//! [`connect`] reaches one node or a cluster behind the same URL, over TLS when asked, and sorts
//! every failure into *unavailable* (claims go on without Redis for a while) or *misconfigured*
//! (refused credentials, ACL, a replica, TLS trust: the command stops with exit 2).

mod commands;
mod connect;
mod diagnose;
mod failures;
mod leases;
mod line;
mod listing;
mod pace;
mod records;
mod scripts;
mod target;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

pub(crate) use failures::Topology;
pub(crate) use leases::{Acquire, Lease};
pub use listing::SharedListing;
pub use pace::{PaceAnswer, PaceAsk};
pub use target::{RedisTarget, TlsFiles};

use connect::Conn;

use crate::pure::error::Error;
use crate::pure::ids::{AllocationId, EniId};
use crate::support::budget::Transient;
use crate::support::metrics;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `--redis-url` is not a valid redis:// or rediss:// URL; fix the flag.
    #[error("--redis-url is not a valid Redis URL: {0}; expected redis://[USER:PASSWORD@]HOST:PORT or rediss://...")]
    BadUrl(String),
    /// The TLS files given for Redis are missing, unreadable or do not fit the URL.
    #[error("{0}")]
    BadTls(String),
    /// Redis answers but can never work as configured (credentials, ACL, a replica, TLS trust):
    /// no retry helps, so the command stops at once.
    #[error("Redis is misconfigured for eipool: {0}")]
    Misconfigured(String),
    /// Redis did not answer in time, refused the connection or failed the command; retry later.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
}

impl Transient for RedisError {
    fn is_transient(&self) -> bool {
        matches!(self, RedisError::Unavailable(_))
    }
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Error {
        match e {
            e @ (RedisError::BadUrl(_) | RedisError::BadTls(_) | RedisError::Misconfigured(_)) => {
                Error::usage(e.to_string())
            }
            e @ RedisError::Unavailable(_) => Error::Temporary {
                last: e.to_string(),
                timeout: None,
            },
        }
    }
}

/// Timing of leases and records.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Lease on an address; renewed before every EC2 call made under it.
    pub lease: Duration,
    /// How long a marker stays on an address after a claimer validated it (or found it taken).
    pub marker_ttl: Duration,
    /// Bound on every Redis round trip (connect included).
    pub op_timeout: Duration,
}

/// One process's handle on a pool's shared state in Redis, as one owner (a random token).
#[derive(Clone)]
pub struct Redis {
    target: RedisTarget,
    /// Made on first use: whether Redis is one node or a cluster is asked then.
    conn: Arc<OnceCell<Conn>>,
    pool: String,
    /// The AWS region, whose EC2 request buckets every pool's herd in it shares.
    region: String,
    owner: String,
    timing: Timing,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("redis", &self.target)
            .field("pool", &self.pool)
            .field("owner", &self.owner)
            .finish()
    }
}

/// The key of `what` (`fence`, `holders`, `claim:<allocation>` (a lease), `iface:<eni>/<ip>`, …) in
/// `pool`: the pool's name is the hash tag, so a pool's keys share one cluster slot.
pub fn key(pool: &str, what: &str) -> String {
    format!("eipool:{{{pool}}}:{what}")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Redis {
    /// `owner`'s handle on `pool` (in AWS `region`). Nothing is sent until the first call, so a
    /// Redis that is down at start costs nothing more than its first timeout.
    pub fn new(
        target: RedisTarget,
        pool: &str,
        region: &str,
        owner: String,
        timing: Timing,
    ) -> Self {
        Redis {
            target,
            conn: Arc::new(OnceCell::new()),
            pool: pool.to_string(),
            region: region.to_string(),
            owner,
            timing,
        }
    }

    /// The Redis URL, its password redacted.
    pub(crate) fn target_shown(&self) -> &str {
        self.target.shown()
    }

    /// This process's owner token.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The key of `what` in this pool, with the pool's hash tag.
    pub fn key(&self, what: &str) -> String {
        key(&self.pool, what)
    }

    // Each key of the pool named by its word (ARCHITECTURE.md, "Words"); a key string that is
    // not the word stays, because the previous release reads and writes it in the same herd
    // during a rolling upgrade ("Across versions"), and is written here alone.

    /// The lease on an address (the key says `claim:`, as it always has).
    fn lease_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("claim:{alloc}"))
    }
    /// The marker on an address (the key says `assigned:`, as it always has).
    fn marker_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("assigned:{alloc}"))
    }
    /// What the interface was taking or holds: its intent (the key says `iface:`).
    fn intent_key(&self, eni: &EniId, ip: Ipv4Addr) -> String {
        self.key(&format!("iface:{eni}/{ip}"))
    }
    /// The interface lease.
    fn interface_lease_key(&self, eni: &EniId, ip: Ipv4Addr) -> String {
        self.key(&format!("iface-lease:{eni}/{ip}"))
    }
    /// The hash of every holder record: allocation → `<eni>/<ip>|<unix ms>`.
    fn holder_records_key(&self) -> String {
        self.key("holders")
    }
    /// The key of the region-wide pace of `class` calls (its own hash slot).
    pub fn pace_key(&self, class: &str) -> String {
        format!("eipool:{{pace:{}}}:{class}:adaptive", self.region)
    }
    fn value(&self, fence: u64) -> String {
        format!("{}|{fence}", self.owner)
    }

    /// The connection, made on first use (bounded like a round trip).
    async fn conn(&self) -> Result<Conn, RedisError> {
        let made = tokio::time::timeout(
            self.timing.op_timeout,
            self.conn
                .get_or_try_init(|| connect::connect(&self.target, self.timing.op_timeout)),
        )
        .await;
        match made {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => {
                metrics::global().redis_errors.inc();
                Err(e)
            }
            Err(_) => {
                metrics::global().redis_errors.inc();
                Err(RedisError::Unavailable(format!(
                    "could not connect to {} within {:?}",
                    self.target.shown(),
                    self.timing.op_timeout
                )))
            }
        }
    }

    /// One round trip on the connection, bounded by the op timeout, its failure sorted.
    async fn bounded<T, F>(&self, call: impl FnOnce(Conn) -> F) -> Result<T, RedisError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let topology = conn.topology();
        let result = match tokio::time::timeout(self.timing.op_timeout, call(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.sorted(&e, topology).await),
            Err(_) => Err(RedisError::Unavailable(format!(
                "no answer within {:?}",
                self.timing.op_timeout
            ))),
        };
        if result.is_err() {
            metrics::global().redis_errors.inc();
        }
        result
    }

    /// Run a script invocation (EVALSHA, loading the script on NOSCRIPT).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        self.bounded(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// [`failures::sort`], except that READONLY from one node is a replica endpoint only when a
    /// fresh connection lands on a replica too: a connection to a primary demoted by a failover
    /// gets READONLY until it is replaced, and that passes.
    async fn sorted(&self, e: &redis::RedisError, topology: Topology) -> RedisError {
        let sorted = failures::sort(e, topology);
        if !(matches!(sorted, RedisError::Misconfigured(_))
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            return sorted;
        }
        match tokio::time::timeout(self.timing.op_timeout, connect::role(&self.target)).await {
            Ok(Ok(role)) if role == "master" => RedisError::Unavailable(format!(
                "{e} (a stale connection to a primary demoted by a failover; it reconnects)"
            )),
            Ok(Ok(_)) => sorted,
            Ok(Err(fresh)) => fresh,
            Err(_) => RedisError::Unavailable(e.to_string()),
        }
    }

    /// Round trip to Redis (PING), for health checks.
    pub(crate) async fn ping(&self) -> Result<(), RedisError> {
        let _: String = self
            .bounded(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }
}
