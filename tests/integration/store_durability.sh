#!/usr/bin/env bash
# Durability of acknowledged writes: a writer that prints "ACK i" only after store_put
# returned 0 is SIGKILLed mid-stream, three times with different delays, on the same store
# directory (so each round also reopens a store left by a killed process). After each kill
# every acknowledged key must be present with its value, and the digests must match the
# records (store_verify): a crash never leaves them out of step.
#
# Usage: store_durability.sh PATH/TO/store_writer
# What this does not cover: power loss. SIGKILL leaves the page cache intact; the fsync half
# of the guarantee rests on LMDB's commit (see docs/storage.md).
set -euo pipefail

writer=${1:?usage: store_durability.sh PATH/TO/store_writer}
[ -x "$writer" ] || { echo "store_durability: $writer is not executable" >&2; exit 2; }

work=$(mktemp -d /tmp/popmesh-durability-XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

store="$work/store"
mkdir "$store"
acks="$work/acks"
: >"$acks"

round=0
for delay in 0.4 0.9 1.3; do
  round=$((round + 1))
  out="$work/round$round"
  # Plenty of keys so the writer is still writing when the kill lands.
  "$writer" "$store" 100000000 >"$out" 2>"$out.err" &
  pid=$!
  sleep "$delay"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "store_durability: writer exited before the kill:" >&2
    cat "$out.err" >&2
    exit 1
  fi
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  # Only complete lines are acknowledgements: a kill can land mid-line.
  n=$(wc -l <"$out")
  echo "round $round: killed after ${delay}s, $n writes acknowledged"
  if [ "$n" -lt 1 ]; then
    echo "store_durability: no write acknowledged in round $round" >&2
    cat "$out.err" >&2
    exit 1
  fi
  head -n "$n" "$out" >>"$acks"
  # Every acknowledgement of every round so far (later rounds rewrite the same keys with the
  # same values, so all of them must still hold).
  if ! "$writer" --check "$store" "$acks"; then
    echo "store_durability: acknowledged writes lost in round $round" >&2
    exit 1
  fi
done
echo "store_durability: ok"
