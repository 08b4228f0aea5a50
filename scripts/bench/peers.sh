#!/usr/bin/env bash
# Sluice beside Redis Streams and NATS JetStream, in one interleaved run: the same events (scripts/bench/events.py,
# 1,123 bytes each), the same client (scripts/bench/peerload.c, one thread per connection), the same
# connections, matching durability. For each row and run the servers take turns; the table shows medians of
# RUNS runs of SECONDS each: events acknowledged and stored per second, server CPU µs per stored event (from
# /proc/PID/stat), resident memory at the end, disk bytes per stored event, and the ratios.
#
# Then the footprint of each server at rest: milliseconds from start to ready and resident memory 2 s later
# (after one /metrics scrape for Sluice, as Prometheus would make), medians of RUNS starts.
#
# Usage: scripts/bench/peers.sh [RUNS] [SECONDS]   (RUNS=3, SECONDS=10; ROWS=REGEX runs only the rows it matches,
# ROWS=footprint only the footprint)
# Installs redis-server, nats-server and libnats-dev when missing; needs the release build the README's
# first command makes (BIN=… to use another). BASE_BIN=… adds a second Sluice build to every row and start, taking
# its turn in each run beside the others, and a table of BIN ÷ BASE_BIN: the way to compare two builds on a VM
# whose speed drifts between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
BIN=${BIN:-.build-release/release/sluice}
BASE_BIN=${BASE_BIN:-}
[ -z "$BASE_BIN" ] || [ -x "$BASE_BIN" ] || { echo "BASE_BIN=$BASE_BIN is not an executable" >&2; exit 2; }
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d)
cleanup() {
    pkill -f "$WORK" 2>/dev/null || true
    sleep 0.2
    rm -rf "$WORK"
}
trap cleanup EXIT

source scripts/bench/common.sh
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
prepare_peerload

API=127.0.0.1:17480 METRICS=127.0.0.1:19480 REDIS=16390 NATS=14230
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 1 500); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.01; done; echo "port $1 did not open" >&2; exit 1; }

# The Sluice binary of a kind: BIN for sluice, BASE_BIN for base.
binary() { [ "$1" = base ] && echo "$BASE_BIN" || echo "$BIN"; }

# Starts server $1 ("sluice SETTINGS…", "base SETTINGS…", "redis", "nats") with its data in $2; sets PID.
start_server() {
    local kind=$1 dir=$2; shift 2
    mkdir -p "$dir"
    case $kind in
        sluice|base)
            "$(binary "$kind")" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --log-level warning \
                --max-request-size 4194304 --num-partitions 3 "$@" > "$dir.log" 2>&1 &
            PID=$!
            for _ in $(seq 1 500); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.01; done
            curl -sf -X POST "http://$API/v1/topics" -H 'Content-Type: application/json' -d '{"name":"bench","partitions":3}' >/dev/null ;;
        redis)
            redis-server --port "$REDIS" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync "$1" --save "" \
                --protected-mode no > "$dir.log" 2>&1 &
            PID=$!
            wait_port "$REDIS" ;;
        nats)
            nats-server -js -sd "$dir" -a 127.0.0.1 -p "$NATS" > "$dir.log" 2>&1 &
            PID=$!
            wait_port "$NATS"
            "$WORK/peerload" nats-setup "127.0.0.1:$NATS" ;;
    esac
}

stored_events() {  # kind → events the server holds
    case $1 in
        sluice|base) sluice_stored_events "$API" ;;
        redis) redis-cli -p "$REDIS" XLEN bench ;;
        nats) "$WORK/peerload" nats-count "127.0.0.1:$NATS" | cut -d' ' -f1 ;;
    esac
}

stop_server() {  # kind
    case $1 in
        redis) redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || kill -TERM "$PID" ;;
        *) kill -TERM "$PID" ;;
    esac
    wait "$PID" 2>/dev/null || true
}

# One measured run: kind, load target, batch, data dir, server settings…
# Appends "acked/s stored/s cpu_us_per_event rss_mib disk_bytes_per_event p50_ms p99_ms" to $WORK/$ROW-$kind.
measure() {
    local kind=$1 batch=$2 dir=$3; shift 3
    start_server "$kind" "$dir" "$@"
    local before; before=$(ticks "$PID")
    local client=$kind; [ "$kind" = base ] && client=sluice
    local out; out=$("$WORK/peerload" "$client" "$( [ "$client" = sluice ] && echo "$API" || { [ "$kind" = redis ] && echo "127.0.0.1:$REDIS" || echo "127.0.0.1:$NATS"; } )" \
        "$WORK/events.jsonl" "$CONNECTIONS" "$batch" "$SECONDS_PER_RUN")
    local after; after=$(ticks "$PID")
    local stored; stored=$(stored_events "$kind")
    local rss; rss=$(rss_kib "$PID")
    stop_server "$kind"
    local disk; disk=$(du -sb "$dir" | cut -f1)
    local acked duration p50 p99
    acked=$(sed -E 's/.*acked=([0-9]+).*/\1/' <<<"$out"); duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$out")
    p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$out"); p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out")
    local hz; hz=$(getconf CLK_TCK)
    awk -v a="$acked" -v s="$stored" -v d="$duration" -v t=$((after - before)) -v hz="$hz" -v r="$rss" -v b="$disk" -v p50="$p50" -v p99="$p99" \
        'BEGIN { printf "%.0f %.0f %.1f %.1f %.0f %.1f %.1f\n", a/(d/1e6), s/(d/1e6), (s ? t*1e6/hz/s : 0), r/1024, (s ? b/s : 0), p50/1000, p99/1000 }' \
        >> "$WORK/$ROW-$kind"
    rm -rf "$dir"
}

column() { cut -d' ' -f"$1" "$WORK/$ROW-$2" | median; }   # field, kind (of row $ROW)
# Field $1 of BIN over BASE_BIN, run by run (row $ROW), and the median of those ratios.
paired() { paste -d' ' <(cut -d' ' -f"$1" "$WORK/$ROW-sluice") <(cut -d' ' -f"$1" "$WORK/$ROW-base") | awk '{ printf "%.3f\n", ($2 ? $1 / $2 : 0) }' | median | awk '{ printf "%.2f×", $1 }'; }
builds=()

echo "## Sluice beside its peers ($RUNS interleaved runs of ${SECONDS_PER_RUN} s, $CONNECTIONS connections, medians)"
echo
echo "| row | server | acked events/s | stored events/s | server CPU µs/event | RSS MiB | disk B/event | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
ratios=()
server_label() {  # kind, Sluice's label, Redis's appendfsync setting
    case $1 in
        sluice) echo "$2" ;;
        base) echo "Sluice BASE_BIN=$BASE_BIN (the same settings)" ;;
        redis) echo "Redis 7 Streams (appendfsync $3)" ;;
        nats) echo "NATS JetStream 2.9 (file store)" ;;
    esac
}
row() {  # name, batch, peer kind, peer setting, sluice settings…
    ROW=$1; local batch=$2 peer=$3 peer_setting=$4; shift 4
    [[ "$ROW" =~ ${ROWS:-.} ]] || return 0
    for run in $(seq 1 "$RUNS"); do
        measure sluice "$batch" "$WORK/data-$ROW-sluice-$run" "$@"
        [ -z "$BASE_BIN" ] || measure base "$batch" "$WORK/data-$ROW-base-$run" "$@"
        if [ "$peer" = redis ]; then measure redis "$batch" "$WORK/data-$ROW-redis-$run" "$peer_setting"; else measure nats "$batch" "$WORK/data-$ROW-nats-$run"; fi
    done
    for kind in sluice $([ -n "$BASE_BIN" ] && echo base) "$peer"; do
        local label; label=$(server_label "$kind" "Sluice ($*)" "$peer_setting")
        echo "| $ROW | $label | $(column 1 "$kind") | $(column 2 "$kind") | $(column 3 "$kind") | $(column 4 "$kind") | $(column 5 "$kind") | $(column 6 "$kind") | $(column 7 "$kind") |"
    done
    # Per run, the two builds took turns within minutes of each other: the median of their per-run ratios.
    [ -z "$BASE_BIN" ] || builds+=("| $ROW | $(paired 2) | $(paired 3) | $(paired 4) | $(paired 7) |")
    ratios+=("| $ROW | $(awk -v a="$(column 2 sluice)" -v b="$(column 2 "$peer")" 'BEGIN{printf "%.2f×", a/b}') | $(awk -v a="$(column 3 sluice)" -v b="$(column 3 "$peer")" 'BEGIN{printf "%.1f×", a/b}') | $(awk -v a="$(column 4 sluice)" -v b="$(column 4 "$peer")" 'BEGIN{printf "%.1f×", a/b}') | $(awk -v a="$(column 5 sluice)" -v b="$(column 5 "$peer")" 'BEGIN{printf "%.2f×", a/b}') |")
}

row "fsync before ack, 1 event per request" 1 redis always --acks all --compression-type gzip
row "fsync before ack, 1 event per request, linger.ms=0" 1 redis always --acks all --compression-type gzip --linger-ms 0
row "fsync before ack, batches of 100" 100 redis always --acks all --compression-type gzip
row "fsync before ack, batches of 100, no compression" 100 redis always --acks all --compression-type none
row "no fsync before ack, batches of 100" 100 nats - --acks 1 --enable-idempotence false --compression-type gzip

if [ ${#ratios[@]} -gt 0 ]; then
echo
echo "| row | Sluice ÷ peer, stored events/s | CPU per event | RSS | disk per event |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ratios[@]}"
fi
if [ ${#builds[@]} -gt 0 ]; then
echo
echo "BIN ($BIN) ÷ BASE_BIN ($BASE_BIN), medians of the per-run ratios:"
echo
echo "| row | stored events/s | server CPU µs/event | RSS | p99 |"
echo "|---|---|---|---|---|"
printf '%s\n' "${builds[@]}"
fi

# Footprint at rest. Readiness is polled about every millisecond from this shell with bash's /dev/tcp (no curl or
# nc; each poll still forks a subshell and `sleep`, the same for all three servers): Sluice's /readyz answering 200,
# the peers' port accepting connections.
http_status() {  # port path → the status code, or nothing
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 0
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    local line; read -r line <&3 || true; exec 3<&-
    echo "${line:9:3}"
}
footprint_one() {  # kind, data dir → appends "ready_ms rss_mib anon_mib file_mib" to $WORK/footprint-$kind
    local kind=$1 dir=$2 start ready
    mkdir -p "$dir"
    start=$(date +%s%N)
    case $kind in
        sluice|base)
            # The README's defaults, the Kafka listener included (on a port of its own).
            "$(binary "$kind")" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --kafka-address 127.0.0.1:19482 \
                > "$dir.log" 2>&1 &
            PID=$!
            until [ "$(http_status "${METRICS##*:}" /readyz)" = 200 ]; do sleep 0.001; done ;;
        redis)
            redis-server --port "$REDIS" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync always --save "" > "$dir.log" 2>&1 &
            PID=$!
            until (exec 3<>"/dev/tcp/127.0.0.1/$REDIS") 2>/dev/null; do sleep 0.001; done ;;
        nats)
            nats-server -js -sd "$dir" -a 127.0.0.1 -p "$NATS" > "$dir.log" 2>&1 &
            PID=$!
            until (exec 3<>"/dev/tcp/127.0.0.1/$NATS") 2>/dev/null; do sleep 0.001; done ;;
    esac
    ready=$(date +%s%N)
    sleep 2
    [ "$kind" = redis ] || [ "$kind" = nats ] || curl -sf "$METRICS/metrics" >/dev/null
    awk -v ms=$(( (ready - start) / 1000000 )) '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {printf "%d %.1f %.1f %.1f\n", ms, r/1024, a/1024, f/1024}' \
        "/proc/$PID/status" >> "$WORK/footprint-$kind"
    stop_server "$kind"
    rm -rf "$dir"
}
if [[ footprint =~ ${ROWS:-.} ]]; then
    for run in $(seq 1 "$RUNS"); do
        for kind in sluice $([ -n "$BASE_BIN" ] && echo base) redis nats; do footprint_one "$kind" "$WORK/footprint-$kind-$run"; done
    done
    echo
    echo "Footprint at rest (empty data directory, medians of $RUNS starts):"
    echo
    echo "| server | start to ready ms | RSS MiB 2 s after ready | of it anonymous MiB | of it mapped files MiB |"
    echo "|---|---|---|---|---|"
    ROW=footprint
    for kind in sluice $([ -n "$BASE_BIN" ] && echo base) redis nats; do
        echo "| $(server_label "$kind" "Sluice ($BIN, default settings)" always) | $(column 1 "$kind") | $(column 2 "$kind") | $(column 3 "$kind") | $(column 4 "$kind") |"
    done
fi
