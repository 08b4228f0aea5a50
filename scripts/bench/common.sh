# Helpers the bench scripts share; sourced, not run.

# Installs the Debian packages named in the array `missing` (if any), quietly.
install_missing() {
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "installing ${missing[*]} ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Events stored in topic `bench` of the agent whose API is at $1 (host:port): the sum of its log end offsets.
sluice_stored_events() {
    curl -sf "http://$1/v1/topics/bench" | python3 -c 'import json,sys; print(sum(p["log_end_offset"] for p in json.load(sys.stdin)["partitions"]))'
}

# CPU ticks (user + system) process $1 has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The peers' client and events, for the scripts that load the agent over HTTP: installs what is in `missing` plus
# libnats and a C compiler when absent, checks the release build at $BIN, builds scripts/bench/peerload.c into
# $WORK/peerload and writes 20,000 benchmark events to $WORK/events.jsonl.
prepare_peerload() {
    [ -e /usr/include/nats/nats.h ] || missing+=(libnats-dev)
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    install_missing
    [ -x "$BIN" ] || { echo "no release build at $BIN: run ./scripts/serve once, or set BIN" >&2; exit 2; }
    cc -O2 -o "$WORK/peerload" scripts/bench/peerload.c -lnats -lpthread
    python3 scripts/bench/events.py 20000 > "$WORK/events.jsonl"
}
