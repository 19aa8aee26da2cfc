//! The Lua scripts: each is one atomic step on keys of one hash slot (the pool's `{P}`, or the
//! pace's own), so they also run on Redis Cluster. Compiled once per process; EVALSHA, loading
//! the script on NOSCRIPT (redis-rs `Script`). Every command they run is in [`super::commands`].

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
// {-1, marker age ms} when a marker is on the address.
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
-- the year 2286), because the previous release (the commit scripts/previous-release pins; no
-- release is tagged yet) builds its lease value with Lua's `..`, which prints a larger number in
-- exponent form: a lease it could then never renew or give back. A fence of 10^14 or more was written by a build that counted microseconds; it
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
const CLEAR_MARKER_LUA: &str = r#"
local mark = redis.call('GET', KEYS[1])
if mark and age_of(mark) >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

// Mark an address taken (EC2 said so) unless already marked, and note that a caller outside the
// herd takes the pool's addresses. KEYS: marker, outsiders. ARGV: ttl ms, outsiders ttl ms.
const MARK_TAKEN_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], '?|' .. now_ms(), 'PX', ARGV[1])
end
redis.call('SET', KEYS[2], now_ms(), 'PX', ARGV[2])
return 1
"#;

// The interface lease: one claim per interface and private IP at a time. KEYS: lease. ARGV:
// owner, ttl ms. 1 when ours (taken or renewed), 0 when another claim holds it.
const TAKE_INTERFACE_LEASE_LUA: &str = r#"
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
const COMPARE_AND_DELETE_LUA: &str = r#"
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

// Record a win (the marker, the intent, the holder record) and drop our lease. KEYS: lease, marker, intent, holders. ARGV: lease
// value (or empty), holder, marker ttl ms, alloc, unix ms, intent ttl ms.
const RECORD_WIN_LUA: &str = r#"
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
const DROP_HOLDER_RECORD_LUA: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

// The pool's waiting line. KEYS[1] line (sorted set: each waiting server, `<eni>/<ip>`, scored
// by its ticket), KEYS[2] beats (hash: server -> Redis ms of its last sign of life), KEYS[3] away
// (hash: server -> Redis ms until which it keeps its place while it restarts). A waiter is dead
// when it has been silent for ARGV ghost ms, or, stepped away, when its grace has ended. Dead
// waiters are dropped from the front at every ask (so none ever holds the turn: one stepped away
// is skipped), and from anywhere by the head's ask and by every count of the line.
const LINE_SWEEP: &str = r#"
local function line_dead(m, now, ghost)
  local away = redis.call('HGET', KEYS[3], m)
  if away then
    return now > tonumber(away)
  end
  return now - tonumber(redis.call('HGET', KEYS[2], m) or '0') > ghost
end
local function line_drop(m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('HDEL', KEYS[2], m)
  redis.call('HDEL', KEYS[3], m)
end
local function sweep_front(now, ghost)
  local i = 0
  while true do
    local m = redis.call('ZRANGE', KEYS[1], i, i)[1]
    if not m then
      return
    end
    if line_dead(m, now, ghost) then
      line_drop(m)
    elseif redis.call('HEXISTS', KEYS[3], m) == 1 then
      i = i + 1
    else
      return
    end
  end
end
local function sweep_all(now, ghost)
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if line_dead(m, now, ghost) then
      line_drop(m)
    end
  end
end
"#;

// Join the line, or rejoin it: a server still in it (restarted within its grace, or a second
// process of the same server) keeps its ticket; one that Redis lost (an empty restart) comes
// back with the ticket it had (ARGV[2]; 0: a new one). A ticket is Redis's time in ms when the
// server first joined (above every waiting one: one per ms), so a newcomer after an empty
// restart still queues behind the servers that rejoin with their older tickets. KEYS: line,
// beats, away. ARGV: server, ticket. Returns the ticket.
const LINE_JOIN_LUA: &str = r#"
local t = tonumber(ARGV[2])
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
if had then
  t = tonumber(had)
elseif t == 0 then
  t = now_ms()
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= t then
    t = tonumber(top[2]) + 1
  end
end
redis.call('ZADD', KEYS[1], string.format('%d', t), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now_ms())
redis.call('HDEL', KEYS[3], ARGV[1])
return t
"#;

// One waiter's ask (also its heartbeat, and the head's while it claims): drop the dead, and
// answer {place, freed count}: the place counts the waiters ahead that are present (one stepped
// away to restart keeps its ticket, not the turn); 0 is the head, -1 not in the line. KEYS: line,
// beats, away, freed. ARGV: server, ghost ms.
const LINE_ASK_LUA: &str = r#"
local now = now_ms()
local ghost = tonumber(ARGV[2])
local freed = tonumber(redis.call('GET', KEYS[4]) or '0')
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {-1, freed}
end
redis.call('HSET', KEYS[2], ARGV[1], now)
redis.call('HDEL', KEYS[3], ARGV[1])
sweep_front(now, ghost)
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
local place = rank
for _, m in ipairs(redis.call('HKEYS', KEYS[3])) do
  local r = redis.call('ZRANK', KEYS[1], m)
  if r and r < rank then
    place = place - 1
  end
end
if place == 0 then
  sweep_all(now, ghost)
end
return {place, freed}
"#;

// Step away from the line to restart, keeping the place for ARGV[2] ms. KEYS: line, beats, away.
// ARGV: server, grace ms.
const LINE_AWAY_LUA: &str = r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[3], ARGV[1], now_ms() + tonumber(ARGV[2]))
end
return 1
"#;

// Leave the line. KEYS: line, beats, away. ARGV: server.
const LINE_LEAVE_LUA: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

// How many servers wait (those stepped away to restart included), the dead dropped first.
// KEYS: line, beats, away. ARGV: ghost ms.
const LINE_LEN_LUA: &str = r#"
sweep_all(now_ms(), tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
"#;

// The herd's listing: a recent one, no older than asked, with its age (by Redis's clock, from
// when it was shared; a listing the previous release shared has no time and counts as old), if
// there is one; else the lead of the next (SET NX), else 0 (someone else is listing). KEYS:
// listing, lead, its time. ARGV: owner, lead ttl ms, the listing's lifetime ms, max age ms.
const LISTING_LUA: &str = r#"
local l = redis.call('GET', KEYS[1])
if l then
  local at = tonumber(redis.call('GET', KEYS[3]))
  local age = tonumber(ARGV[3])
  if at then age = math.max(0, now_ms() - at) end
  if age <= tonumber(ARGV[4]) then
    return {l, age}
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"#;

// Share a listing and end our lead. KEYS: listing, lead, its time. ARGV: listing JSON (empty:
// only end the lead), ttl ms, owner.
const SHARE_LUA: &str = r#"
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[3], now_ms(), 'PX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
"#;

// The herd's adaptive pace of one class of EC2 calls (`plan::PaceState`, step for step: a test
// runs both and compares): a GCRA over numbered tickets whose rate halves when EC2 throttles a
// call and grows back with time (AIMD). KEYS: the state. ARGV: op (`take`, `due` or
// `throttled`), ticket, burst, calls/s at most, spacing ms, decrease, recovery, floor, now ms
// ('' for Redis's clock). Returns {ticket, wait ms (-1: a ticket this state never handed out),
// 1 while the rate recovers, 1 when this call cut it, the rate in calls per 1000 s}.
const PACE_LUA: &str = r#"
local op, ticket = ARGV[1], tonumber(ARGV[2])
local burst, R, S = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local beta, alpha, floor_share = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = tonumber(ARGV[9])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local f = {}
local st = redis.call('GET', KEYS[1])
if st then
  for w in string.gmatch(st, '%S+') do f[#f + 1] = tonumber(w) end
end
local first, nxt, an, av, r, pn, ap, rc, tc, cut
if #f == 10 then
  first, nxt, an, av, r, pn, ap, rc, tc, cut = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
else
  -- Tickets of a lost state are below a new one's (Redis's clock in µs).
  first = math.floor(now) * 1000
  nxt, an, av, r, pn, ap, rc, tc, cut = first, first, now, R, first, now, R, now, first
end
local function interval() return 1000 / r end
local function tol()
  local b = burst - 1
  if b < 0 then b = 0 end
  return b * interval()
end
local function due(n)
  local d = av + (n - an) * interval() - tol()
  if S > 0 and n >= pn then
    local p = ap + (n - pn) * S
    if p > d then d = p end
  end
  return d
end
local function first_not_due()
  local x = now + tol() - av
  local by_rate = an
  if x >= 0 then by_rate = an + math.floor(x / interval()) + 1 end
  local by_spacing
  if S <= 0 then by_spacing = nxt
  elseif now < ap then by_spacing = pn
  else by_spacing = pn + math.floor((now - ap) / S) + 1 end
  if by_spacing < an then by_spacing = an end
  local m = by_rate
  if by_spacing < m then m = by_spacing end
  if nxt < m then m = nxt end
  return m
end
local target = rc + alpha * R * (now - tc) / 1000
if target > R then target = R end
if target > r then
  local m = first_not_due()
  local d = av + (m - an) * interval() - tol()
  r = target
  an = m
  av = d + tol()
end
local wait, cuts, unknown = 0, 0, false
if op == 'take' then
  if av + (nxt - an) * interval() < now then an = nxt av = now end
  if ap + (nxt - pn) * S < now then pn = nxt ap = now end
  ticket = nxt
  wait = due(ticket) - now
  nxt = ticket + 1
elseif op == 'due' then
  if ticket < first or ticket >= nxt then unknown = true
  elseif ticket >= an then wait = due(ticket) - now end
elseif not ((ticket >= first and ticket < cut) or (ticket < first and r < R)) then
  local m = first_not_due()
  r = r * beta
  if r < R * floor_share then r = R * floor_share end
  an = m
  av = now + interval() + tol()
  rc = r
  tc = now
  cut = m
  cuts = 1
end
local idle = av + (nxt - an) * interval()
local recovered = tc + (R - rc) / (alpha * R) * 1000
if recovered > idle then idle = recovered end
redis.call('SET', KEYS[1],
  string.format('%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g',
    first, nxt, an, av, r, pn, ap, rc, tc, cut),
  'PX', math.max(0, math.ceil(idle - now)) + 1000)
if unknown then wait = -1 elseif wait > 0 then wait = math.ceil(wait) else wait = 0 end
local recovering = 0
if r < R then recovering = 1 end
return {ticket, wait, recovering, cuts, math.floor(r * 1000)}
"#;

// Compiled once per process; EVALSHA, loading the script on NOSCRIPT (redis-rs `Script`).
/// A script with the marker helpers in front.
fn with_markers(body: &str) -> Script {
    Script::new(&format!("{MARKER_AGE}{body}"))
}

/// A script of the waiting line: the clock and the sweep in front.
fn in_line(body: &str) -> Script {
    Script::new(&format!("{MARKER_AGE}{LINE_SWEEP}{body}"))
}

pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| with_markers(ACQUIRE_LUA));
pub(super) static CLEAR_MARKER: LazyLock<Script> = LazyLock::new(|| with_markers(CLEAR_MARKER_LUA));
pub(super) static MARK_TAKEN: LazyLock<Script> = LazyLock::new(|| with_markers(MARK_TAKEN_LUA));
pub(super) static TAKE_INTERFACE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(TAKE_INTERFACE_LEASE_LUA));
pub(super) static COMPARE_AND_DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(COMPARE_AND_DELETE_LUA));
pub(super) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
pub(super) static RECORD_WIN: LazyLock<Script> = LazyLock::new(|| with_markers(RECORD_WIN_LUA));
pub(super) static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_LUA));
pub(super) static DROP_HOLDER_RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(DROP_HOLDER_RECORD_LUA));
pub(super) static LINE_JOIN: LazyLock<Script> = LazyLock::new(|| with_markers(LINE_JOIN_LUA));
pub(super) static LINE_ASK: LazyLock<Script> = LazyLock::new(|| in_line(LINE_ASK_LUA));
pub(super) static LINE_AWAY: LazyLock<Script> = LazyLock::new(|| with_markers(LINE_AWAY_LUA));
pub(super) static LINE_LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(LINE_LEAVE_LUA));
pub(super) static LINE_LEN: LazyLock<Script> = LazyLock::new(|| in_line(LINE_LEN_LUA));
pub(super) static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(PACE_LUA));
pub(super) static LISTING: LazyLock<Script> = LazyLock::new(|| with_markers(LISTING_LUA));
pub(super) static SHARE: LazyLock<Script> = LazyLock::new(|| with_markers(SHARE_LUA));
pub(super) static PROBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&super::commands::probe_script()));
