#!/usr/bin/env bash
# Run `suanli sim` on every scenario in the repository and check each output with an independent
# implementation of MODEL.md: the checker the project was given with its model (`checker.py`, not
# part of this repository and needed by nothing in it; docs/DATA.md). By hand, outside the tests.
#   CHECKER=/path/to/checker.py scripts/check_outputs.sh [POLICY]        (default fifo)
set -uo pipefail
cd "$(dirname "$0")/.."
policy=${1:-fifo}
checker=${CHECKER:-}
if [ -z "$checker" ] || [ ! -f "$checker" ]; then
    echo "check_outputs: set CHECKER to the MODEL.md checker's checker.py (got '${checker}'); docs/DATA.md" >&2
    exit 2
fi
py=${PYTHON:-.venv/bin/python}
suanli=${SUANLI:-.venv/bin/suanli}
out=$(mktemp -d)
fail=0
for s in src/suanli/examples/east-west.yaml bench/scenarios/public/*/scenario.yaml bench/scenarios/*.yaml tests/data/*.yaml; do
    [ -f "$s" ] || continue
    d="$out/$(echo "$s" | tr '/.' '__')"
    if ! "$suanli" sim "$s" --policy "$policy" --out "$d" --quiet; then
        echo "FAIL sim $s"; fail=1; continue
    fi
    line=$("$py" "$checker" "$s" "$d" | tail -1)
    printf '%-55s %s\n' "$s" "$line"
    case "$line" in "valid=yes metrics=match"*) ;; *) fail=1 ;; esac
done
rm -rf "$out"
exit $fail
