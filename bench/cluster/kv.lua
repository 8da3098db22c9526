-- wrk script driving stcache's HTTP API or etcd's v3 JSON gateway with the
-- same workload, so that both systems see the same load generator.
-- Configuration comes from the environment (setup() runs before init() and
-- cannot see the script arguments), set by bench/cluster/driver.py:
--
--   BENCH_SYSTEM        stcache | etcd
--   BENCH_OP            write | read | mixed | load
--   BENCH_CONSISTENCY   linearizable | stale   (reads, and the reads of mixed)
--   BENCH_KEYS          key space: keys "k0000000" .. BENCH_KEYS-1 (random ops)
--   BENCH_VALUE_BYTES   value size of every write (default 100)
--   BENCH_WRITE_PCT     mixed: percentage of writes (default 10)
--   BENCH_ADDRS         "host:port,host:port,..": thread i talks to entry
--                       i mod n (spreads the load over nodes)
--   BENCH_THREADS       number of wrk threads (-t), load: slices the key range
--   BENCH_CONNS         number of connections (-c), load: see below
--   BENCH_LOAD_BASE     load: first key number; BENCH_LOAD_COUNT keys are written
--                       once each, split in contiguous slices over the threads
--   BENCH_DONE_DIR      load: each thread creates done.<tid> here when its
--                       slice is written; the driver then stops wrk (SIGINT)
--   BENCH_SEED          base seed of the per-thread random generators
--
-- done() prints one line "BENCHJSON {...}" with the request count, duration,
-- socket errors, HTTP status counts, read misses and latency percentiles (us).

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
local load_next, load_end, load_first, load_target, load_ok, load_done_dir, load_done
local json_headers = { ["Content-Type"] = "application/json" }

statuses = {}
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
   return wrk.format("PUT", "/kv/" .. k, nil, value_raw)
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
   return wrk.format("GET", "/kv/" .. k .. "?consistency=" .. consistency, nil, nil)
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
   if op == "load" then
      local threads_n = tonumber(env("BENCH_THREADS", "1"))
      local conns = tonumber(env("BENCH_CONNS", "1"))
      local base = tonumber(env("BENCH_LOAD_BASE", "0"))
      local count = tonumber(env("BENCH_LOAD_COUNT", "0"))
      local lo = base + math.floor(count * tid / threads_n)
      local hi = base + math.floor(count * (tid + 1) / threads_n)
      load_first, load_next, load_end = lo, lo, hi
      -- Each connection has at most one request outstanding. Once every key of
      -- the slice has been sent, keep rewriting the slice from its start (same
      -- values) until slice + connections requests have succeeded: then every
      -- key's first write has been answered, save a request stuck for the
      -- whole tail (the driver samples keys afterwards to check).
      load_target = (hi - lo) + math.ceil(conns / threads_n)
      load_ok = 0
      load_done = false
      load_done_dir = env("BENCH_DONE_DIR", nil)
   end
end

function request()
   if op == "load" then
      local n = load_next
      load_next = load_next + 1
      if load_next >= load_end then load_next = load_first end
      return write_request(n)
   end
   local n = math.random(0, keys - 1)
   if op == "write" then
      return write_request(n)
   elseif op == "mixed" then
      if math.random(1, 100) <= write_pct then
         return write_request(n)
      end
   end
   return read_request(n)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if op == "load" then
      if status >= 200 and status < 300 then load_ok = load_ok + 1 end
      if not load_done and load_ok >= load_target then
         load_done = true
         if load_done_dir then
            local f = io.open(load_done_dir .. "/done." .. tid, "w")
            if f then f:write("1") f:close() end
         end
         wrk.thread:stop()
      end
      return
   end
   -- A read of a key that is not there: stcache answers 404 (also counted as
   -- an error status); etcd answers 200 without "kvs". Counted for pure read
   -- workloads only.
   if op == "read" and (status == 404 or
      (system == "etcd" and status == 200 and body:find('"kvs"', 1, true) == nil)) then
      misses = misses + 1
   end
end

function done(summary, latency, requests)
   local agg = {}
   local miss_total = 0
   for _, thread in ipairs(threads) do
      local st = thread:get("statuses")
      if st then
         for code, n in pairs(st) do
            agg[tostring(code)] = (agg[tostring(code)] or 0) + n
         end
      end
      miss_total = miss_total + (thread:get("misses") or 0)
   end
   local parts = {}
   for code, n in pairs(agg) do
      parts[#parts + 1] = string.format('"%s":%d', code, n)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"statuses":{%s},"misses":%d,' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(parts, ","), miss_total,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
