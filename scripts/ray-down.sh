#!/usr/bin/env bash
# Stop the Ray head scripts/ray-up.sh started (`ray stop`: Ray's own way; it stops the Ray
# processes of this host, so run one Ray per host in CI).
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
"$VENV/bin/ray" stop >/dev/null 2>&1 || true
