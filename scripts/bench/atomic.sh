#!/usr/bin/env bash
# Atomic publishing against plain publishing of the same events: batches of 10 of the benchmark's order events
# (scripts/bench/events.py, four types) to POST /v1/events, routed by type over three topics, with ?atomic=true
# (each request one transaction: transactional batches, a journal entry and COMMIT markers) and without it, both
# with acks=all. The same client as peers.sh (peerload, one thread per connection), interleaved runs, medians.
# Prints per mode: requests (transactions) per second, events per second, latency p50/p99, server CPU µs per
# event, and atomic ÷ plain.
#
# Usage: scripts/bench/atomic.sh [RUNS] [SECONDS]   (3, 10); needs the release build (BIN=… to use another).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
BIN=${BIN:-.build-release/release/sluice}
CONNECTIONS=${CONNECTIONS:-32}
BATCH=10
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"' EXIT

source scripts/bench/common.sh
missing=()
prepare_peerload

API=127.0.0.1:17495 METRICS=127.0.0.1:19495

measure() {  # mode (atomic|plain), out file
    local mode=$1 out=$2
    local dir="$WORK/data-$RANDOM"
    "$BIN" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --kafka-address off --log-level error \
        --acks all --num-partitions 3 --route 'order.created=orders' --route 'order.paid=payments' \
        --route 'order.packed=shipments' --route 'order.shipped=shipments' > "$dir.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 500); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.01; done
    local path=/v1/events
    [ "$mode" = atomic ] && path="/v1/events?atomic=true"
    local before; before=$(ticks "$pid")
    local result; result=$(PEERLOAD_PATH="$path" "$WORK/peerload" sluice "$API" "$WORK/events.jsonl" "$CONNECTIONS" "$BATCH" "$SECONDS_PER_RUN")
    local after; after=$(ticks "$pid")
    local scrape; scrape=$(curl -sf "$METRICS/metrics")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir" "$dir.log"
    # Stored events from the agent's own count, and for atomic runs the transactions it committed.
    local written; written=$(awk '/^sluice_events_published_total\{.*status="written"/ {s += $2} END {print s + 0}' <<<"$scrape")
    local committed; committed=$(awk '/^sluice_transactions_total\{.*outcome="committed"/ {s += $2} END {print s + 0}' <<<"$scrape")
    local requests duration p50 p99
    requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result"); duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$result")
    p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$result"); p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$result")
    if [ "$mode" = atomic ] && [ "$committed" -lt "$requests" ]; then echo "only $committed of $requests atomic requests committed" >&2; exit 1; fi
    awk -v r="$requests" -v w="$written" -v d="$duration" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v p50="$p50" -v p99="$p99" \
        'BEGIN { printf "%.0f %.0f %.1f %.1f %.1f\n", r/(d/1e6), w/(d/1e6), p50/1000, p99/1000, (w ? t*1e6/hz/w : 0) }' >> "$out"
}

for run in $(seq 1 "$RUNS"); do
    measure plain "$WORK/plain"
    measure atomic "$WORK/atomic"
done
column() { cut -d' ' -f"$1" "$WORK/$2" | median; }
echo "## Atomic against plain publishing: batches of $BATCH over 3 topics, acks=all ($RUNS interleaved runs of ${SECONDS_PER_RUN} s, $CONNECTIONS connections, medians)"
echo
echo "| mode | requests (transactions)/s | events/s | p50 ms | p99 ms | server CPU µs/event |"
echo "|---|---|---|---|---|---|"
for mode in plain atomic; do
    echo "| $mode | $(column 1 $mode) | $(column 2 $mode) | $(column 3 $mode) | $(column 4 $mode) | $(column 5 $mode) |"
done
echo
echo "atomic ÷ plain: $(awk -v a="$(column 2 atomic)" -v b="$(column 2 plain)" 'BEGIN{printf "%.2f", a/b}')× events/s, $(awk -v a="$(column 5 atomic)" -v b="$(column 5 plain)" 'BEGIN{printf "%.2f", a/b}')× CPU per event"
