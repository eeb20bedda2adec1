#!/usr/bin/env bash
# A Ray head on 127.0.0.1 with fake GPUs declared as a GPU type (adapted from a tested recipe):
# --num-gpus=8 --resources='{"a800": 8}' stands for site west-1 of tests/service/data/network.yaml.
# Needs ray[default] in $VENV (default .venv). Dashboard / Job API: http://127.0.0.1:$RAY_DASHBOARD_PORT
# (default 8265), GCS on $RAY_PORT (default 6379); state and logs in $RAY_TMP (default /tmp/suanli-ray).
# Stop it with scripts/ray-down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
RAY_TMP=${RAY_TMP:-/tmp/suanli-ray}
RAY_PORT=${RAY_PORT:-6379}
DASH=${RAY_DASHBOARD_PORT:-8265}
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0     # keep 127.0.0.1 (else Ray picks eth0's address)
export PATH="$VENV/bin:$PATH"                  # job entrypoints run `python` from this PATH
mkdir -p "$RAY_TMP"
"$VENV/bin/ray" start --head --node-ip-address=127.0.0.1 --port="$RAY_PORT" --num-cpus=4 --num-gpus=8 \
    --resources='{"a800": 8}' --dashboard-host=127.0.0.1 --dashboard-port="$DASH" --disable-usage-stats \
    --temp-dir="$RAY_TMP" >"$RAY_TMP/start.log" 2>&1 || { cat "$RAY_TMP/start.log" >&2; exit 1; }
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$DASH/api/version" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$DASH/api/version" >/dev/null || { echo "ray-up: no dashboard" >&2; exit 1; }
echo "ray up: http://127.0.0.1:$DASH (GCS 127.0.0.1:$RAY_PORT)"
