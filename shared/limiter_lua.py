"""The Lua scripts of `shared.limiter.FleetLimiter` (every admission decision is one script on Redis's clock).

Kept apart from the Python side so each reads on its own; the key layout and the rules are in shared/limiter.py's
docstring. `_FIELDS` there and `num` here apply the same rule to a stored override.
"""

# Shared head of every script: Redis time and the effective limits (overrides in KEYS[2] over ARGV defaults).
# ARGV[1..4] = default concurrency, rpm, images_per_min, lease_s.
PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.17g', x) end
local function num(raw, default, lo, integral)
  local x = tonumber(raw)
  if x == nil or x ~= x or x == math.huge or x < lo then return default end
  if integral then return math.floor(x) end
  return x
end
local raw = redis.call('HMGET', KEYS[2], 'concurrency', 'rpm', 'images_per_min', 'lease_s')
local concurrency = num(raw[1], tonumber(ARGV[1]), 1, true)
local rpm = num(raw[2], tonumber(ARGV[2]), 0, true)
local images_per_min = num(raw[3], tonumber(ARGV[3]), 0, true)
local lease_s = num(raw[4], tonumber(ARGV[4]), 0.001, false)
"""

# KEYS: 1 leases, 2 config, 3 tat:requests, 4 tat:images, 5 cooldown, 6 hold of the call's model,
#       7 the model's leases, 8 the model's tat:requests, 9 the model's tat:images.
# ARGV: 1-4 defaults, 5 holder, 6 images, 7 poll cap (s) for a concurrency refusal,
#       8-10 the model's own concurrency, rpm, images_per_min (0 = no per-model cap), checked besides the fleet's.
# Returns {granted 0|1, reason, wait_s as a string} (Lua numbers would be truncated to integers on the way out).
#
# GCRA with zero burst tolerance: a dimension admits only when its TAT <= now, and an admission moves the TAT to
# now + cost * T with T = 60 / limit. So consecutive admissions are >= T apart (times the earlier one's cost), and
# k requests inside any window of length w need (k - 1) * T <= w: a 60 s window sees at most `rpm` requests
# (k - 1 < 60 / T = rpm for a half-open window). For images a call's cost is spaced out *after* it, so a 60 s
# window sees at most images_per_min + (largest single charge - 1) images.
ACQUIRE = PRELUDE + """
local holder = ARGV[5]
local images = tonumber(ARGV[6])
local poll_cap = tonumber(ARGV[7])
local m_concurrency = tonumber(ARGV[8]) or 0
local m_rpm = tonumber(ARGV[9]) or 0
local m_images_per_min = tonumber(ARGV[10]) or 0
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now))
if m_concurrency > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', fmt(now)) end

-- Idempotent: a holder with a live lease was admitted already; renew it, charge nothing (even in a cooldown
-- that started since: callers release before retrying after a 429).
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], fmt(now + lease_s), holder)
  if m_concurrency > 0 then redis.call('ZADD', KEYS[7], fmt(now + lease_s), holder) end
  return {1, 'granted', '0'}
end

local cooldown_end = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
if cooldown_end > now then return {0, 'cooldown', fmt(cooldown_end - now)} end
local hold_end = tonumber(redis.call('GET', KEYS[6]) or '0') or 0
if hold_end > now then return {0, 'model_hold', fmt(hold_end - now)} end

-- Check every dimension before mutating anything; report the one that binds longest.
local reason, wait = nil, -1
local function refuse(r, w)
  if w > wait then reason, wait = r, w end
end
if redis.call('ZCARD', KEYS[1]) >= concurrency then
  -- Capped: most leases are released long before they expire, so the caller polls rather than sleeping
  -- until the earliest expiry.
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  refuse('concurrency', math.min(tonumber(first[2]) - now, poll_cap))
end
local tat_requests = 0
if rpm > 0 then
  tat_requests = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
  if tat_requests > now then refuse('rpm', tat_requests - now) end
end
local tat_images = 0
if images_per_min > 0 then
  tat_images = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if tat_images > now then refuse('images_per_min', tat_images - now) end
end
if m_concurrency > 0 and redis.call('ZCARD', KEYS[7]) >= m_concurrency then
  local first = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
  refuse('model_concurrency', math.min(tonumber(first[2]) - now, poll_cap))
end
if m_rpm > 0 then
  local tat = tonumber(redis.call('GET', KEYS[8]) or '0') or 0
  if tat > now then refuse('model_rpm', tat - now) end
end
if m_images_per_min > 0 then
  local tat = tonumber(redis.call('GET', KEYS[9]) or '0') or 0
  if tat > now then refuse('model_images_per_min', tat - now) end
end
if reason then return {0, reason, fmt(math.max(wait, 0.001))} end

-- Charge one GCRA dimension: the next arrival is `cost` × its interval from now (0 = no such limit).
local function charge(key, cost, per_min)
  if per_min > 0 then
    local tat = now + cost * 60 / per_min
    redis.call('SET', key, fmt(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  end
end
charge(KEYS[3], 1, rpm)
charge(KEYS[4], images, images_per_min)
charge(KEYS[8], 1, m_rpm)
charge(KEYS[9], images, m_images_per_min)
if m_concurrency > 0 then redis.call('ZADD', KEYS[7], fmt(now + lease_s), holder) end
redis.call('ZADD', KEYS[1], fmt(now + lease_s), holder)
return {1, 'granted', '0'}
"""

# KEYS: 1 leases, 2 config. ARGV: 1-4 defaults, 5 holder. Returns 1 when renewed, 0 when the lease had expired.
RENEW = PRELUDE + """
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[5]) or '0') or 0
if expiry <= now then
  redis.call('ZREM', KEYS[1], ARGV[5])
  return 0
end
redis.call('ZADD', KEYS[1], fmt(now + lease_s), ARGV[5])
return 1
"""

# KEYS: 1 cooldown. ARGV: 1 seconds. The cooldown ends at max(existing end, now + seconds). Returns remaining s.
COOLDOWN = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local wanted = now + tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], string.format('%.17g', wanted), 'PX', math.ceil((wanted - now) * 1000))
  current = wanted
end
return string.format('%.17g', current - now)
"""

# KEYS: 1 leases, 2 cooldown, 3 tat:requests, 4 tat:images. Read-only.
# Returns {now, cooldown end, tat requests, tat images, holder1, expiry1, holder2, expiry2, ...} (live leases).
STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {string.format('%.17g', now), redis.call('GET', KEYS[2]) or '0',
             redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '0'}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.17g', now), '+inf', 'WITHSCORES')
for i = 1, #live do out[#out + 1] = live[i] end
return out
"""
