#!/usr/bin/env bash
# Agent benchmarks for BENCHMARKS.md: HTTP publish throughput (wrk), publish latency at a fixed rate,
# /metrics render time, idle resident memory, and time from start to ready with 1 GiB in the log.
# Usage: scripts/bench/agent.sh [RUNS]   (needs a release build in .build-release and wrk: apt-get install wrk)
# SECTIONS=throughput,latency,metrics,footprint runs only those sections (default: all).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
BIN=${BIN:-.build-release/release/sluice}   # BIN=.build-static/release/sluice for the static build
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
python3 scripts/bench/events.py 20000 > "$WORK/events.jsonl"
export EVENTS="$WORK/events.jsonl"
source scripts/bench/common.sh

start_agent() {  # data-dir, extra settings…
    local dir=$1; shift
    "$BIN" serve --data-dir "$dir" --api-address 127.0.0.1:17470 --metrics-address 127.0.0.1:19470 --log-level warning "$@" > "$WORK/agent.log" 2>&1 &
    AGENT=$!
    for _ in $(seq 1 500); do curl -sf 127.0.0.1:19470/readyz >/dev/null && return 0; sleep 0.01; done
    echo "agent did not become ready" >&2; cat "$WORK/agent.log" >&2; exit 1
}
stop_agent() { kill -TERM "$AGENT"; wait "$AGENT" || true; }
want() { [[ ",${SECTIONS:-all}," == *",all,"* || ",${SECTIONS:-}," == *",$1,"* ]]; }

if want throughput; then
echo "## HTTP publish throughput (wrk, 2 threads, 32 connections, 10 s; agent and wrk share the 2 cores)"
echo
echo "| request | acks | events/s acknowledged (2xx) | events/s stored | MB/s of event JSON | 2xx requests/s | p50 | p99 | non-2xx or errors |"
echo "|---|---|---|---|---|---|---|---|---|"
for batch in 1 100; do
  for acks in 0 1 all; do
    idem=false; [ "$acks" = all ] && idem=true
    eps=(); sps=(); mbs=(); rps=(); p50s=(); p99s=(); errs=0
    for run in $(seq 1 "$RUNS"); do
      start_agent "$WORK/tp-$batch-$acks-$run" --acks "$acks" --enable-idempotence "$idem" --max-request-size 4194304
      out=$(BATCH=$batch wrk -t2 -c32 -d10s -s scripts/bench/publish.lua http://127.0.0.1:17470 | grep RESULT)
      sleep 0.2   # acks=0 answers before the append: let the buffer drain before counting
      stored=$(sluice_stored_events 127.0.0.1:17470)
      stop_agent
      req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out"); dur=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$out")
      err=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out"); non=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$out")
      errs=$((errs + err + non))
      ok=$((req - err - non))   # only 2xx answers count as published (429s are backpressure)
      rps+=($(awk -v r="$ok" -v d="$dur" 'BEGIN{printf "%.0f", r/(d/1e6)}'))
      eps+=($(awk -v r="$ok" -v d="$dur" -v b="$batch" 'BEGIN{printf "%.0f", r*b/(d/1e6)}'))
      sps+=($(awk -v s="$stored" -v d="$dur" 'BEGIN{printf "%.0f", s/(d/1e6)}'))
      mbs+=($(awk -v r="$ok" -v d="$dur" -v b="$batch" 'BEGIN{printf "%.1f", r*b*1123/(d/1e6)/1e6}'))
      p50s+=($(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$out")); p99s+=($(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out"))
    done
    label=$([ "$batch" = 1 ] && echo "1 event" || echo "batch of 100")
    echo "| $label | $acks | $(printf '%s\n' "${eps[@]}" | median) | $(printf '%s\n' "${sps[@]}" | median) | $(printf '%s\n' "${mbs[@]}" | median) | $(printf '%s\n' "${rps[@]}" | median) | $(printf '%s\n' "${p50s[@]}" | median | awk '{printf "%.1f ms", $1/1000}') | $(printf '%s\n' "${p99s[@]}" | median | awk '{printf "%.1f ms", $1/1000}') | $errs |"
  done
done
fi

echo
if want latency; then
echo "## Publish latency at a fixed rate (single events, acks=all, open-loop Python client, 8 keep-alive connections)"
echo
echo "| rate | p50 | p99 | sent | errors |"
echo "|---|---|---|---|---|"
for rate in 200 1000; do
  p50s=(); p99s=(); sent=0; errs=0
  for run in $(seq 1 "$RUNS"); do
    start_agent "$WORK/lat-$rate-$run"
    read -r p50 p99 n e < <(python3 scripts/bench/latency.py 127.0.0.1:17470 "$rate" 10)
    stop_agent
    p50s+=("$p50"); p99s+=("$p99"); sent=$((sent + n)); errs=$((errs + e))
  done
  echo "| $rate/s | $(printf '%s\n' "${p50s[@]}" | median) ms | $(printf '%s\n' "${p99s[@]}" | median) ms | $sent | $errs |"
done
fi

echo
if want metrics; then
echo "## /metrics render"
echo
"$BIN" bench metrics --topics 1000 --partitions 10
fi

echo
if want footprint; then
echo "## Footprint and start-up"
echo
rss=(); anon=()
for run in $(seq 1 "$RUNS"); do
  start_agent "$WORK/idle-$run"; sleep 2
  rss+=($(awk '/VmRSS/ {print $2}' /proc/$AGENT/status)); anon+=($(awk '/^Anonymous/ {print $2}' /proc/$AGENT/smaps_rollup)); stop_agent
done
echo "- idle resident memory (release, empty log, 2 s after ready): $(printf '%s\n' "${rss[@]}" | median | awk '{printf "%.1f MiB", $1/1024}') RSS, of which $(printf '%s\n' "${anon[@]}" | median | awk '{printf "%.1f MiB", $1/1024}') anonymous (the rest is mapped code of the binary and the Swift runtime)"

# 1 GiB of log: ~1 KiB JSON lines through `sluice produce`, uncompressed, 1000 records per batch.
python3 - "$WORK/gib.txt" <<'PY'
import sys, random
filler = "lorem ipsum dolor sit amet " * 36
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        f.write('{"id":"%d","amount":%d,"note":"%s"}\n' % (i, random.randint(1, 10**6), filler))
PY
"$BIN" produce --data-dir "$WORK/gib" --topic big --batch-records 1000 --compression none < "$WORK/gib.txt" > /dev/null
rm -f "$WORK/gib.txt"
size=$(du -sb "$WORK/gib/topics" | cut -f1)
for mode in clean crash; do
  times=()
  for run in $(seq 1 "$RUNS"); do
    [ "$mode" = crash ] && rm -f "$WORK/gib/.clean_shutdown"
    t0=$(date +%s%N)
    start_agent "$WORK/gib"
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
    if [ "$mode" = crash ]; then kill -KILL "$AGENT"; wait "$AGENT" 2>/dev/null || true; else stop_agent; fi
  done
  echo "- start to ready with $(awk -v s="$size" 'BEGIN{printf "%.2f GiB", s/1073741824}') in the log after a $mode stop: $(printf '%s\n' "${times[@]}" | median) ms (process start to /readyz 200, polled every 10 ms)"
done

fi
