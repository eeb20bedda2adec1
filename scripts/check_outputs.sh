#!/usr/bin/env bash
# Run `suanli sim` on every scenario we know and check each output with the independent
# checker of ../shared/tools (by hand, outside the test suite: the tests must not need ../shared).
#   scripts/check_outputs.sh [POLICY]        (default fifo)
set -uo pipefail
cd "$(dirname "$0")/.."
policy=${1:-fifo}
shared=${SHARED:-../shared}
py=${PYTHON:-.venv/bin/python}
suanli=${SUANLI:-.venv/bin/suanli}
out=$(mktemp -d)
fail=0
for s in src/suanli/examples/east-west.yaml "$shared"/scenarios/*/scenario.yaml bench/scenarios/*.yaml tests/data/*.yaml; do
    [ -f "$s" ] || continue
    d="$out/$(echo "$s" | tr '/.' '__')"
    if ! "$suanli" sim "$s" --policy "$policy" --out "$d" --quiet; then
        echo "FAIL sim $s"; fail=1; continue
    fi
    line=$("$py" "$shared/tools/checker.py" "$s" "$d" | tail -1)
    printf '%-55s %s\n' "$s" "$line"
    case "$line" in "valid=yes metrics=match"*) ;; *) fail=1 ;; esac
done
rm -rf "$out"
exit $fail
