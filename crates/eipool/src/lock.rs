//! Per-address claims in Redis: leases with fencing numbers, taken and given back by atomic Lua
//! scripts.
//!
//! Every key of a pool carries the hash tag `{<pool>}` so that all scripts touch one slot and
//! also run on Redis Cluster / ElastiCache:
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `eipool:{P}:fence` | counter, `INCR` per acquisition | forever |
//! | `eipool:{P}:claim:<alloc>` | `<owner>\|<fence>` | lease (PX), renewed while working |
//! | `eipool:{P}:assigned:<alloc>` | `<eni>/<ip>` of the holder, or `?` | a few minutes |
//! | `eipool:{P}:iface:<eni>/<ip>` | `<alloc>` this interface is taking or holds | a few minutes |
//! | `eipool:{P}:pace:<class>` | GCRA theoretical arrival time (ms) of the class's shared rate | seconds |
//! | `eipool:{P}:listing:v1` | the herd's most recent pool listing (JSON) | [`crate::plan::SHARED_LISTING_TTL`] |
//! | `eipool:{P}:listing:lead` | owner token of the claimer making the next listing | a few call timeouts |
//! | `eipool:{P}:holders` (hash) | `<alloc>` → `<eni>/<ip>\|<unix ms>` of each claim eipool made | until released |
//!
//! Redis speeds the herd up and keeps claimers off each other's toes; it is not what makes the
//! claim safe: EC2's `AllowReassociation=false` is. A Redis that restarts empty loses claims and
//! fences; the worst that follows is a wasted AssociateAddress answered `Resource.AlreadyAssociated`.

use std::net::Ipv4Addr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tokio::time::Instant;
use tracing::instrument;

use crate::ec2::{Address, AllocationId, EniId};

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// `--redis-url` is not a valid redis:// or rediss:// URL; fix the flag.
    #[error("--redis-url is not a valid Redis URL ({0}); expected redis://host:port or rediss://host:port")]
    BadUrl(String),
    /// Redis did not answer in time, refused the connection or failed the command; retry later.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
}

/// What an acquisition attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// The address is ours to try until the lease runs out.
    Acquired(Held),
    /// Another claimer holds a live claim on it: skip it now, maybe look again later.
    Busy,
    /// It was recently assigned (or found taken): skip it.
    Assigned,
}

/// What the pool's shared listing slot gave a claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedListing {
    /// A listing another claimer made less than its lifetime ago.
    Recent(Vec<Address>),
    /// No recent listing: this claimer makes the next one and shares it ([`Claims::share_listing`]).
    Lead,
    /// Another claimer is making it right now: ask again shortly.
    Pending,
}

/// A live claim on one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The claimed address.
    pub alloc: AllocationId,
    /// The fencing number Redis handed out with this claim; later claims get larger ones.
    pub fence: u64,
    /// Until when the lease is certainly valid (measured from before the request was sent).
    pub valid_until: Instant,
}

const ACQUIRE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, sep + 1))
  end
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
return fence
"#;

const EXTEND_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE_LUA: &str = r#"
local ok = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  ok = 1
end
if ARGV[2] == '1' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return ok
"#;

const ASSIGN_LUA: &str = r#"
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[2] .. '|' .. ARGV[5])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"#;

const FORGET_LUA: &str = r#"
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

// The herd's listing: a recent one if there is one, else the lead of the next (SET NX), else 0
// (someone else is listing). KEYS: listing, lead. ARGV: owner, lead ttl ms.
const LISTING_LUA: &str = r#"
local l = redis.call('GET', KEYS[1])
if l then
  return l
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"#;

// Share a listing and end our lead. KEYS: listing, lead. ARGV: listing JSON (empty: only end the
// lead), ttl ms, owner.
const SHARE_LUA: &str = r#"
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
"#;

// GCRA ("virtual scheduling"): every caller reserves the next slot of a shared rate and learns
// how long to wait for it, so a herd reaches EC2 at the rate EC2 allows instead of being
// throttled and retrying. ARGV: emission interval ms, burst tolerance ms. Returns the wait in ms.
const PACE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(tat + interval - now + 1000))
return wait
"#;

// Compiled once per process; EVALSHA with a transparent fallback to EVAL (redis-rs `Script`).
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static ASSIGN: LazyLock<Script> = LazyLock::new(|| Script::new(ASSIGN_LUA));
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_LUA));
static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(PACE_LUA));
static LISTING: LazyLock<Script> = LazyLock::new(|| Script::new(LISTING_LUA));
static SHARE: LazyLock<Script> = LazyLock::new(|| Script::new(SHARE_LUA));

/// What Redis knows about a pool's addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct View {
    /// Addresses with a live claim (someone is working on them).
    pub claiming: std::collections::BTreeSet<AllocationId>,
    /// Addresses eipool assigned, to whom and since when.
    pub holders: std::collections::BTreeMap<AllocationId, Holder>,
}

/// Who eipool assigned an address to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `<eni>/<private ip>`.
    pub at: String,
    /// Unix time in milliseconds.
    pub since_ms: u64,
}

/// How a holder record names where an address is: `<eni>/<private ip>`.
pub fn holder_at(eni: &EniId, ip: Ipv4Addr) -> String {
    format!("{eni}/{ip}")
}

impl Holder {
    /// Whether EC2's association is where this record says eipool put the address.
    pub fn matches(&self, x: &crate::ec2::Association) -> bool {
        match (&x.network_interface_id, x.private_ip) {
            (Some(eni), Some(ip)) => self.at == holder_at(eni, ip),
            _ => false,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Timing of claims.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Lease of a claim; renewed before every EC2 call made under it.
    pub lease: Duration,
    /// How long an address stays marked assigned after a claimer validated it.
    pub assigned_ttl: Duration,
    /// Bound on every Redis round trip (connect included).
    pub op_timeout: Duration,
}

/// The claims of one claimer (one owner token) in one pool.
#[derive(Clone)]
pub struct Claims {
    conn: ConnectionManager,
    pool: String,
    owner: String,
    timing: Timing,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("pool", &self.pool)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Parse `--redis-url` without connecting. Fails only on a malformed URL.
pub fn parse_url(url: &str) -> Result<redis::Client, LockError> {
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://"))
    {
        return Err(LockError::BadUrl(format!(
            "{url:?} has no redis:// or rediss:// scheme"
        )));
    }
    redis::Client::open(url).map_err(|e| LockError::BadUrl(e.to_string()))
}

impl Claims {
    /// Claims for `owner` in `pool` over a lazily connecting, self-reconnecting connection:
    /// nothing is sent until the first claim, so a Redis that is down at start costs nothing
    /// more than its first timeout.
    pub fn new(
        client: redis::Client,
        pool: &str,
        owner: String,
        timing: Timing,
    ) -> Result<Self, LockError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timing.op_timeout))
            .set_response_timeout(Some(timing.op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(timing.op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| LockError::Unavailable(e.to_string()))?;
        Ok(Claims {
            conn,
            pool: pool.to_string(),
            owner,
            timing,
        })
    }

    /// This claimer's owner token.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The key of `what` in this pool, with the pool's hash tag.
    pub fn key(&self, what: &str) -> String {
        format!("eipool:{{{}}}:{what}", self.pool)
    }

    fn claim_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("claim:{alloc}"))
    }
    fn assigned_key(&self, alloc: &AllocationId) -> String {
        self.key(&format!("assigned:{alloc}"))
    }
    fn iface_key(&self, eni: &EniId, ip: Ipv4Addr) -> String {
        self.key(&format!("iface:{eni}/{ip}"))
    }
    fn value(&self, fence: u64) -> String {
        format!("{}|{fence}", self.owner)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LockError> {
        let result = match tokio::time::timeout(self.timing.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LockError::Unavailable(e.to_string())),
            Err(_) => Err(LockError::Unavailable(format!(
                "no answer within {:?}",
                self.timing.op_timeout
            ))),
        };
        if result.is_err() {
            crate::metrics::global().redis_errors.inc();
        }
        result
    }

    /// Try to claim `alloc` for `eni`/`ip`; records the intent under the interface so that a
    /// re-run after a crash finds what it was taking. Idempotent for the same owner.
    #[instrument(skip(self), fields(owner = %self.owner), err(Display))]
    pub async fn acquire(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Acquire, LockError> {
        let sent = Instant::now();
        let mut conn = self.conn.clone();
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(self.claim_key(alloc))
            .key(self.key("fence"))
            .key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .arg(&self.owner)
            .arg(self.timing.lease.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(self.timing.assigned_ttl.as_millis() as u64);
        let answer: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(match answer {
            0 => Acquire::Busy,
            n if n < 0 => Acquire::Assigned,
            fence => Acquire::Acquired(Held {
                alloc: alloc.clone(),
                fence: fence as u64,
                valid_until: sent + self.timing.lease,
            }),
        })
    }

    /// Renew the lease of `held`. `Ok(false)`: the claim is no longer ours (expired and maybe
    /// taken by someone with a larger fence); stop working on that address.
    #[instrument(skip(self), fields(alloc = %held.alloc, fence = held.fence), err(Display))]
    pub async fn extend(&self, held: &mut Held) -> Result<bool, LockError> {
        let sent = Instant::now();
        let mut conn = self.conn.clone();
        let mut inv = EXTEND.prepare_invoke();
        inv.key(self.claim_key(&held.alloc))
            .arg(self.value(held.fence))
            .arg(self.timing.lease.as_millis() as u64);
        let ok: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        if ok == 1 {
            held.valid_until = sent + self.timing.lease;
        }
        Ok(ok == 1)
    }

    /// Give the claim back (compare-and-delete: only if it is still ours). With `forget_intent`,
    /// also drop the interface's record of taking this address.
    #[instrument(skip(self), fields(alloc = %held.alloc, fence = held.fence), err(Display))]
    pub async fn release(
        &self,
        held: &Held,
        eni: &EniId,
        ip: Ipv4Addr,
        forget_intent: bool,
    ) -> Result<bool, LockError> {
        let mut conn = self.conn.clone();
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.claim_key(&held.alloc))
            .key(self.iface_key(eni, ip))
            .arg(self.value(held.fence))
            .arg(if forget_intent { "1" } else { "0" })
            .arg(held.alloc.as_str());
        let ok: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(ok == 1)
    }

    /// Record that `alloc` is now held by `eni`/`ip` (so claimers reading a stale
    /// DescribeAddresses skip it) and drop our claim on it, in one step.
    #[instrument(skip(self), err(Display))]
    pub async fn mark_assigned(
        &self,
        alloc: &AllocationId,
        fence: Option<u64>,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let mut inv = ASSIGN.prepare_invoke();
        inv.key(self.claim_key(alloc))
            .key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .key(self.key("holders"))
            .arg(fence.map(|f| self.value(f)).unwrap_or_default())
            .arg(holder_at(eni, ip))
            .arg(self.timing.assigned_ttl.as_millis() as u64)
            .arg(alloc.as_str())
            .arg(unix_ms());
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Note that EC2 said `alloc` is taken by someone else, so other claimers skip it too.
    #[instrument(skip(self), err(Display))]
    pub async fn mark_taken(&self, alloc: &AllocationId) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let key = self.assigned_key(alloc);
        let ttl = self.timing.assigned_ttl.as_millis() as u64;
        let _: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(key)
                    .arg("?")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// The address this interface was last taking or holding, per Redis (a crash re-run checks it
    /// first, because a stale DescribeAddresses may not show the association yet).
    #[instrument(skip(self), err(Display))]
    pub async fn intent_of(
        &self,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<Option<AllocationId>, LockError> {
        let mut conn = self.conn.clone();
        let key = self.iface_key(eni, ip);
        let v: Option<String> = self.bounded(conn.get(key)).await?;
        Ok(v.map(AllocationId))
    }

    /// Forget everything about `alloc` held by `eni`/`ip` (after releasing it): the assigned
    /// mark, the interface's record, the holder record. Others may claim it at once.
    #[instrument(skip(self), err(Display))]
    pub async fn forget(
        &self,
        alloc: &AllocationId,
        eni: &EniId,
        ip: Ipv4Addr,
    ) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let mut inv = FORGET.prepare_invoke();
        inv.key(self.assigned_key(alloc))
            .key(self.iface_key(eni, ip))
            .key(self.key("holders"))
            .arg(alloc.as_str());
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// What Redis knows about these addresses: live claims and holder records.
    #[instrument(skip(self, allocs), err(Display))]
    pub async fn view(&self, allocs: &[AllocationId]) -> Result<View, LockError> {
        let mut conn = self.conn.clone();
        let mut view = View::default();
        if !allocs.is_empty() {
            let keys: Vec<String> = allocs.iter().map(|a| self.claim_key(a)).collect();
            let claims: Vec<Option<String>> = self
                .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
                .await?;
            for (a, c) in allocs.iter().zip(claims) {
                if c.is_some() {
                    view.claiming.insert(a.clone());
                }
            }
        }
        let holders: std::collections::HashMap<String, String> =
            self.bounded(conn.hgetall(self.key("holders"))).await?;
        for (alloc, v) in holders {
            let (who, since) = v.rsplit_once('|').unwrap_or((v.as_str(), "0"));
            view.holders.insert(
                AllocationId(alloc),
                Holder {
                    at: who.to_string(),
                    since_ms: since.parse().unwrap_or(0),
                },
            );
        }
        Ok(view)
    }

    /// Drop a holder record that no longer matches EC2 (gc).
    pub async fn drop_holder(&self, alloc: &AllocationId) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(conn.hdel(self.key("holders"), alloc.as_str()))
            .await?;
        Ok(())
    }

    /// Reserve the next slot of the pool's shared `rate` for calls of `class` (e.g. EC2's
    /// mutating calls) and return how long to wait for it.
    #[instrument(skip(self), err(Display))]
    pub async fn pace(&self, class: &str, rate: crate::plan::Rate) -> Result<Duration, LockError> {
        let mut conn = self.conn.clone();
        let mut inv = PACE.prepare_invoke();
        inv.key(self.key(&format!("pace:{class}")))
            .arg(rate.interval().as_millis() as u64)
            .arg(rate.tolerance().as_millis() as u64);
        let wait_ms: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(Duration::from_millis(wait_ms.max(0) as u64))
    }

    /// The herd's recent listing of the pool, or the lead of the next one (held for at most
    /// `lead_ttl`, so a leader that dies holds nobody up for longer), or word that someone else
    /// is making it. A listing this version cannot read counts as none.
    #[instrument(skip(self), err(Display))]
    pub async fn shared_listing(&self, lead_ttl: Duration) -> Result<SharedListing, LockError> {
        let mut conn = self.conn.clone();
        let mut inv = LISTING.prepare_invoke();
        inv.key(self.key("listing:v1"))
            .key(self.key("listing:lead"))
            .arg(&self.owner)
            .arg(lead_ttl.as_millis() as u64);
        let v: redis::Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(match v {
            redis::Value::Int(1) => SharedListing::Lead,
            redis::Value::Int(_) => SharedListing::Pending,
            redis::Value::BulkString(json) => match serde_json::from_slice(&json) {
                Ok(listing) => SharedListing::Recent(listing),
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable shared listing; making a new one");
                    SharedListing::Lead
                }
            },
            other => {
                return Err(LockError::Unavailable(format!(
                    "unexpected answer to the listing script: {other:?}"
                )))
            }
        })
    }

    /// Share `listing` with the herd for `ttl` and end our lead, if we had it. `None` only ends
    /// the lead (the listing failed), so that another claimer takes it over at once.
    #[instrument(skip(self, listing), err(Display))]
    pub async fn share_listing(
        &self,
        listing: Option<&[Address]>,
        ttl: Duration,
    ) -> Result<(), LockError> {
        let json = match listing {
            Some(l) => serde_json::to_string(l)
                .map_err(|e| LockError::Unavailable(format!("cannot encode the listing: {e}")))?,
            None => String::new(),
        };
        let mut conn = self.conn.clone();
        let mut inv = SHARE.prepare_invoke();
        inv.key(self.key("listing:v1"))
            .key(self.key("listing:lead"))
            .arg(json)
            .arg(ttl.as_millis() as u64)
            .arg(&self.owner);
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Round trip to Redis (PING), for health checks.
    pub async fn ping(&self) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }
}
