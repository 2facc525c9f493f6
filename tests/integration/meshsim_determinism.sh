#!/usr/bin/env bash
# tools/meshsim is the simulator the gossip numbers come from: the same seed must give the same
# run, byte for byte (apart from the wall-clock line), and a crash must be detected.
set -euo pipefail
SIM=${MESHSIM:?MESHSIM must point to the meshsim binary}
a=$("$SIM" --nodes 100 --seed 7 --loss 0.05 --scenario crash | grep -v "s wall")
b=$("$SIM" --nodes 100 --seed 7 --loss 0.05 --scenario crash | grep -v "s wall")
c=$("$SIM" --nodes 100 --seed 8 --loss 0.05 --scenario crash | grep -v "s wall")
[ "$a" = "$b" ] || { echo "FAIL: same seed, different runs:"; diff <(echo "$a") <(echo "$b"); exit 1; }
[ "$a" != "$c" ] || { echo "FAIL: different seeds gave identical runs (is the seed used?)"; exit 1; }
echo "$a" | grep -q "DEAD known by 99.99% after" || { echo "FAIL: no crash detection in: $a"; exit 1; }
echo "$a" | grep -q "false DEAD declarations: 0" || { echo "FAIL: false deaths at 5% loss: $a"; exit 1; }
echo "meshsim_determinism: 4 checks passed"
