-- wrk script driving stcache's HTTP API or etcd's v3 JSON gateway with the
-- same workload, so that both systems see the same load generator.
-- Configuration comes from the environment (setup() runs before init() and
-- cannot see the script arguments), set by bench/cluster/driver.py:
--
--   BENCH_SYSTEM        stcache | etcd
--   BENCH_OP            write | read | mixed
--   BENCH_CONSISTENCY   linearizable | stale   (reads, and the reads of mixed)
--   BENCH_KEYS          key space: keys "k0000000" .. BENCH_KEYS-1 (random ops)
--   BENCH_VALUE_BYTES   value size of every write (default 100)
--   BENCH_WRITE_PCT     mixed: percentage of writes (default 10)
--   BENCH_ADDRS         "host:port,host:port,..": thread i talks to entry
--                       i mod n (spreads the load over nodes)
--   BENCH_SEED          base seed of the per-thread random generators
--   BENCH_TOKEN         stcache with --auth: sent as Authorization: Bearer
--   BENCH_DELAY_MS      wait before each request (ms; default 0: none)
--
-- done() prints one line "BENCHJSON {...}" with the request count, duration,
-- socket errors, HTTP status counts, the first error body seen per status
-- (>= 300), read misses and latency percentiles (us).
-- (Loading a key set is done by the driver's pipelined loader, which retries
-- every unacknowledged key; wrk's response() cannot tell which key it answers.)

local function env(name, default)
   local v = os.getenv(name)
   if v == nil or v == "" then return default end
   return v
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
   local out = {}
   local n = #s
   for i = 1, n, 3 do
      local a, b, c = s:byte(i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(v / 262144) % 64
      local c2 = math.floor(v / 4096) % 64
      local c3 = math.floor(v / 64) % 64
      local c4 = v % 64
      out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
         (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

-- setup phase (its own Lua state): give every thread an id and an address.
local thread_count = 0
local threads = {}

function setup(thread)
   local addrs = {}
   for hostport in string.gmatch(env("BENCH_ADDRS", ""), "[^,]+") do
      local host, port = hostport:match("^(.*):(%d+)$")
      local found = wrk.lookup(host, port)
      addrs[#addrs + 1] = found[1]
   end
   if #addrs > 0 then
      thread.addr = addrs[(thread_count % #addrs) + 1]
   end
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

-- running phase (one Lua state per thread)
local system, op, consistency
local keys, write_pct, value_raw, value_b64
local json_headers = { ["Content-Type"] = "application/json" }
local auth_headers = nil -- BENCH_TOKEN: { Authorization = "Bearer ..." }

statuses = {}
errsample = {}
misses = 0

local function key_name(n)
   return string.format("k%07d", n)
end

local function write_request(n)
   local k = key_name(n)
   if system == "etcd" then
      return wrk.format("POST", "/v3/kv/put", json_headers,
                        '{"key":"' .. base64(k) .. '","value":"' .. value_b64 .. '"}')
   end
   return wrk.format("PUT", "/kv/" .. k, auth_headers, value_raw)
end

local function read_request(n)
   local k = key_name(n)
   if system == "etcd" then
      local body
      if consistency == "stale" then
         body = '{"key":"' .. base64(k) .. '","serializable":true}'
      else
         body = '{"key":"' .. base64(k) .. '"}'
      end
      return wrk.format("POST", "/v3/kv/range", json_headers, body)
   end
   return wrk.format("GET", "/kv/" .. k .. "?consistency=" .. consistency, auth_headers, nil)
end

-- Requests are built once per key at init (wrk.format, and for etcd the
-- base64 of the key, per request cost the load generator as much CPU as a
-- server node spends on a write; on a 2-core machine that CPU is taken from
-- the servers under test). Same treatment for both systems.
local write_reqs, read_reqs

local function build_all(make)
   local t = {}
   for n = 0, keys - 1 do
      t[n] = make(n)
   end
   return t
end

function init(args)
   system = env("BENCH_SYSTEM", "stcache")
   op = env("BENCH_OP", "write")
   consistency = env("BENCH_CONSISTENCY", "linearizable")
   keys = tonumber(env("BENCH_KEYS", "100000"))
   write_pct = tonumber(env("BENCH_WRITE_PCT", "10"))
   local vbytes = tonumber(env("BENCH_VALUE_BYTES", "100"))
   value_raw = string.rep("v", vbytes)
   value_b64 = base64(value_raw)
   math.randomseed(tonumber(env("BENCH_SEED", "1")) * 1000 + (tid or 0))
   local token = env("BENCH_TOKEN", "")
   if token ~= "" then auth_headers = { ["Authorization"] = "Bearer " .. token } end
   if op ~= "read" then write_reqs = build_all(write_request) end
   if op ~= "write" then read_reqs = build_all(read_request) end
end

function request()
   local n = math.random(0, keys - 1)
   if op == "write" then
      return write_reqs[n]
   elseif op == "mixed" then
      if math.random(1, 100) <= write_pct then
         return write_reqs[n]
      end
   end
   return read_reqs[n]
end

-- response() makes wrk copy every response's headers and body into Lua (as
-- costly as building the request was). It is off unless BENCH_RESPONSES=1
-- (per-status counts, error bodies and read misses): done() then reports
-- wrk's own count of statuses > 399 (a stcache miss is a 404 and shows
-- there; the driver checks a sample of the preloaded keys on both systems
-- before the runs). This runs when the script is loaded, in every Lua
-- state, so wrk's main state sees the same choice as the threads.
local want_response = os.getenv("BENCH_RESPONSES") == "1"

local function on_response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status >= 300 and errsample[status] == nil and body then
      errsample[status] = body:sub(1, 200)
   end
   -- A read of a key that is not there: stcache answers 404 (also counted as
   -- an error status); etcd answers 200 without "kvs". Counted for pure read
   -- workloads only.
   if op == "read" and (status == 404 or
      (system == "etcd" and status == 200 and body:find('"kvs"', 1, true) == nil)) then
      misses = misses + 1
   end
end

if want_response then
   response = on_response
end

-- BENCH_DELAY_MS: each connection waits this long before each request, which
-- caps the offered rate at about connections x 1000 / (delay + latency) per
-- second (bench/cluster/watch_fanout.py offers a fixed write rate this way).
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end

function done(summary, latency, requests)
   local agg = {}
   local miss_total = 0
   local samples = {}
   for _, thread in ipairs(threads) do
      local es = thread:get("errsample")
      if es then
         for code, b in pairs(es) do
            samples[tostring(code)] = b
         end
      end
      local st = thread:get("statuses")
      if st then
         for code, n in pairs(st) do
            agg[tostring(code)] = (agg[tostring(code)] or 0) + n
         end
      end
      miss_total = miss_total + (thread:get("misses") or 0)
   end
   local parts = {}
   if not want_response then
      -- no per-response callback: wrk counts statuses > 399 itself
      agg["2xx"] = summary.requests - summary.errors.status
      if summary.errors.status > 0 then agg["4xx/5xx"] = summary.errors.status end
   end
   for code, n in pairs(agg) do
      parts[#parts + 1] = string.format('"%s":%d', code, n)
   end
   local sparts = {}
   for code, b in pairs(samples) do
      local esc = b:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
      sparts[#sparts + 1] = string.format('"%s":"%s"', code, esc)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"statuses":{%s},"error_bodies":{%s},"misses":%d,' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(parts, ","), table.concat(sparts, ","), miss_total,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
