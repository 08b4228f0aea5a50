#!/usr/bin/env bash
# The Kafka listener benchmark for BENCHMARKS.md: produce and consume throughput with a librdkafka client
# (scripts/bench/kafkaload.c) on loopback, ~1 KiB events, acks 1 and all, uncompressed and gzip; beside, in the
# same run, the HTTP batch path (peerload, batches of 100) and the in-process ceiling on the very batches the
# client produced (`sluice bench batches`: the log's append and whole-batch reads, no network). Fetch is measured
# twice: with librdkafka, which parses every record, and with rawfetch.c, which only walks batch headers (the
# rate the agent can send at), reading the topic 5 times over on one connection; the in-process figures are
# medians of 3 runs within each run. Produce is measured twice too: with librdkafka, which builds and compresses
# every batch on the same 2 cores, and with rawproduce.c, which sends batches built before its clock starts (the
# rate the agent can take in), to a fresh agent; the in-process append is of librdkafka's batches.
# Usage: scripts/bench/kafka.sh [RUNS] [RECORDS]   (defaults 3 and 200000; BIN= the release binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
RECORDS=${2:-200000}
BIN=${BIN:-.build-release/release/sluice}
WORK=$(mktemp -d)
cleanup() {
    [ -n "${PID:-}" ] && kill -TERM "$PID" 2>/dev/null || true
    sleep 0.2
    rm -rf "$WORK"
}
trap cleanup EXIT

source scripts/bench/common.sh
missing=()
[ -e /usr/include/librdkafka/rdkafka.h ] || missing+=(librdkafka-dev)
[ -e /usr/include/nats/nats.h ] || missing+=(libnats-dev)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
install_missing
[ -x "$BIN" ] || { echo "no release build at $BIN: run ./scripts/serve once, or set BIN" >&2; exit 2; }
cc -O2 -o "$WORK/kafkaload" scripts/bench/kafkaload.c -lrdkafka
cc -O2 -o "$WORK/peerload" scripts/bench/peerload.c -lnats -lpthread
cc -O2 -o "$WORK/rawfetch" scripts/bench/rawfetch.c
cc -O2 -o "$WORK/rawproduce" scripts/bench/rawproduce.c -lz
python3 scripts/bench/events.py 20000 > "$WORK/events.jsonl"

API=127.0.0.1:17490 METRICS=127.0.0.1:19490 KAFKA=127.0.0.1:19492

start_agent() {  # data-dir, settings…
    local dir=$1; shift
    "$BIN" serve --data-dir "$dir" --api-address "$API" --metrics-address "$METRICS" --kafka-address "$KAFKA" --log-level warning \
        --max-request-size 4194304 --num-partitions 3 "$@" > "$dir.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 500); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.01; done
    curl -sf -X POST "http://$API/v1/topics" -H 'Content-Type: application/json' -d '{"name":"bench","partitions":3}' >/dev/null
}
stop_agent() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
field() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$2"; }
per_second() { awk -v n="$1" -v us="$2" 'BEGIN{printf "%.0f", n/(us/1e6)}'; }
mb_per_second() { awk -v n="$1" -v us="$2" 'BEGIN{printf "%.1f", n/(us/1e6)/1e6}'; }

echo "## Kafka listener: librdkafka $(awk '/define RD_KAFKA_VERSION /{printf "0x%s", substr($3,3)}' /usr/include/librdkafka/rdkafka.h) client on loopback, $RECORDS records of ~1.1 KiB per run, medians of $RUNS runs"
echo
echo "| acks | codec | Kafka produce records/s | MB/s | raw Produce records/s | in-process append records/s (same batches) | produce ÷ append | raw Produce ÷ append | HTTP batch-of-100 events/s | Kafka ÷ HTTP | Kafka fetch records/s (librdkafka) | raw Fetch records/s | in-process batch read records/s | raw Fetch ÷ read |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for acks in 1 all; do
  for codec in none gzip; do
    produced=(); rawp=(); mbs=(); appended=(); fetched=(); raw=(); scanned=(); httpeps=()
    for run in $(seq 1 "$RUNS"); do
      dir="$WORK/k-$acks-$codec-$run"
      start_agent "$dir"
      out=$("$WORK/kafkaload" produce "$KAFKA" bench "$WORK/events.jsonl" "$RECORDS" "$acks" "$codec")
      [ "$(field errors "$out")" = 0 ] || { echo "produce errors: $out" >&2; exit 1; }
      produced+=("$(per_second "$(field records "$out")" "$(field duration_us "$out")")")
      mbs+=("$(mb_per_second "$(field bytes "$out")" "$(field duration_us "$out")")")
      [ "$(sluice_stored_events "$API")" = "$RECORDS" ] || { echo "the topic does not hold $RECORDS records" >&2; exit 1; }
      sync  # the produced pages are written back now, not by the kernel in the middle of the fetches
      out=$("$WORK/kafkaload" consume "$KAFKA" bench "$RECORDS")
      fetched+=("$(per_second "$(field records "$out")" "$(field duration_us "$out")")")
      out=$("$WORK/rawfetch" "${KAFKA%:*}" "${KAFKA##*:}" bench 3 "$RECORDS" 5)
      [ "$(field records "$out")" = "$((5 * RECORDS))" ] || { echo "rawfetch read $out" >&2; exit 1; }
      raw+=("$(per_second "$(field records "$out")" "$(field duration_us "$out")")")
      stop_agent
      out=$("$BIN" bench batches --data-dir "$dir" --topic bench --runs 3 --dir "$WORK/replay")
      appended+=("$(per_second "$(field records "$out")" "$(field append_us "$out")")")
      scanned+=("$(per_second "$(field records "$out")" "$(field scan_us "$out")")")
      rm -rf "$dir"
      sync  # as for the in-process append: not in the middle of the writeback of what came before
      start_agent "$dir"
      out=$("$WORK/rawproduce" "${KAFKA%:*}" "${KAFKA##*:}" bench 3 "$WORK/events.jsonl" "$RECORDS" "$acks" "$codec")
      [ "$(field errors "$out")" = 0 ] || { echo "raw produce errors: $out" >&2; exit 1; }
      [ "$(sluice_stored_events "$API")" = "$RECORDS" ] || { echo "the topic does not hold $RECORDS records after rawproduce" >&2; exit 1; }
      rawp+=("$(per_second "$(field records "$out")" "$(field duration_us "$out")")")
      stop_agent
      rm -rf "$dir"
      # The HTTP batch path beside it: the agent's acks setting, batches of 100, 32 connections, 5 s.
      idem=false; [ "$acks" = all ] && idem=true
      start_agent "$WORK/h-$acks-$codec-$run" --acks "$acks" --enable-idempotence "$idem" \
          --compression-type "$([ "$codec" = none ] && echo none || echo gzip)"
      "$WORK/peerload" sluice "$API" "$WORK/events.jsonl" 32 100 5 > /dev/null
      stored=$(sluice_stored_events "$API")
      stop_agent
      rm -rf "$WORK/h-$acks-$codec-$run"
      httpeps+=("$(awk -v s="$stored" 'BEGIN{printf "%.0f", s/5}')")
    done
    p=$(printf '%s\n' "${produced[@]}" | median); rp=$(printf '%s\n' "${rawp[@]}" | median); a=$(printf '%s\n' "${appended[@]}" | median)
    f=$(printf '%s\n' "${fetched[@]}" | median); r=$(printf '%s\n' "${raw[@]}" | median); s=$(printf '%s\n' "${scanned[@]}" | median)
    h=$(printf '%s\n' "${httpeps[@]}" | median)
    echo "| $acks | $codec | $p | $(printf '%s\n' "${mbs[@]}" | median) | $rp | $a | $(awk -v x="$p" -v y="$a" 'BEGIN{printf "%.0f%%", 100*x/y}') | $(awk -v x="$rp" -v y="$a" 'BEGIN{printf "%.0f%%", 100*x/y}') | $h | $(awk -v x="$p" -v y="$h" 'BEGIN{printf "%.1f×", x/y}') | $f | $r | $s | $(awk -v x="$r" -v y="$s" 'BEGIN{printf "%.0f%%", 100*x/y}') |"
  done
done
