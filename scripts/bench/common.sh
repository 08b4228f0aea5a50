# Helpers the bench scripts share; sourced, not run.

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Events stored in topic `bench` of the agent whose API is at $1 (host:port): the sum of its log end offsets.
sluice_stored_events() {
    curl -sf "http://$1/v1/topics/bench" | python3 -c 'import json,sys; print(sum(p["log_end_offset"] for p in json.load(sys.stdin)["partitions"]))'
}
