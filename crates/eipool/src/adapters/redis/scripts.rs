//! The Lua scripts: each is one atomic step on keys of one hash slot (the pool's `{P}`, or the
//! pace's own), so they also run on Redis Cluster. Compiled once per process; EVALSHA with a
//! transparent fallback to EVAL (redis-rs `Script`).

use std::sync::LazyLock;

use redis::Script;

// Markers (`assigned:<alloc>`) are `<holder>|<ms>`, the time from Redis's own clock (TIME), so
// every claimer measures a marker's age on one clock. A marker without a time (written by an
// older eipool) counts as very old: EC2 decides.
const MARKER_AGE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function age_of(v)
  local at = tonumber(string.match(v, '|(%d+)$'))
  if at then return math.max(0, now_ms() - at) end
  return 1000000000000
end
"#;

// Take a lease. KEYS: lease, fence, marker, intent. ARGV: owner, lease ms, alloc, intent ttl ms.
// Returns {fence, 0} when leased (again, for the same owner), {0, 0} when another owner holds it,
// {-1, marker age ms} when the address is marked assigned.
const ACQUIRE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(string.sub(cur, sep + 1)), 0}
  end
  return {0, 0}
end
local mark = redis.call('GET', KEYS[3])
if mark then
  return {-1, age_of(mark)}
end
-- Fencing numbers only grow, across a failover to a replica that missed the last ones and an
-- empty restart too: never below Redis's clock in units of 100 us. They stay below 10^14 (until
-- the year 2286), because the previous release (v0.1.0 and before) builds its lease value with
-- Lua's `..`, which prints a larger number in exponent form: a lease it could then never renew
-- or give back. A fence of 10^14 or more was written by a build that counted microseconds; it
-- starts again from the floor (a fence is a lease's identity beside its owner's random token,
-- never compared across leases). (Formatted with %d, like Lua prints it.)
local fence = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 10000 + math.floor(tonumber(t[2]) / 100)
if fence < floor or fence >= 100000000000000 then
  fence = floor
  redis.call('SET', KEYS[2], string.format('%d', fence))
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. string.format('%d', fence), 'PX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
return {fence, 0}
"#;

// Drop a marker that is at least ARGV[1] ms old (EC2 showed the address free since). KEYS: marker.
const CLEAR_MARK_LUA: &str = r#"
local mark = redis.call('GET', KEYS[1])
if mark and age_of(mark) >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

// Mark an address taken (EC2 said so) unless already marked. KEYS: marker. ARGV: ttl ms.
const MARK_TAKEN_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], '?|' .. now_ms(), 'PX', ARGV[1])
end
return 1
"#;

// The interface lease: one claim per interface and private IP at a time. KEYS: lease. ARGV:
// owner, ttl ms. 1 when ours (taken or renewed), 0 when another claim holds it.
const LOCK_INTERFACE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

// Compare-and-delete. KEYS: key. ARGV: the value it must still have.
const UNLOCK_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
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

// Record an assignment and drop our lease. KEYS: lease, marker, intent, holders. ARGV: lease
// value (or empty), holder, marker ttl ms, alloc, unix ms, intent ttl ms.
const ASSIGN_LUA: &str = r#"
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. now_ms(), 'PX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[6])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[2] .. '|' .. ARGV[5])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"#;

// Forget a released address and tell the line it came free. KEYS: marker, intent, holders,
// line:freed. ARGV: alloc.
const FORGET_LUA: &str = r#"
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return 1
"#;

// Drop a holder record gc found stale, only if it still has the value gc saw: a claim may have
// recorded a fresh assignment of the address since. KEYS: holders. ARGV: alloc, the value seen.
const DROP_HOLDER_LUA: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

// Join the pool's line (or rejoin with the ticket we had, after Redis lost the line). KEYS: line
// (sorted set, owner scored by ticket), beats (hash owner -> Redis ms), seq. ARGV: owner, ticket
// (0: a new one). A new ticket is above every waiting one, also after an empty restart.
const LINE_JOIN_LUA: &str = r#"
local t = tonumber(ARGV[2])
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
if had then
  t = tonumber(had)
elseif t == 0 then
  t = redis.call('INCR', KEYS[3])
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= t then
    t = tonumber(top[2]) + 1
    redis.call('SET', KEYS[3], string.format('%d', t))
  end
end
redis.call('ZADD', KEYS[1], t, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now_ms())
return t
"#;

// One waiter's ask: heartbeat, drop the ghosts ahead of it (heartbeat older than ARGV[2] ms),
// and answer {place (0 = head; -1 = not in the line), freed count}. KEYS: line, beats, freed.
// ARGV: owner, ghost ms.
const LINE_ASK_LUA: &str = r#"
local freed = tonumber(redis.call('GET', KEYS[3]) or '0')
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then
  return {-1, freed}
end
local now = now_ms()
redis.call('HSET', KEYS[2], ARGV[1], now)
local ahead = redis.call('ZRANGE', KEYS[1], 0, rank - 1)
local dropped = 0
for _, m in ipairs(ahead) do
  local beat = tonumber(redis.call('HGET', KEYS[2], m) or '0')
  if now - beat > tonumber(ARGV[2]) then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    dropped = dropped + 1
  end
end
return {rank - dropped, freed}
"#;

// Leave the line. KEYS: line, beats. ARGV: owner.
const LINE_LEAVE_LUA: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
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

// doctor: every command the scripts above run, on probe keys of one slot, deleted again.
// KEYS: a string key, a hash key.
const PROBE_LUA: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', 10000)
redis.call('GET', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 10000)
redis.call('INCR', KEYS[1])
redis.call('EXISTS', KEYS[1])
redis.call('TIME')
redis.call('HSET', KEYS[2], 'k', '1')
redis.call('HDEL', KEYS[2], 'k')
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"#;

// Compiled once per process; EVALSHA with a transparent fallback to EVAL (redis-rs `Script`).
/// A script with the marker helpers in front.
fn with_markers(body: &str) -> Script {
    Script::new(&format!("{MARKER_AGE}{body}"))
}

pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| with_markers(ACQUIRE_LUA));
pub(super) static CLEAR_MARK: LazyLock<Script> = LazyLock::new(|| with_markers(CLEAR_MARK_LUA));
pub(super) static MARK_TAKEN: LazyLock<Script> = LazyLock::new(|| with_markers(MARK_TAKEN_LUA));
pub(super) static LOCK_INTERFACE: LazyLock<Script> =
    LazyLock::new(|| Script::new(LOCK_INTERFACE_LUA));
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(UNLOCK_LUA));
pub(super) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
pub(super) static ASSIGN: LazyLock<Script> = LazyLock::new(|| with_markers(ASSIGN_LUA));
pub(super) static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_LUA));
pub(super) static DROP_HOLDER: LazyLock<Script> = LazyLock::new(|| Script::new(DROP_HOLDER_LUA));
pub(super) static LINE_JOIN: LazyLock<Script> = LazyLock::new(|| with_markers(LINE_JOIN_LUA));
pub(super) static LINE_ASK: LazyLock<Script> = LazyLock::new(|| with_markers(LINE_ASK_LUA));
pub(super) static LINE_LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(LINE_LEAVE_LUA));
pub(super) static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(PACE_LUA));
pub(super) static LISTING: LazyLock<Script> = LazyLock::new(|| Script::new(LISTING_LUA));
pub(super) static SHARE: LazyLock<Script> = LazyLock::new(|| Script::new(SHARE_LUA));
pub(super) static PROBE: LazyLock<Script> = LazyLock::new(|| Script::new(PROBE_LUA));
