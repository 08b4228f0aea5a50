#!/usr/bin/env bash
# The cost of schema validation on publish: the same agent with schema.validation=off and =enforce, interleaved,
# publishing the benchmark's order events (scripts/bench/events.py, 1,123 bytes, 20 fields) with peerload, the
# client of peers.sh. Every event is checked against scripts/bench/order-schema.json (required fields, patterns,
# enums, formats email/date-time/ipv4, nested items and shipping, additionalProperties false) under its type.
# Prints medians of RUNS runs of SECONDS: stored events/s and server CPU µs per event, and enforce ÷ off.
#
# Usage: scripts/bench/schemas.sh [RUNS] [SECONDS]   (3, 10); needs the release build (BIN=… to use another).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
BIN=${BIN:-.build-release/release/sluice}
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"' EXIT

source scripts/bench/common.sh
missing=()
prepare_peerload
for status in created paid packed shipped; do
    mkdir -p "$WORK/schemas/order.$status"
    cp scripts/bench/order-schema.json "$WORK/schemas/order.$status/1.json"
done

API=127.0.0.1:17490 METRICS=127.0.0.1:19490

measure() {  # mode, batch, out file, settings…
    local mode=$1 batch=$2 out=$3; shift 3
    local dir="$WORK/data-$RANDOM"
    "$BIN" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --kafka-address off --log-level error \
        --max-request-size 4194304 --schemas "$WORK/schemas" --schema-validation "$mode" "$@" > "$dir.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 500); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.01; done
    curl -sf -X POST "http://$API/v1/topics" -H 'Content-Type: application/json' -d '{"name":"bench","partitions":3}' >/dev/null
    local before; before=$(ticks "$pid")
    local result; result=$("$WORK/peerload" sluice "$API" "$WORK/events.jsonl" "$CONNECTIONS" "$batch" "$SECONDS_PER_RUN")
    local after; after=$(ticks "$pid")
    local stored; stored=$(sluice_stored_events "$API")
    local checked; checked=$(curl -sf "$METRICS/metrics" | awk '/^sluice_schema_validations_total\{.*result="valid"/ {s += $2} END {print s + 0}')
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir" "$dir.log"
    local duration; duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$result")
    [ "$mode" = off ] || [ "$checked" -ge "$stored" ] || { echo "enforce checked $checked of $stored events" >&2; exit 1; }
    awk -v s="$stored" -v d="$duration" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f %.1f\n", s/(d/1e6), (s ? t*1e6/hz/s : 0) }' >> "$out"
}

echo "## schema.validation=enforce against off ($RUNS interleaved runs of ${SECONDS_PER_RUN} s, $CONNECTIONS connections, medians)"
echo
echo "| load | off: events/s | enforce: events/s | enforce ÷ off | off: CPU µs/event | enforce: CPU µs/event |"
echo "|---|---|---|---|---|---|"
row() {  # name, batch, settings…
    local name=$1 batch=$2; shift 2
    for run in $(seq 1 "$RUNS"); do
        measure off "$batch" "$WORK/off-$batch" "$@"
        measure enforce "$batch" "$WORK/enforce-$batch" "$@"
    done
    local off on off_cpu on_cpu
    off=$(cut -d' ' -f1 "$WORK/off-$batch" | median); on=$(cut -d' ' -f1 "$WORK/enforce-$batch" | median)
    off_cpu=$(cut -d' ' -f2 "$WORK/off-$batch" | median); on_cpu=$(cut -d' ' -f2 "$WORK/enforce-$batch" | median)
    echo "| $name | $off | $on | $(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.2f", a/b}') | $off_cpu | $on_cpu |"
}
row "batches of 100, acks=1" 100 --acks 1 --enable-idempotence false
row "1 event per request, acks=all" 1 --acks all
