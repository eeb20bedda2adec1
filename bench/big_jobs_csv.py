"""A scenario with a jobs CSV of N rows, for `suanli validate` and `suanli sim` on big inputs
(docs/BENCHMARKS.md, "Big inputs"): bench/scenarios/big-10k's network, its 10,000 jobs repeated
with new ids (j-0000001 ...) and submit times spread over the horizon.

    python bench/big_jobs_csv.py --rows 2000000 --out /tmp/big2m
    /usr/bin/time -v suanli validate /tmp/big2m/big.yaml
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml

HERE = Path(__file__).parent / "scenarios"


def write(out: Path, rows: int) -> Path:
    """Write `out`/big.yaml and `out`/big.jobs.csv (`rows` jobs); return the YAML's path."""
    out.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load((HERE / "big-10k.yaml").read_text())
    doc["jobs_file"] = "big.jobs.csv"
    doc["name"] = f"big-{rows}"
    (out / "big.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with open(HERE / "big-10k.jobs.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        base = list(reader)
    with open(out / "big.jobs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(rows):
            r = list(base[i % len(base)])
            r[0] = f"j-{i + 1:07d}"
            w.writerow(r)
    return out / "big.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(write(a.out, a.rows))


if __name__ == "__main__":
    main()
