#!/usr/bin/env bash
# Blob-store benchmark: starts a fresh one-machine cluster (`kelp server`) in a
# temporary directory on free ports, runs `kelp benchmark` against it and stops
# it. Knobs: BENCH_N (100000), BENCH_C (16), BENCH_SIZE (1024), BENCH_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
kelp=${KELP:-bin/kelp}
n=${BENCH_N:-100000} c=${BENCH_C:-16} size=${BENCH_SIZE:-1024}
dir=$(mktemp -d /tmp/kelp-bench.XXXXXX)
mport=${BENCH_MASTER_PORT:-19433} vport=${BENCH_VOLUME_PORT:-18180}
"$kelp" server -dir "$dir" -ip 127.0.0.1 -master.port "$mport" -volume.port "$vport" \
	-log.level warn ${BENCH_SERVER_ARGS:-} >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$mport/dir/assign" >/dev/null 2>&1 && break
	sleep 0.1
done
"$kelp" benchmark -master "127.0.0.1:$mport" -n "$n" -c "$c" -size "$size" ${BENCH_ARGS:-}
