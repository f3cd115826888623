#!/usr/bin/env bash
# Filer metadata benchmark: starts a fresh one-machine cluster (`kelp server`)
# in a temporary directory on free ports, runs `kelp benchmark -filer` against
# it, then measures the metadata store's bytes per inode:
#   1. stop the server cleanly (badger flushes its memtables and trims its
#      preallocated files on close) and take du -sb DIR/filer;
#   2. start it again, run `kelp benchmark -filer -keep` (the same phases
#      minus unlink and cleanup, so BENCH_N files stay), stop it cleanly and
#      take du -sb DIR/filer again; the difference over BENCH_N is the figure.
# Knobs: BENCH_N (20000), BENCH_C (16), BENCH_ARGS, BENCH_SERVER_ARGS,
# BENCH_MASTER_PORT, BENCH_VOLUME_PORT, BENCH_FILER_PORT (each gRPC port is
# the HTTP port + 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
kelp=${KELP:-bin/kelp}
n=${BENCH_N:-20000} c=${BENCH_C:-16}
dir=$(mktemp -d /tmp/kelp-bench-filer.XXXXXX)
mport=${BENCH_MASTER_PORT:-19533} vport=${BENCH_VOLUME_PORT:-18280} fport=${BENCH_FILER_PORT:-18988}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -n "$pid" ] && wait $pid 2>/dev/null; rm -rf "$dir"' EXIT

start() {
	"$kelp" server -dir "$dir" -ip 127.0.0.1 -master.port "$mport" -volume.port "$vport" \
		-filer.port "$fport" -log.level warn ${BENCH_SERVER_ARGS:-} >>"$dir/server.log" 2>&1 &
	pid=$!
	for _ in $(seq 300); do
		curl -fsS -o /dev/null "http://127.0.0.1:$fport/" 2>/dev/null && return 0
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	echo "kelp server did not come up; its log:" >&2
	cat "$dir/server.log" >&2
	exit 1
}

stop() {
	kill -TERM $pid
	wait $pid || { echo "kelp server exited with $? on SIGTERM; its log:" >&2; cat "$dir/server.log" >&2; exit 1; }
	pid=
}

start
"$kelp" benchmark -filer "127.0.0.1:$fport" -n "$n" -c "$c" ${BENCH_ARGS:-}

stop
before=$(du -sb "$dir/filer" | cut -f1)
start
"$kelp" benchmark -filer "127.0.0.1:$fport" -n "$n" -c "$c" -keep ${BENCH_ARGS:-} >"$dir/keep.out" ||
	{ cat "$dir/keep.out"; exit 1; }
stop
after=$(du -sb "$dir/filer" | cut -f1)
echo
echo "------------ Metadata store size ------------"
echo "DIR/filer after a clean stop:        $before bytes"
echo "after $n more files (-keep), stop:   $after bytes"
awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "Bytes per inode:                     %.1f\n", (a - b) / n }'
