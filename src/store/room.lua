-- antre: one room's counters in Redis. The same rules as src/store/queue.rs,
-- line for line, so that a fleet sharing Redis behaves exactly like one
-- process; the conformance tests run both on the same steps.
--
-- KEYS[1] state hash, KEYS[2] claimed bitmap, KEYS[3] checkpoint list,
-- KEYS[4] places promised during an outage (sorted by arrival), KEYS[5]
-- the tickets those promises became, KEYS[6] the exchanges of the last
-- EXCHANGE_GRACE (ticket scored by time), KEYS[7] proof-of-work nonces
-- spent (scored by their expiry), KEYS[8] the room's recent history (see
-- `save`), KEYS[9] which numbers still waiting when the phase opened have
-- been let in during it (bit `ticket - from`), KEYS[10] the entries of the
-- coming draw (a set of ids), KEYS[11] the last draw (id -> ticket),
-- KEYS[12] the places taken from other segments ('from@at' -> amount); all
-- share the room's hash tag, so the script touches one cluster
-- slot.
-- ARGV[1] operation, ARGV[2] now (microseconds since the Unix epoch),
-- ARGV[3] an id unique to this call, ARGV[4] the version and chain the
-- caller last saw ('version:chain', or empty), then the operation's own
-- arguments from ARGV[5].
--
-- Reply: { outcome, ticket, epoch, tail, frontier, floor, admitted, wasted,
--          outstanding, tat, running, rate, burst, quota, paused, claim, boot,
--          pass, version, chain, phase, base, phases, live_rate, secret, given,
--          received }
-- or { "missing" } when the room is not in Redis (it was never configured,
-- or Redis lost its data), or { "rewritten" } when the history the caller
-- saw is not this room's (a replica that had not caught up took over).

local state, claimed, checkpoints, pending, promised = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local exchanged, spent, history, returned = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local entries, drawn, moves = KEYS[10], KEYS[11], KEYS[12]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local write_id, seen = ARGV[3], ARGV[4]

local MICROS = 1000000
local CATCH_UP = 5 * MICROS
-- queue.rs EXCHANGE_GRACE: a ticket exchanged longer ago than this gives
-- no pass again.
local EXCHANGE_GRACE = 30 * MICROS
-- Versions whose chain the history keeps: an instance that saw a version
-- this far back can still be told whether the room's history passes
-- through it. Each entry is 24 bytes.
local HISTORY = 1024
local ENTRY = 24
local FIELDS = { 'epoch', 'tail', 'frontier', 'admitted', 'wasted', 'floor', 'tat', 'running', 'open',
                 'rate', 'burst', 'quota', 'paused', 'claim', 'pass', 'overrides', 'recover', 'version',
                 'phase', 'base', 'from', 'to', 'draw_phase', 'drawn_phase', 'given', 'received',
                 'gave_at', 'gave' }

-- The state's text fields besides `chain` (which every save changes).
local TEXT_FIELDS = { 'boot', 'phases', 'secret' }

-- Bits of `overrides`: settings an operator changed live, which a
-- restart's config does not undo.
local OVERRIDE = { rate = 1, quota = 2, paused = 4, pass = 8 }

-- Lua numbers are doubles: exact for integers below 2^53, which covers
-- microsecond timestamps. Division is corrected so it is exact too.
local function floordiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

local function int(n)
  return string.format('%.0f', n)
end

-- The schedule, 'start:end:quota:rate:prequeue' per phase joined by ';'
-- (queue.rs Phase::encode_all), as a list of phases; rate 0 spreads the
-- quota, prequeue 0 means no draw.
local function parse_phases(text)
  local phases = {}
  for part in string.gmatch(text, '[^;]+') do
    local start, finish, quota, rate, prequeue = string.match(part, '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
    if start then
      phases[#phases + 1] = { start = tonumber(start), finish = tonumber(finish), quota = tonumber(quota),
                              rate = tonumber(rate), prequeue = tonumber(prequeue) }
    end
  end
  return phases
end

local function load()
  local values = redis.call('HMGET', state, 'boot', 'chain', 'phases', 'secret', unpack(FIELDS))
  if not values[5] then
    return nil
  end
  local s = { boot = values[1] or '', chain = values[2] or '', phases = values[3] or '', secret = values[4] or '' }
  -- What the hash holds, so `save` writes back only what changed.
  local stored = { boot = s.boot, phases = s.phases, secret = s.secret }
  for i, name in ipairs(FIELDS) do
    local value = tonumber(values[i + 4]) or 0
    s[name] = value
    stored[name] = value
  end
  s.stored = stored
  s.schedule = parse_phases(s.phases)
  return s
end

-- The history entry of `version`: the version (so an entry left from 1,024
-- versions ago, or never written, is told apart) and the chain after it.
local function entry(version, chain)
  return string.format('%08x', version % 4294967296) .. chain
end

-- Every save bumps `version`, so an instance that sees a lower one knows
-- Redis went back to older data (a snapshot, a lagging replica). It also
-- extends `chain`, a digest of every write's id since the room was made,
-- and notes it in the history: two histories of the same length (a
-- replica that took over before it had the last writes, then took new
-- ones) have different chains.
--
-- Only the fields that differ from what the hash holds are written (a
-- state `load` did not read is written whole): formatting and storing all
-- of them took a third of an arrival's time in Redis.
local function save(s)
  s.version = s.version + 1
  s.chain = string.sub(redis.sha1hex(s.chain .. ':' .. write_id), 1, 16)
  local stored = s.stored or {}
  local args = { 'chain', s.chain }
  for _, name in ipairs(TEXT_FIELDS) do
    if s[name] ~= stored[name] then
      args[#args + 1] = name
      args[#args + 1] = s[name]
      stored[name] = s[name]
    end
  end
  for _, name in ipairs(FIELDS) do
    if s[name] ~= stored[name] then
      args[#args + 1] = name
      args[#args + 1] = int(s[name])
      stored[name] = s[name]
    end
  end
  s.stored = stored
  redis.call('HSET', state, unpack(args))
  redis.call('SETRANGE', history, (s.version % HISTORY) * ENTRY, entry(s.version, s.chain))
end

-- True when the caller saw a version this room's history does not pass
-- through: one it has not reached, or one with another chain. A version
-- too old for the history to say is given the benefit of the doubt.
local function rewritten(s)
  local version, chain = string.match(seen, '^(%d+):(%x+)$')
  if not version then
    return false
  end
  version = tonumber(version)
  if version > s.version then
    return true
  end
  local at = (version % HISTORY) * ENTRY
  local kept = redis.call('GETRANGE', history, at, at + ENTRY - 1)
  if string.sub(kept, 1, 8) ~= string.format('%08x', version % 4294967296) then
    return false
  end
  return string.sub(kept, 9) ~= chain
end

local function per_minute(rate)
  rate = math.max(rate, 1)
  return floordiv(60 * MICROS + rate - 1, rate)
end

local function phase_at(s)
  for _, phase in ipairs(s.schedule) do
    if phase.start <= now and now < phase.finish then
      return phase
    end
  end
  return nil
end

local function closed(s)
  return #s.schedule > 0 and phase_at(s) == nil
end

-- Numbers the entries of the draw of the phase opening at `phase` (queue.rs
-- Counters::draw, draw.rs): sorted by SHA-1 of 'seed:id', where the seed is
-- SHA-1 of 'secret:phase'; equal keys by id.
local function draw(s, phase)
  local seed = redis.sha1hex(s.secret .. ':' .. int(phase))
  local keyed = {}
  for _, id in ipairs(redis.call('SMEMBERS', entries)) do
    keyed[#keyed + 1] = { key = redis.sha1hex(seed .. ':' .. id), id = tonumber(id) }
  end
  table.sort(keyed, function(a, b)
    if a.key ~= b.key then
      return a.key < b.key
    end
    return a.id < b.id
  end)
  redis.call('DEL', drawn, entries)
  for _, entry in ipairs(keyed) do
    s.tail = s.tail + 1
    redis.call('HSET', drawn, int(entry.id), int(s.tail))
  end
  s.drawn_phase = phase
  s.draw_phase = 0
end

-- Enters the phase open now, if it is not the one counting: the slots used
-- so far become its base, and the numbers still waiting (from the frontier
-- to the tail) may come back to it.
local function enter_phase(s)
  local open = phase_at(s)
  if open and open.start ~= s.phase then
    s.phase = open.start
    s.base = math.max(s.frontier - s.wasted, 0)
    s.given, s.received = 0, 0
    s.from, s.to = s.frontier, s.tail
    redis.call('DEL', returned)
    if s.draw_phase == open.start then
      draw(s, open.start)
    end
    return true
  end
  return false
end

-- The most slots the frontier may have used: the room's quota, and inside
-- a phase its base plus the phase's own quota, moved by the places given to
-- and received from other segments; -1 for no limit.
local function limit(s)
  local quota = s.quota
  if s.phase ~= 0 then
    for _, phase in ipairs(s.schedule) do
      if phase.start == s.phase then
        local in_phase = s.base + phase.quota
        if quota < 0 or in_phase < quota then
          quota = in_phase
        end
        break
      end
    end
  end
  if quota >= 0 then
    quota = math.max(quota + s.received - s.given, 0)
  end
  return quota
end

local function releasable(s)
  local quota = limit(s)
  if quota < 0 then
    return 2 ^ 52
  end
  return math.max(quota + s.wasted - s.frontier, 0)
end

-- The interval at now when `left` slots may still be released: the open
-- phase's rate (an operator's live rate wins), or a spread phase's
-- remaining time shared evenly among them.
local function interval(s, left)
  local phase = phase_at(s)
  if phase and bit.band(s.overrides, OVERRIDE.rate) == 0 then
    if phase.rate == 0 then
      return math.max(floordiv(math.max(phase.finish - now, 0), math.max(left, 1)), 1)
    end
    return per_minute(phase.rate)
  end
  return per_minute(s.rate)
end

local function checkpoint_width(s)
  return math.max(floordiv(s.claim * MICROS, 32), MICROS)
end

local function outstanding(s)
  return math.max(s.frontier - s.floor - s.open, 0)
end

local function schedule_base(s, step)
  local saved = math.max(s.burst, 1) * step
  if s.running == 1 then
    saved = saved + CATCH_UP
  end
  return math.max(s.tat, math.max(now - saved, 0))
end

local function parse_checkpoint(text)
  local opened, last, frontier = string.match(text, '^(%d+):(%d+):(%d+)$')
  return tonumber(opened), tonumber(last), tonumber(frontier)
end

local function record_checkpoint(s)
  local back = redis.call('LINDEX', checkpoints, -1)
  if back then
    local opened = parse_checkpoint(back)
    if math.max(now - opened, 0) < checkpoint_width(s) then
      redis.call('LSET', checkpoints, -1, int(opened) .. ':' .. int(now) .. ':' .. int(s.frontier))
      return
    end
  end
  redis.call('RPUSH', checkpoints, int(now) .. ':' .. int(now) .. ':' .. int(s.frontier))
end

-- Raises the floor past every slot released more than the claim window
-- ago; those not claimed become wasted and give their quota back.
local function expire(s)
  local window = s.claim * MICROS
  if now < window then
    return false
  end
  local cutoff = now - window
  local new_floor = s.floor
  while true do
    local front = redis.call('LINDEX', checkpoints, 0)
    if not front then
      break
    end
    local _, last, frontier = parse_checkpoint(front)
    if last > cutoff then
      break
    end
    new_floor = math.max(new_floor, frontier)
    redis.call('LPOP', checkpoints)
  end
  if new_floor == s.floor then
    return false
  end
  local drained = redis.call('BITCOUNT', claimed, int(s.floor + 1), int(new_floor), 'BIT')
  s.open = s.open - drained
  s.wasted = s.wasted + (new_floor - s.floor) - drained
  s.floor = new_floor
  return true
end

-- Expires what is due, enters the phase that opened, then releases what the
-- rate, the line and the quota allow. Returns true when anything changed.
local function advance(s)
  local expired = expire(s)
  if enter_phase(s) then
    expired = true
  end
  if s.paused == 1 or closed(s) then
    local changed = s.running == 1
    s.running = 0
    return expired or changed
  end
  local left = releasable(s)
  local cap = math.min(math.max(s.tail - s.frontier, 0), left)
  if cap <= 0 then
    local changed = s.running == 1
    s.running = 0
    return expired or changed
  end
  local step = interval(s, left)
  local base = schedule_base(s, step)
  local due = floordiv(math.max(now - base, 0), step)
  local released = math.min(due, cap)
  local running = 0
  if released < cap then
    running = 1
  end
  local changed = expired or released > 0 or running ~= s.running or base ~= s.tat
  s.running = running
  if released == 0 then
    s.tat = base
    return changed
  end
  s.frontier = s.frontier + released
  s.tat = base + released * step
  record_checkpoint(s)
  return true
end

-- True for the numbers still waiting when the phase counting now opened.
local function came_back(s, ticket)
  return s.phase ~= 0 and s.from < ticket and ticket <= s.to
end

local function sold_out(s)
  local quota = limit(s)
  return quota >= 0 and s.admitted >= quota
end

-- Counts `ticket`'s exchange (queue.rs Counters::admit).
local function admit(s, ticket)
  if came_back(s, ticket) then
    redis.call('SETBIT', returned, int(ticket - s.from), 1)
  end
  redis.call('ZADD', exchanged, int(now), int(ticket))
  s.admitted = s.admitted + 1
end

-- For a ticket already let in (bit `at` of `bitmap` set): 'again' within
-- EXCHANGE_GRACE of its exchange, else 'spent'; nil for one not let in yet
-- (queue.rs Counters::let_in_before).
local function let_in_before(bitmap, at, ticket)
  redis.call('ZREMRANGEBYSCORE', exchanged, '-inf', '(' .. int(now - EXCHANGE_GRACE))
  if redis.call('GETBIT', bitmap, int(at)) == 0 then
    return nil
  end
  if redis.call('ZSCORE', exchanged, int(ticket)) then
    return 'again'
  end
  return 'spent'
end

local function claim(s, epoch, ticket)
  if epoch ~= s.epoch then
    return 'stale'
  end
  advance(s)
  if ticket == 0 or ticket > s.frontier then
    return 'not_yet'
  end
  if ticket <= s.floor then
    return 'lapsed'
  end
  local again = let_in_before(claimed, ticket, ticket)
  if again then
    return again
  end
  if sold_out(s) then
    return 'sold_out'
  end
  redis.call('SETBIT', claimed, int(ticket), 1)
  s.open = s.open + 1
  admit(s, ticket)
  return 'fresh'
end

-- A ticket handed out before the phase that opened at `phase` (queue.rs
-- Counters::come_back): one still waiting when it opened is let in on its
-- return, once, even if its turn came and went while it was away.
local function come_back(s, epoch, ticket, phase)
  if epoch ~= s.epoch then
    return 'stale'
  end
  advance(s)
  local open = phase_at(s)
  if s.phase ~= phase or not open or open.start ~= phase then
    if ticket > s.floor then
      return claim(s, epoch, ticket)
    end
    return 'not_yet'
  end
  if not came_back(s, ticket) or ticket > s.floor then
    return claim(s, epoch, ticket)
  end
  local again = let_in_before(returned, ticket - s.from, ticket)
  if again then
    return again
  end
  if sold_out(s) then
    return 'sold_out'
  end
  -- Its slot lapsed while they were away and was counted as wasted.
  s.wasted = math.max(s.wasted - 1, 0)
  admit(s, ticket)
  return 'fresh'
end

-- After handing out `ticket`: if nobody is ahead and the rate and quota
-- allow, the frontier covers it now and it is exchanged in the same step.
local function admit_if_due(s, ticket)
  advance(s)
  if ticket <= s.frontier then
    local claimed_now = claim(s, s.epoch, ticket)
    if claimed_now == 'fresh' or claimed_now == 'again' then
      return 'admitted'
    end
  end
  return 'waiting'
end

-- Numbers go back as Redis integers (every one is a whole number below
-- 2^53, which a Lua number holds exactly): formatting each as text cost
-- more than the rest of the reply.
local function reply(s, outcome, ticket)
  return { outcome, ticket, s.epoch, s.tail, s.frontier, s.floor, s.admitted,
           s.wasted, outstanding(s), s.tat, s.running, s.rate, s.burst,
           s.quota, s.paused, s.claim, s.boot, s.pass, s.version, s.chain,
           s.phase, s.base, s.phases, bit.band(s.overrides, OVERRIDE.rate) ~= 0 and 1 or 0, s.secret,
           s.given, s.received }
end

local function overridden(s, name)
  return bit.band(s.overrides, OVERRIDE[name]) ~= 0
end

-- The config's settings from ARGV[base..base+7] (rate, burst, quota,
-- paused, claim, pass, phases, draw secret), except those changed live;
-- the draw secret is taken only while the room has none.
local function apply_settings(s, base)
  if not overridden(s, 'rate') then s.rate = tonumber(ARGV[base]) end
  s.burst = tonumber(ARGV[base + 1])
  if not overridden(s, 'quota') then s.quota = tonumber(ARGV[base + 2]) end
  if not overridden(s, 'paused') then s.paused = tonumber(ARGV[base + 3]) end
  s.claim = tonumber(ARGV[base + 4])
  if not overridden(s, 'pass') then s.pass = tonumber(ARGV[base + 5]) end
  s.phases = ARGV[base + 6]
  s.schedule = parse_phases(s.phases)
  if s.secret == '' then s.secret = ARGV[base + 7] end
end

local function fresh_room(boot)
  redis.call('DEL', claimed, checkpoints, exchanged, history, returned, entries, drawn, moves)
  return { boot = boot, chain = '', epoch = 1, tail = 0, frontier = 0, admitted = 0, wasted = 0, floor = 0, tat = 0, running = 0, open = 0,
           rate = 1, burst = 1, quota = -1, paused = 0, claim = 600, pass = 1200, overrides = 0, recover = 0,
           version = 0, phase = 0, base = 0, from = 0, to = 0, draw_phase = 0, drawn_phase = 0, given = 0,
           received = 0, gave_at = 0, gave = 0, phases = '',
           secret = '', schedule = {} }
end

local s = load()

if s and op ~= 'seed' and rewritten(s) then
  return { 'rewritten' }
end

if op == 'configure' then
  -- ARGV[5..12] settings, ARGV[13] boot id for a new room, ARGV[14] grace.
  -- A room created here may be one Redis lost while other instances were
  -- running: nothing moves for `grace`, so they can add what they knew.
  if not s then
    s = fresh_room(ARGV[13])
    if tonumber(ARGV[14]) > 0 then
      s.recover = now + tonumber(ARGV[14])
    end
  end
  apply_settings(s, 5)
  advance(s)
  save(s)
  return reply(s, 'view', 0)
end

-- Puts back exchanges the caller made that the room does not hold (Redis
-- lost them, or a replica without them took over): each `ticket:at` in
-- ARGV[from..] is a pass someone holds. Returns how many were missing.
-- `expired_here`: slots below the floor expired in this room's own
-- history, so one missing there was counted as wasted.
local function restore(s, from, expired_here)
  local missing = 0
  for i = from, #ARGV do
    local ticket, at = string.match(ARGV[i], '^(%d+):(%d+)$')
    ticket, at = tonumber(ticket), tonumber(at)
    if ticket and ticket > 0 and redis.call('GETBIT', claimed, int(ticket)) == 0 then
      redis.call('SETBIT', claimed, int(ticket), 1)
      missing = missing + 1
      if ticket > s.frontier then
        s.frontier = ticket
        record_checkpoint(s)
      end
      if ticket > s.floor then
        s.open = s.open + 1
      elseif expired_here then
        -- Its slot has expired here as unclaimed: it was not.
        s.wasted = math.max(s.wasted - 1, 0)
      end
      if at > now - EXCHANGE_GRACE then
        redis.call('ZADD', exchanged, int(at), int(ticket))
      end
    end
  end
  return missing
end

if op == 'seed' then
  -- Redis lost the room, or holds another history than the caller saw:
  -- rebuild it from an instance's last view. ARGV[5..12] the live
  -- settings, ARGV[13] boot id, ARGV[14..22] epoch, tail, frontier, floor,
  -- admitted, wasted, tat, phase, base, ARGV[23] grace, ARGV[24] which
  -- settings were changed live, ARGV[25] what was lost, ARGV[26..] the
  -- exchanges the instance made lately in that epoch ('ticket:at'). Where
  -- the room is there, the larger numbers win, except for admissions: when it lost its
  -- last writes ('writes'), every exchange it lacks is a pass it did not
  -- count; when it was lost whole ('room') and rebuilt, the views'
  -- admissions count them already.
  -- For `grace` microseconds after a rebuild, no ticket is handed out and
  -- none exchanged, so every instance can add what it knew first.
  local seed = {}
  for i, name in ipairs({ 'epoch', 'tail', 'frontier', 'floor', 'admitted', 'wasted', 'tat', 'phase', 'base' }) do
    seed[name] = tonumber(ARGV[13 + i])
  end
  if not s then
    s = fresh_room(ARGV[13])
    apply_settings(s, 5)
    s.overrides = tonumber(ARGV[24])
    for name, value in pairs(seed) do
      s[name] = value
    end
    -- The claimed bitmap is gone, so released slots count as outstanding
    -- until they expire: the quota cap errs on the safe side, and a slot
    -- whose holder comes now can still be taken. The checkpoint lets them
    -- expire.
    s.recover = now + tonumber(ARGV[23])
    record_checkpoint(s)
    -- The view's admissions already count these exchanges.
    restore(s, 26, false)
  elseif seed.epoch >= s.epoch then
    if seed.epoch > s.epoch then
      s.epoch = seed.epoch
    end
    local frontier = s.frontier
    for _, name in ipairs({ 'tail', 'frontier', 'floor', 'tat' }) do
      s[name] = math.max(s[name], seed[name])
    end
    s.recover = math.max(s.recover, now + tonumber(ARGV[23]))
    -- The later phase wins; within one phase, the smaller base (the one
    -- that leaves fewer admissions) does.
    if seed.phase > s.phase then
      s.phase, s.base = seed.phase, seed.base
    elseif seed.phase == s.phase then
      s.base = math.min(s.base, seed.base)
    end
    if s.frontier > frontier then
      record_checkpoint(s)
    end
    if ARGV[25] == 'writes' then
      -- Each instance puts back exactly the passes it handed out, so
      -- none is counted twice (the view may count other instances' too).
      s.admitted = s.admitted + restore(s, 26, true)
    else
      restore(s, 26, false)
      s.admitted = math.max(s.admitted, seed.admitted)
    end
  end
  advance(s)
  save(s)
  return reply(s, 'view', 0)
end

if not s then
  return { 'missing' }
end

if (op == 'arrive' or op == 'claim' or op == 'come_back' or op == 'enter' or op == 'pending')
    and now < s.recover then
  return { 'recovering' }
end

if op == 'sync' then
  if advance(s) then
    save(s)
  end
  return reply(s, 'view', 0)
end

if op == 'arrive' then
  -- While places promised during an outage are being gathered, newcomers
  -- are promised a place too, so nobody jumps ahead of them.
  if tonumber(redis.call('HGET', state, 'pending_open') or '0') ~= 0 then
    return { 'settling' }
  end
  -- ARGV[5], ARGV[6]: a proof-of-work nonce paying for this ticket and its
  -- expiry (microseconds); a nonce buys one ticket.
  if ARGV[5] then
    redis.call('ZREMRANGEBYSCORE', spent, '-inf', '(' .. int(now))
    if redis.call('ZSCORE', spent, ARGV[5]) then
      return { 'work_spent' }
    end
    redis.call('ZADD', spent, ARGV[6], ARGV[5])
  end
  advance(s)
  s.tail = s.tail + 1
  local ticket = s.tail
  local outcome = admit_if_due(s, ticket)
  save(s)
  return reply(s, outcome, ticket)
end

if op == 'pending' then
  -- ARGV[5] the promise, ARGV[6] its arrival (milliseconds), ARGV[7] how
  -- long promises may come in (microseconds). Promises are numbered all
  -- together, in arrival order, once that time has passed since the first.
  local member = ARGV[5]
  local ticket = tonumber(redis.call('HGET', promised, member))
  if not ticket then
    redis.call('ZADD', pending, ARGV[6], member)
    local opened = tonumber(redis.call('HGET', state, 'pending_open') or '0')
    if opened == 0 then
      opened = now
      redis.call('HSET', state, 'pending_open', int(now))
    end
    if now < opened + tonumber(ARGV[7]) then
      return { 'settling' }
    end
    advance(s)
    for _, waiting in ipairs(redis.call('ZRANGE', pending, 0, -1)) do
      s.tail = s.tail + 1
      redis.call('HSET', promised, waiting, int(s.tail))
    end
    redis.call('EXPIRE', promised, 86400)
    redis.call('DEL', pending)
    redis.call('HSET', state, 'pending_open', 0)
    ticket = tonumber(redis.call('HGET', promised, member))
  end
  local outcome = admit_if_due(s, ticket)
  save(s)
  return reply(s, outcome, ticket)
end

if op == 'claim' then
  -- ARGV[5] epoch, ARGV[6] ticket.
  local outcome = claim(s, tonumber(ARGV[5]), tonumber(ARGV[6]))
  save(s)
  return reply(s, outcome, tonumber(ARGV[6]))
end

if op == 'enter' then
  -- ARGV[5] epoch, ARGV[6] the entry's id, ARGV[7] the start of the phase
  -- whose draw it is for (queue.rs Counters::enter_draw).
  local epoch, id, phase = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  if epoch ~= s.epoch or id < 1 or id > 2 ^ 53 - 1 then
    return reply(s, 'missed', 0)
  end
  local changed = advance(s)
  local outcome, ticket = 'missed', 0
  local number = s.drawn_phase == phase and tonumber(redis.call('HGET', drawn, int(id)))
  if number then
    outcome, ticket = 'drawn', number
  else
    for _, p in ipairs(s.schedule) do
      if p.start == phase and p.prequeue > 0 and math.max(p.start - p.prequeue, 0) <= now and now < p.start then
        if s.draw_phase ~= phase then
          redis.call('DEL', entries)
          s.draw_phase = phase
        end
        redis.call('SADD', entries, int(id))
        outcome, changed = 'entered', true
      end
    end
  end
  if changed then
    save(s)
  end
  return reply(s, outcome, ticket)
end

if op == 'give' then
  -- ARGV[5] when the room's unused places move to another segment
  -- (queue.rs Counters::give); the reply's ticket is how many.
  local at = tonumber(ARGV[5])
  advance(s)
  local amount = 0
  if now >= at then
    if s.gave_at == at then
      amount = s.gave
    else
      local quota = limit(s)
      if quota >= 0 then
        amount = math.max(quota - s.admitted - outstanding(s), 0)
      end
      s.given = s.given + amount
      s.gave, s.gave_at = amount, at
    end
  end
  save(s)
  return reply(s, 'view', amount)
end

if op == 'receive' then
  -- ARGV[5] the giving segment, ARGV[6] when it gave, ARGV[7] how many
  -- (queue.rs Counters::receive); each move is taken once.
  local key = ARGV[5] .. '@' .. ARGV[6]
  advance(s)
  if redis.call('HSETNX', moves, key, ARGV[7]) == 1 then
    s.received = s.received + tonumber(ARGV[7])
    advance(s)
  end
  save(s)
  return reply(s, 'view', 0)
end

if op == 'come_back' then
  -- ARGV[5] epoch, ARGV[6] ticket, ARGV[7] the start of the phase it
  -- comes back to.
  local outcome = come_back(s, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
  save(s)
  return reply(s, outcome, tonumber(ARGV[6]))
end

if op == 'extend' then
  -- An exchange whose pass could not be handed over (no replica confirmed
  -- it in time): ARGV[5] epoch, ARGV[6] ticket, ARGV[7] how long
  -- (microseconds) its holder may still come back for the pass.
  local ticket = tonumber(ARGV[6])
  if tonumber(ARGV[5]) == s.epoch and redis.call('GETBIT', claimed, int(ticket)) == 1 then
    local keep = now + tonumber(ARGV[7]) - EXCHANGE_GRACE
    redis.call('ZADD', exchanged, 'GT', int(keep), int(ticket))
  end
  return reply(s, 'view', 0)
end

if op == 'update' then
  -- ARGV[5] rate, ARGV[6] quota ('none' removes it), ARGV[7] paused (0 or
  -- 1), ARGV[8] pass seconds; an empty value leaves that setting alone.
  -- The line is brought up to date under the old settings first.
  advance(s)
  local changes = { { 'rate', ARGV[5] }, { 'quota', ARGV[6] }, { 'paused', ARGV[7] }, { 'pass', ARGV[8] } }
  for _, change in ipairs(changes) do
    local name, value = change[1], change[2]
    if value ~= '' then
      if value == 'none' then
        s[name] = -1
      else
        s[name] = tonumber(value)
      end
      s.overrides = bit.bor(s.overrides, OVERRIDE[name])
    end
  end
  advance(s)
  save(s)
  return reply(s, 'view', 0)
end

if op == 'reset' then
  advance(s)
  local dropped = math.max(s.tail - s.frontier, 0) + outstanding(s)
  s.epoch = s.epoch + 1
  s.wasted = s.wasted + dropped
  s.frontier = s.tail
  s.floor = s.tail
  s.tat = now
  s.open = 0
  s.from, s.to = s.tail, s.tail
  s.draw_phase, s.drawn_phase = 0, 0
  redis.call('DEL', checkpoints, exchanged, returned, entries, drawn)
  save(s)
  return reply(s, 'view', 0)
end

return redis.error_reply('antre: unknown operation ' .. tostring(op))
