-- wrk script: POST CloudEvents to /v1/topics/bench/events.
-- BATCH=1 sends one structured event per request; BATCH=100 sends a batch of 100 events.
-- EVENTS names a file from scripts/bench/events.py (realistic 1,123-byte events whose id is 16 '@'); each send
-- gets a unique id from the thread number and a counter, so idempotence never sees a repeat (wrk's threads
-- share one unseeded math.random, which gave both threads the same ids and stored only half the events).
local batch = tonumber(os.getenv("BATCH") or "1")
local events = {}
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  local path = os.getenv("EVENTS") or error("EVENTS must name a file made by scripts/bench/events.py")
  for line in io.lines(path) do
    if #line > 0 then events[#events + 1] = line end
  end
end

local function event()
  counter = counter + 1
  local template = events[(counter % #events) + 1]
  local id = string.format("%04x%012x", thread_number or 0, counter)
  return (template:gsub("@@@@@@@@@@@@@@@@", id, 1))
end

request = function()
  if batch == 1 then
    return wrk.format("POST", "/v1/topics/bench/events", { ["Content-Type"] = "application/cloudevents+json" }, event())
  end
  local parts = {}
  for j = 1, batch do parts[j] = event() end
  return wrk.format("POST", "/v1/topics/bench/events", { ["Content-Type"] = "application/cloudevents-batch+json" },
    "[" .. table.concat(parts, ",") .. "]")
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
