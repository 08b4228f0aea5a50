#!/usr/bin/env bash
# Publishing with tracing off, with the trace index on, and with the index and OpenTelemetry export on (to a local
# OTLP/HTTP receiver that decodes and counts the spans), every trace or one in ten sampled
# (OTEL_TRACES_SAMPLER=traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1: the events carry sampled traceparents, which a
# parent-based sampler would follow), and with callers that do not sample (the same events with traceparent flags
# 00, which the default parent-based sampler follows: no spans): batches of 100 of the benchmark's order events (each with its own
# correlationid; scripts/bench/events.py) to one topic with a push subscription, so that the index records every
# event read back from the log and its delivery attempt. acks=all and no compression, as the batch row of
# peers.sh without gzip. The same client as peers.sh (peerload), interleaved runs, medians.
# Prints per mode: events/s, latency p50/p99, server CPU µs per event, resident memory at the end, traces and hop
# bytes held, spans received per event; and each mode ÷ off.
#
# Usage: scripts/bench/traces.sh [RUNS] [SECONDS]   (3, 10); needs the release build (BIN=… to use another).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
BIN=${BIN:-.build-release/release/sluice}
CONNECTIONS=${CONNECTIONS:-32}
BATCH=100
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; kill "$APP_PID" "${OTLP_PID:-}" 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"' EXIT

source scripts/bench/common.sh
missing=()
prepare_peerload

# The app the subscription delivers to: answers 200 at once, on the same cores (as the load generator is).
python3 - "$WORK/app.port" <<'PY' &
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
APP_PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/app.port" ] && break; sleep 0.05; done
APP="http://127.0.0.1:$(cat "$WORK/app.port")/events"

# The OTLP/HTTP receiver for the export mode: decodes each request with the official protos and counts the spans.
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check opentelemetry-proto
python3 - "$WORK/otlp.port" "$WORK/spans" <<'PY' &
import http.server, socketserver, sys, threading
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
count, lock = 0, threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with lock:
            count += spans
            open(sys.argv[2], "w").write(str(count))
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf"); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
OTLP_PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/otlp.port" ] && break; sleep 0.05; done
OTLP="http://127.0.0.1:$(cat "$WORK/otlp.port")"

API=127.0.0.1:17497 METRICS=127.0.0.1:19497

measure() {  # mode (off|index|otlp|otlp-10pct|otlp-unsampled), out file
    local mode=$1 out=$2
    local dir="$WORK/data-$RANDOM"
    local enabled=true otlp=() sampler=()
    [ "$mode" = off ] && enabled=false
    case "$mode" in otlp*) otlp=(--otlp-endpoint "$OTLP") ;; esac
    [ "$mode" = otlp-10pct ] && sampler=(OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1)
    local events="$WORK/events.jsonl"
    [ "$mode" = otlp-unsampled ] && events="$WORK/events-unsampled.jsonl"
    local spans_before; spans_before=$(cat "$WORK/spans" 2>/dev/null || echo 0)
    env "${sampler[@]}" "$BIN" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --kafka-address off --log-level error \
        --acks all --compression-type none --trace-enabled "$enabled" "${otlp[@]}" > "$dir.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 500); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.01; done
    curl -sf -X PUT "$API/v1/subscriptions/app" -H 'Content-Type: application/json' \
        -d "{\"topics\": [\"bench\"], \"endpoint\": \"$APP\", \"concurrency\": 64}" >/dev/null
    local before; before=$(ticks "$pid")
    local result; result=$("$WORK/peerload" sluice "$API" "$events" "$CONNECTIONS" "$BATCH" "$SECONDS_PER_RUN")
    local after; after=$(ticks "$pid")
    local scrape; scrape=$(curl -sf "$METRICS/metrics")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5  # the exporter's last requests
    local spans; spans=$(( $(cat "$WORK/spans" 2>/dev/null || echo 0) - spans_before ))
    rm -rf "$dir" "$dir.log"
    local written; written=$(awk '/^sluice_events_published_total\{.*status="written"/ {s += $2} END {print s + 0}' <<<"$scrape")
    local rss; rss=$(awk '/^process_resident_memory_bytes / {print $2}' <<<"$scrape")
    local traces; traces=$(awk '/^sluice_trace_index_traces / {print $2}' <<<"$scrape")
    local bytes; bytes=$(awk '/^sluice_trace_index_bytes / {print $2}' <<<"$scrape")
    local duration p50 p99
    duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$result")
    p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$result"); p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$result")
    awk -v w="$written" -v d="$duration" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v p50="$p50" -v p99="$p99" \
        -v rss="${rss:-0}" -v traces="${traces:-0}" -v bytes="${bytes:-0}" -v spans="$spans" \
        'BEGIN { printf "%.0f %.1f %.1f %.1f %.0f %.0f %.1f %.2f\n", w/(d/1e6), p50/1000, p99/1000, (w ? t*1e6/hz/w : 0), rss/1048576, traces, bytes/1048576, (w ? spans/w : 0) }' >> "$out"
}

sed -E 's/("traceparent":"00-[0-9a-f]{32}-[0-9a-f]{16}-)01"/\100"/' "$WORK/events.jsonl" > "$WORK/events-unsampled.jsonl"
for run in $(seq 1 "$RUNS"); do
    measure off "$WORK/off"
    measure index "$WORK/index"
    measure otlp "$WORK/otlp"
    measure otlp-10pct "$WORK/otlp-10pct"
    measure otlp-unsampled "$WORK/otlp-unsampled"
done
column() { cut -d' ' -f"$1" "$WORK/$2" | median; }
echo "## Publishing with tracing off, the trace index on, and the index with OTLP export on (every trace, one in ten, callers not sampling): batches of $BATCH, acks=all, a push subscription ($RUNS interleaved runs of ${SECONDS_PER_RUN} s, $CONNECTIONS connections, medians)"
echo
echo "| tracing | events/s | p50 ms | p99 ms | server CPU µs/event (deliveries included) | resident MiB at the end | traces held | hop MiB held | spans received per event |"
echo "|---|---|---|---|---|---|---|---|---|"
for mode in off index otlp otlp-10pct otlp-unsampled; do
    echo "| $mode | $(column 1 $mode) | $(column 2 $mode) | $(column 3 $mode) | $(column 4 $mode) | $(column 5 $mode) | $(column 6 $mode) | $(column 7 $mode) | $(column 8 $mode) |"
done
echo
for mode in index otlp otlp-10pct otlp-unsampled; do
    echo "$mode ÷ off: $(awk -v a="$(column 1 $mode)" -v b="$(column 1 off)" 'BEGIN{printf "%.2f", a/b}')× events/s, $(awk -v a="$(column 4 $mode)" -v b="$(column 4 off)" 'BEGIN{printf "%.2f", a/b}')× CPU per event, $(awk -v a="$(column 5 $mode)" -v b="$(column 5 off)" 'BEGIN{printf "%+.0f", a-b}') MiB resident"
done
