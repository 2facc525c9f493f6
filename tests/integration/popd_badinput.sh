#!/usr/bin/env bash
# Bad control requests against a live popd (the cases are in popd_badinput.py).
source "$(dirname "$0")/lib.sh"
D="$WORK/n1"
init_node "$D" pop-bad
start_popd "$D"
"$PY" "$(dirname "$0")/popd_badinput.py" "$D/control.sock"
expect_rc 0 "$MESHCTL" -d "$D" --json status
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["control"]["bad_requests"] >= 20, j' "$WORK/out"
ok "popd counted the bad requests"
done_testing
