#!/usr/bin/env bash
# stat floor: times fsbench's stat loop (os.stat over N names, from
# Python) on a local directory and on integration/statfloor, a FUSE
# filesystem that does no work, served through go-fuse, through a
# one-thread /dev/fuse loop and through FUSE over io_uring, in alternating
# rounds; with KELP_MOUNT set, on N files just written through that Kelp
# mount as well (rewritten before each round, as fsbench stats files it
# has just written). Prints each target's median and its ratio to local:
# no FUSE filesystem answers a stat after a write faster than statfloor on
# the same transport (see docs/benchmarks.md, "The stat floor").
# Needs root (mount(2); it turns the fuse module's enable_uring on for the
# run and restores it) and python3.
# Knobs: ROUNDS (5), FILES (5000), BASE (/var/tmp), KELP_MOUNT.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
files=${FILES:-5000}
param=/sys/module/fuse/parameters/enable_uring
work=$(mktemp -d "${BASE:-/var/tmp}/kelp-statfloor.XXXXXX")
log=$work/stat.log
pids=()
old_uring=
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$old_uring" ]; then echo "$old_uring" >"$param"; fi
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/statfloor" ./integration/statfloor
transports=(gofuse dev)
if [ -w "$param" ]; then
	old_uring=$(cat "$param")
	echo Y >"$param"
	transports+=(uring)
else
	echo "no FUSE over io_uring here ($param not writable): skipping the uring transport" >&2
fi
mkdir -p "$work/local"
python3 -c 'import sys
for i in range(int(sys.argv[2])): open(f"{sys.argv[1]}/f{i}", "wb").write(b"\0" * 4096)' "$work/local" "$files"
targets=("local:$work/local")
for tr in "${transports[@]}"; do
	mkdir -p "$work/$tr"
	"$work/statfloor" -transport "$tr" -files "$files" "$work/$tr" & pids+=($!)
	for _ in $(seq 100); do mountpoint -q "$work/$tr" && break; sleep 0.1; done
	mountpoint -q "$work/$tr" || { echo "statfloor did not mount $work/$tr" >&2; exit 1; }
	targets+=("$tr:$work/$tr")
done
if [ -n "${KELP_MOUNT:-}" ]; then
	mkdir -p "$KELP_MOUNT/statfloor.$$"
	targets+=("kelp:$KELP_MOUNT/statfloor.$$")
fi
for r in $(seq "$rounds"); do
	for t in "${targets[@]}"; do
		python3 - "${t#*:}" "$files" "${t%%:*}" <<'PY' | tee -a "$log"
import os, sys, time
d, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if label == "kelp":  # fresh writes: the kernel drops the attributes
    buf = os.urandom(4096)
    for i in range(n):
        with open(f"{d}/f{i}", "wb") as f: f.write(buf)
t = time.perf_counter()
for i in range(n): os.stat(f"{d}/f{i}")
print(f"{label} stat {n / (time.perf_counter() - t):.0f}")
PY
	done
done
if [ -n "${KELP_MOUNT:-}" ]; then rm -rf "$KELP_MOUNT/statfloor.$$"; fi
python3 - "$log" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, _, v = line.split()
    vals[who].append(float(v))
local = statistics.median(vals["local"])
print("| | stat/s (median) | µs per stat | ratio to local | runs |")
print("|---|---|---|---|---|")
for who, vs in vals.items():
    m = statistics.median(vs)
    print(f"| {who} | {m:.0f} | {1e6 / m:.1f} | {m / local:.2f} | {', '.join(f'{v:.0f}' for v in vs)} |")
PY
