#!/usr/bin/env bash
# Download the public GPU-cluster traces that docs/TRACES.md, docs/DEMO.md and bench/ read, from
# their upstream GitHub repositories at pinned commits, into data/traces/ (ignored by git), and
# check each file's SHA-256. The files are not shipped: they are other people's data under their
# own licences (docs/DATA.md lists each source, licence and what to cite).
#
#   scripts/fetch_traces.sh                  # -> data/traces/ (about 7.7 MB)
#   scripts/fetch_traces.sh --out DIR        # elsewhere
#   scripts/fetch_traces.sh --from DIR       # copy from a local copy instead, checking the same digests
#
# Exit 0 when every file is present with its digest; 1 when a download or a digest fails (the bad
# file is removed: nothing half-written is left under its name); 2 on a bad argument.
set -euo pipefail
cd "$(dirname "$0")/.."

out=data/traces
from=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "fetch_traces: --out needs a directory" >&2; exit 2; }; out=$2; shift 2 ;;
        --from) [ $# -ge 2 ] || { echo "fetch_traces: --from needs a directory" >&2; exit 2; }; from=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch_traces: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$from" ] && [ ! -d "$from" ]; then
    echo "fetch_traces: --from: '$from' is not a directory" >&2; exit 2
fi

RAW=https://raw.githubusercontent.com
# file name here | upstream repo@commit:path | sha256 of the file
FILES="
philly_pollux_jobs.csv|petuum/adaptdl@c793c7089bd307462686339d29707925c461f9a9:simulator/traces/philly.csv|ebffb3dd1589bdf4e7bcd74496201c5ded1d557d498ee14f560463f37ec353da
alibaba_openb_v2023_pod_list_default.csv|alibaba/clusterdata@7a6c496e4f4b6ce6150be8f881cb051bf2abff42:cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv|1ee7ed79c27a3b0861cda8ddba86a004c6aba904caafa329a76ae93ca63834a8
alibaba_openb_v2023_pod_list_gpuspec33.csv|alibaba/clusterdata@7a6c496e4f4b6ce6150be8f881cb051bf2abff42:cluster-trace-gpu-v2023/csv/openb_pod_list_gpuspec33.csv|eca4f746db1e5b25864ad021b55ece3943e101a3ebd4574d09dcb95c46117652
alibaba_openb_v2023_node_list_gpu_node.csv|alibaba/clusterdata@7a6c496e4f4b6ce6150be8f881cb051bf2abff42:cluster-trace-gpu-v2023/csv/openb_node_list_gpu_node.csv|2beca64b4d3dfa342036a34b56a495c6cef9225db836c81f541282cb1df320b5
alibaba_v2025_disaggregated_DLRM_trace.csv|alibaba/clusterdata@7a6c496e4f4b6ce6150be8f881cb051bf2abff42:cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv|fb17bc4b3f412d5280f70f04a1bdf2adfc4429d1e61237a5b106e86206414295
gavel_simulation_throughputs.json|stanford-futuredata/gavel@c4fa40097339e9608ab71fd64c8bdea96a5e4a4c:scheduler/simulation_throughputs.json|17111f7295f03265fd9e5118d7eba31e3dd9d6e50a2e215c13ad3d3f91f74381
acme_cluster_summary.csv|InternLM/AcmeTrace@6d6ac9cd15f3b01151ac6ba00ecddd9156f0dc73:data/cluster_summary.csv|cde7a7d4ba1596ea165cf4583137d2095020abebbc26b3cd834284c16e8e6ecf
"

mkdir -p "$out"
fail=0
for line in $FILES; do
    IFS='|' read -r name src want <<<"$line"
    dest="$out/$name"
    if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$want" ]; then
        echo "ok      $dest (already there)"; continue
    fi
    tmp="$dest.part"
    if [ -n "$from" ]; then
        cp "$from/$name" "$tmp" 2>/dev/null || { echo "MISSING $from/$name" >&2; rm -f "$tmp"; fail=1; continue; }
    else
        repo=${src%%@*}; rest=${src#*@}; commit=${rest%%:*}; path=${rest#*:}
        url="$RAW/$repo/$commit/$path"
        curl -fsSL --retry 2 --connect-timeout 20 -o "$tmp" "$url" || { echo "FAILED  $url" >&2; rm -f "$tmp"; fail=1; continue; }
    fi
    got=$(sha256sum "$tmp" | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
        echo "DIGEST  $name: sha256 $got, expected $want ($src)" >&2; rm -f "$tmp"; fail=1; continue
    fi
    mv "$tmp" "$dest"
    echo "ok      $dest ($src)"
done

# gavel_isolated_throughputs.csv, the flat table `python -m suanli.traces.gavel` reads, is made from the
# JSON above (only the isolated "null" throughputs of the consolidated k80/p100/v100 entries).
json="$out/gavel_simulation_throughputs.json"
if [ -f "$json" ]; then
    py=${PYTHON:-python3}
    "$py" - "$json" "$out/gavel_isolated_throughputs.csv" <<'EOF' || fail=1
import ast, csv, json, re, sys
src, dest = sys.argv[1], sys.argv[2]
d = json.load(open(src, encoding="utf-8"))
rows = []
for gpu in ("k80", "p100", "v100"):
    for key, entry in d[gpu].items():
        job_type, scale = ast.literal_eval(key)
        m = re.match(r"(.*) \(batch size (\d+)\)$", job_type)
        model, batch = (m.group(1), int(m.group(2))) if m else (job_type, "")
        rows.append((gpu, job_type, model, batch, scale, entry["null"]))
rows.sort(key=lambda r: (r[2], r[3] if r[3] != "" else 0, r[4], r[0]))     # model, batch, GPUs, GPU type
k80 = {(r[1], r[4]): r[5] for r in rows if r[0] == "k80"}
with open(dest + ".part", "w", newline="", encoding="utf-8") as fh:
    w = csv.writer(fh)
    w.writerow(["gpu_type", "job_type", "model", "batch_size", "scale_factor", "throughput_steps_per_s", "speedup_vs_k80"])
    for gpu, job_type, model, batch, scale, tput in rows:
        base = k80.get((job_type, scale))
        w.writerow([gpu, job_type, model, batch, scale, tput, round(tput / base, 4) if base else ""])
import os; os.replace(dest + ".part", dest)
EOF
    made="$out/gavel_isolated_throughputs.csv"
    want=b935ab2998e0f8a1ad1e04d9815a5bacfca82a322ac804ff421eec44602ba4b3
    if [ -f "$made" ] && [ "$(sha256sum "$made" | cut -d' ' -f1)" = "$want" ]; then
        echo "ok      $made (made from the JSON)"
    else
        echo "DIGEST  $made: not the expected table (sha256 $want)" >&2; rm -f "$made"; fail=1
    fi
fi
exit $fail
