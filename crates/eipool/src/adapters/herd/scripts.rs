//! The Lua scripts: each is one atomic step on keys of one hash slot (the pool's `{P}`, or the
//! pace's own), so they also run on Redis Cluster. Compiled once per process; EVALSHA with a
//! transparent fallback to EVAL (redis-rs `Script`).

use std::sync::LazyLock;

use redis::Script;

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
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
pub(super) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
pub(super) static ASSIGN: LazyLock<Script> = LazyLock::new(|| Script::new(ASSIGN_LUA));
pub(super) static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_LUA));
pub(super) static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(PACE_LUA));
pub(super) static LISTING: LazyLock<Script> = LazyLock::new(|| Script::new(LISTING_LUA));
pub(super) static SHARE: LazyLock<Script> = LazyLock::new(|| Script::new(SHARE_LUA));
