#!/usr/bin/env bash
# Regenerates scripts/link/sluice.order, the list of functions the agent runs from start to rest, which the
# release link (scripts/serve) places side by side at the front of .text. The kernel maps code in 64 KiB
# windows around each page touched; with these functions scattered over the 32 MB of code, an idle agent held
# ~19 MiB of it resident, and packed together ~5 MiB (BENCHMARKS.md, "Footprint").
#
# How: the release binary (without debug info, which valgrind cannot read) runs under valgrind's callgrind with
# the README's defaults and an empty data directory; once /readyz answers, /metrics and /healthz are fetched
# (what Prometheus and a probe do to an idle agent), it rests 10 s, and callgrind's counts are dumped. Every
# function that ran and is defined in the binary goes into the file, in the order of its address in the
# profiled binary (which keeps each module's functions together); names the binary defines more than once
# are left out (see below). Run it after changes that move start-up code
# (new modules, new services at start); stale names are harmless: the linker skips names it does not find.
# scripts/serve relinks once the file is newer than the binary.
#
# Usage: scripts/link/profile-order.sh   (needs the release build of scripts/serve; installs valgrind when missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.build-release/release/sluice}
command -v valgrind >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
strip --strip-debug -o "$WORK/sluice" "$BIN"
API=127.0.0.1:17490 METRICS=127.0.0.1:19490
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/callgrind.out" \
    "$WORK/sluice" serve --data-dir "$WORK/data" --api-address "$API" --metrics-address "$METRICS" \
    --kafka-address 127.0.0.1:19492 > "$WORK/agent.log" 2>&1 &
for _ in $(seq 1 600); do curl -sf "$METRICS/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$METRICS/readyz" >/dev/null || { echo "the agent did not become ready under valgrind" >&2; cat "$WORK/agent.log" >&2; exit 1; }
curl -sf "$METRICS/metrics" >/dev/null; curl -sf "$METRICS/healthz" >/dev/null; curl -sf "http://$API/healthz" >/dev/null || true
sleep 10
callgrind_control --dump "$WORK/sluice" >/dev/null
sleep 2
python3 - "$WORK" scripts/link/sluice.order <<'PY'
import bisect, glob, re, subprocess, sys
work, out = sys.argv[1], sys.argv[2]
address, spans, definitions = {}, [], {}
for line in subprocess.run(["nm", "-S", "--defined-only", f"{work}/sluice"], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tTwW":
        start = int(parts[0], 16)
        address.setdefault(parts[3], start)
        definitions[parts[3]] = definitions.get(parts[3], 0) + 1
        spans.append((start, start + int(parts[1], 16), parts[3]))
spans.sort()
starts = [span[0] for span in spans]
def symbol(name):
    """callgrind's name for a function → the binary's symbol: `name'2` is a recursion level of `name`; a bare
    address (code callgrind could not name) belongs to the symbol whose range holds it."""
    name = re.sub(r"'\d+$", "", name)
    if name in address: return name
    if re.fullmatch(r"0x[0-9a-f]+", name):
        at = int(name, 16); i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and spans[i][0] <= at < spans[i][1]: return spans[i][2]
    return None
names, ran = {}, set()
for path in glob.glob(f"{work}/callgrind.out*"):
    for line in open(path, errors="replace"):
        m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(2): names[m.group(1)] = m.group(2)
            found = symbol(names[m.group(1)])
            if found: ran.add(found)
# A name defined more than once (a local helper such as `$sSqwxx`, which many modules each have) would
# bring every section that defines it to the front, among them whole prebuilt libraries that were not
# compiled a function per section (the Swift runtime's regex parser, 0.5 MB): such names are left out.
ordered = sorted((n for n in ran if definitions[n] == 1), key=address.get)
open(out, "w").write("".join(n + "\n" for n in ordered))
print(f"{out}: {len(ordered)} functions")
PY
