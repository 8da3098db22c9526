-- wrk script for POST /txn (bench/redis/bench.py, issue 20's "transaction
-- throughput at 128 connections"): each request moves one unit between two
-- random keys of BENCH_KEYS (default 100000), guarded by a compare:
--   compare  key A exists = false (or true after the first write of A)
--   success  put A, put B (100-byte values)   failure  put A, put B
-- so every request writes two keys in one log entry, whichever branch runs.
-- BENCH_TXN_PLAIN=1 sends a single PUT /kv/{key} instead (the reference).
local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
local plain = os.getenv("BENCH_TXN_PLAIN") == "1"
local value = string.rep("v", 100)
local counter = 0

function init(args)
   math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
   local a = string.format("k%07d", math.random(0, keys - 1))
   if plain then
      return wrk.format("PUT", "/kv/" .. a, {["Content-Type"] = "application/octet-stream"}, value)
   end
   local b = string.format("k%07d", math.random(0, keys - 1))
   local body = '{"compare":[{"key":"' .. a .. '","target":"exists","exists":false}],' ..
      '"success":[{"put":{"key":"' .. a .. '","value":"' .. value .. '"}},' ..
      '{"put":{"key":"' .. b .. '","value":"' .. value .. '"}}],' ..
      '"failure":[{"put":{"key":"' .. a .. '","value":"' .. value .. '"}},' ..
      '{"put":{"key":"' .. b .. '","value":"' .. value .. '"}}]}'
   return wrk.format("POST", "/txn", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
   if status ~= 200 and status ~= 201 and status ~= 204 then counter = counter + 1 end
end

function done(summary, latency, requests)
   io.write(string.format("BENCHJSON {\"requests\":%d,\"seconds\":%.3f,\"p50_us\":%d,\"errors\":%d}\n",
      summary.requests, summary.duration / 1e6, latency:percentile(50),
      summary.errors.status + summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout))
end
