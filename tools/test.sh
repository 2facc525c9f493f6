#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is needed, builds with
# -Wall -Wextra -Werror under AddressSanitizer + UndefinedBehaviorSanitizer, runs every unit,
# integration and fuzz-replay test, then builds the libFuzzer harnesses with clang and fuzzes
# each decoder for a bounded time. Exits non-zero on any failure.
#
#   tools/test.sh              everything
#   FUZZ_SECONDS=0 tools/test.sh   skip the libFuzzer stage (the replay tests still run)
set -euo pipefail
cd "$(dirname "$0")/.."

# 15 s per harness: with 35 harnesses the stage takes about 9 minutes, which keeps the whole
# suite near 20; the corpora in tests/fuzz/corpus/ are replayed by ctest on every run anyway,
# and longer runs are FUZZ_SECONDS=600 tools/test.sh.
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
JOBS=${JOBS:-$(nproc)}

bash tools/setup.sh

echo "== build: ASan + UBSan, -Werror (build-asan/)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPOPMESH_SANITIZE=ON -DPOPMESH_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"

# halt_on_error makes a UBSan report fail the test that triggered it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# Some warnings only appear with the optimiser on: build Release with -Werror too.
echo "== build: Release, -Werror (build-rel/)"
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release -DPOPMESH_WERROR=ON -DPOPMESH_TESTS=OFF >/dev/null
cmake --build build-rel -j"$JOBS" >/dev/null

echo "== tests (unit, integration, fuzz replay)"
rc=0
(cd build-asan && ctest --output-on-failure -j"$JOBS" --timeout 600) | tee build-asan/ctest.log || rc=1

# The README's main job, as a newcomer runs it: it must carry traffic through every PoP and
# the login must work across PoPs (the demo checks each step and exits 1 otherwise).
echo "== demo (tools/demo.sh on the Release build)"
if DEMO_BUILD="$PWD/build-rel" bash tools/demo.sh >build-rel/demo.log 2>&1; then
    echo "demo ok: $(grep -c 'hello from the backend' build-rel/demo.log) answers through the mesh"
else
    echo "DEMO FAIL (log: build-rel/demo.log)"
    tail -n 40 build-rel/demo.log
    rc=1
fi
bash tools/demo.sh stop >/dev/null 2>&1 || true

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    echo "== libFuzzer: each harness for ${FUZZ_SECONDS}s (clang, build-fuzz/)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOPMESH_SANITIZE=ON \
        -DPOPMESH_FUZZ=ON -DPOPMESH_WERROR=ON >/dev/null
    targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
    # shellcheck disable=SC2086
    cmake --build build-fuzz -j"$JOBS" --target $targets
    for t in $targets; do
        mkdir -p "build-fuzz/corpus/$t"
        if ! "build-fuzz/tests/$t" -max_total_time="$FUZZ_SECONDS" -max_len=70000 -timeout=5 \
            -print_final_stats=0 "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" \
            >"build-fuzz/$t.log" 2>&1; then
            echo "FUZZ FAIL: $t (log: build-fuzz/$t.log)"
            tail -n 40 "build-fuzz/$t.log"
            rc=1
        else
            echo "fuzz ok: $t ($(grep -o 'Done [0-9]* runs' "build-fuzz/$t.log" | tail -n1))"
        fi
    done
fi

if [ "$rc" -ne 0 ]; then
    echo "== FAILED"
    exit 1
fi
echo "== all tests passed"
