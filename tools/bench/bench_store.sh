#!/usr/bin/env bash
# Runs bench_store (tools/bench/bench_store.c) several times and prints the median of every
# metric, for popmesh's store and for raw LMDB measured in the same run, with their ratio.
#
#   tools/bench/bench_store.sh            build (Release, no sanitizers) in build-bench, run 5x
#   RUNS=9 tools/bench/bench_store.sh     more runs
#   BENCH_STORE=path/to/bench_store ...   use an existing binary, build nothing
#
# Data lives in a fresh directory under /tmp (same disk as the build on this machine) that
# bench_store removes when it finishes. Ratio = popmesh / raw: for ops/s higher is better and
# 1.0 is the ceiling; for ms lower is better. The ratio column is the median of the per-run
# ratios (each run measures both sides back to back), not the ratio of the medians.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
runs=${RUNS:-5}
bin=${BENCH_STORE:-}

if [ -z "$bin" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPOPMESH_SANITIZE=OFF \
    -DPOPMESH_WERROR=OFF -DPOPMESH_TESTS=OFF >/dev/null
  cmake --build "$build" --target bench_store -j2 >/dev/null
  bin=$build/tools/bench/bench_store
fi
[ -x "$bin" ] || { echo "bench_store.sh: $bin not found" >&2; exit 1; }

results=$(mktemp /tmp/popmesh-bench-results-XXXXXX)
trap 'rm -f "$results"' EXIT

for i in $(seq 1 "$runs"); do
  echo "run $i/$runs..." >&2
  "$bin" --tsv | sed "s/^/$i\t/" >>"$results"
done

echo "bench_store: median of $runs runs ($(uname -r), $(df -T /tmp | awk 'NR==2{print $2}') /tmp, $(nproc) cpus)"
awk -F'\t' '
  function median(arr, n,    i, j, t) {
    for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  {
    m = $2
    if (!(m in n)) { order[++metrics] = m; unit[m] = $5 }
    k = ++n[m]
    P[m, k] = $3; R[m, k] = $4; Q[m, k] = $3 / $4
  }
  END {
    printf "| %-14s | %12s | %12s | %-5s | %11s |\n", "metric", "popmesh", "raw lmdb", "unit", "popmesh/raw"
    printf "|%s|%s|%s|%s|%s|\n", "----------------", "--------------", "--------------", "-------", "-------------"
    for (x = 1; x <= metrics; x++) {
      m = order[x]
      for (k = 1; k <= n[m]; k++) { p[k] = P[m, k]; r[k] = R[m, k]; q[k] = Q[m, k] }
      printf "| %-14s | %12.1f | %12.1f | %-5s | %11.2f |\n", m, median(p, n[m]), median(r, n[m]), unit[m], median(q, n[m])
    }
  }' "$results"
