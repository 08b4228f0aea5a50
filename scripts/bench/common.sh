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
