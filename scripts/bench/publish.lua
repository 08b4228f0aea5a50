-- wrk script: POST CloudEvents to /v1/topics/bench/events.
-- BATCH=1 sends one structured event per request; BATCH=100 sends a batch of 100 events.
-- Each event carries ~1 KiB of JSON data with varied values.
local batch = tonumber(os.getenv("BATCH") or "1")
local counter = 0
local filler = string.rep("lorem ipsum dolor sit amet ", 34)

local function event(i)
  return string.format(
    '{"specversion":"1.0","id":"%d-%d","source":"/bench","type":"order.created","partitionkey":"cust-%d","data":{"orderId":"o-%d","total":%d,"note":"%s"}}',
    math.random(1, 1000000000), i, i % 997, i, (i * 7919) % 100000, filler)
end

request = function()
  counter = counter + 1
  if batch == 1 then
    return wrk.format("POST", "/v1/topics/bench/events", { ["Content-Type"] = "application/cloudevents+json" }, event(counter))
  end
  local parts = {}
  for j = 1, batch do parts[j] = event(counter * batch + j) end
  return wrk.format("POST", "/v1/topics/bench/events", { ["Content-Type"] = "application/cloudevents-batch+json" },
    "[" .. table.concat(parts, ",") .. "]")
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
