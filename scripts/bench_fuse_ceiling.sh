#!/usr/bin/env bash
# FUSE ceiling: runs ../shared/bench/fsbench.sh, in alternating rounds, on a
# local directory, on go-fuse's loopback of a directory on the same disk,
# and on the same loopback with FUSE passthrough; with KELP_MOUNT set, on
# that Kelp mount as well. Prints each figure's median and its ratio to
# local. The loopback shows what FUSE through go-fuse costs by itself on
# this machine (see docs/benchmarks.md, "The FUSE ceiling").
# Needs root (passthrough, drop_caches), fio and python3.
# Knobs: ROUNDS (3), BASE (/var/tmp), FSBENCH (../shared/bench/fsbench.sh),
# KELP_MOUNT, and fsbench's own FSBENCH_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
fsbench=${FSBENCH:-../shared/bench/fsbench.sh}
work=$(mktemp -d "${BASE:-/var/tmp}/kelp-ceiling.XXXXXX")
log=$work/fsbench.log
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/fuseceiling" ./integration/fuseceiling
mkdir -p "$work/local" "$work/src" "$work/lb" "$work/srcpt" "$work/lbpt"
"$work/fuseceiling" "$work/src" "$work/lb" & pids+=($!)
"$work/fuseceiling" -passthrough "$work/srcpt" "$work/lbpt" & pids+=($!)
for d in lb lbpt; do
	for _ in $(seq 100); do mountpoint -q "$work/$d" && break; sleep 0.1; done
	mountpoint -q "$work/$d" || { echo "fuseceiling did not mount $work/$d" >&2; exit 1; }
done
targets=("local:$work/local" "loopback:$work/lb" "passthrough:$work/lbpt")
if [ -n "${KELP_MOUNT:-}" ]; then targets+=("kelp:$KELP_MOUNT"); fi
for r in $(seq "$rounds"); do
	for t in "${targets[@]}"; do
		bash "$fsbench" "${t#*:}" "${t%%:*}-$r" | tee -a "$log"
	done
done
python3 - "$log" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) < 3:
        continue
    who = p[0].rsplit("-", 1)[0]
    if p[1] not in order:
        order.append(p[1])
    vals[who][p[1]].append(float(p[2]))
print("| | " + " | ".join(order) + " |")
print("|---" * (len(order) + 1) + "|")
for who in vals:
    cells = []
    for m in order:
        v = statistics.median(vals[who][m])
        l = statistics.median(vals["local"][m])
        ratio = l / v if m.startswith("readdir") else v / l  # readdir is in ms: lower is better
        num = f"{v:.1f}" if v < 100 else f"{v:.0f}"
        cells.append(num + ("" if who == "local" else f" ({ratio:.2f})"))
    print(f"| {who} | " + " | ".join(cells) + " |")
PY
