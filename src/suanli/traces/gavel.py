"""Job classes by GPU-time bucket, with speeds derived from Gavel's measured throughputs.

Pollux's workload generator (petuum/adaptdl, simulator/workload.py) buckets Philly jobs by
GPU-hours and gives each bucket models: S < 1 CIFAR-10 ResNet-18 or NCF, M 1-10 DeepSpeech2
or BERT, L 10-100 YOLOv3, XL > 100 ImageNet ResNet-50. For each bucket we take the closest
models that Gavel measured on K80, P100 and V100: ResNet-18; LM (an LSTM, like DeepSpeech2's
RNN) and Transformer (BERT); ResNet-50 for the CNNs of L and XL. NCF is left out: Gavel's
Recommendation job runs slower on V100 than on K80, which no modern GPU would repeat. One
number per bucket is kept (`gavel_speedups.csv`, shipped beside this module with its
source): r, the geometric mean over the models' batch sizes, on one GPU, of the V100/K80
throughput ratio.

Assumption for modern GPUs (no measured H100/A800/910B data exists in the traces): a class
is exactly as sensitive to a faster GPU as its r says relative to the average class. With
e = ln r / ln r_avg (r_avg the geometric mean of the four buckets' r), a class runs on a GPU
type of base speed s at s ** e. The reference type (s = 1) stays 1.0 for every class, an
average class gets the base speeds, and ResNet-like classes gain more from a fast GPU.

`python -m suanli.traces.gavel gavel_isolated_throughputs.csv` re-derives the shipped file.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from importlib import resources

BUCKETS = ("S", "M", "L", "XL")
BUCKET_EDGES_GPU_H = (1.0, 10.0, 100.0)      # S < 1 <= M < 10 <= L < 100 <= XL, GPU-hours
BUCKET_MODELS = {"S": ("ResNet-18",), "M": ("LM", "Transformer"), "L": ("ResNet-50",), "XL": ("ResNet-50",)}
DATA_FILE = "gavel_speedups.csv"


def load_speedups() -> dict[str, float]:
    """Bucket -> V100/K80 speedup r, from the shipped data file."""
    text = (resources.files("suanli.traces") / DATA_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return {r["bucket"]: float(r["v100_vs_k80"]) for r in rows}


def exponents(speedups: dict[str, float]) -> dict[str, float]:
    """Bucket -> e = ln r / ln r_avg."""
    mean_log = sum(math.log(speedups[b]) for b in BUCKETS) / len(BUCKETS)
    return {b: math.log(speedups[b]) / mean_log for b in BUCKETS}


def class_speeds(gpu_speeds: dict[str, float], names: dict[str, str],
                 speedups: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """`job_classes` for a network: class name -> {GPU type: speed ** e}, rounded to 3 places."""
    e = exponents(speedups or load_speedups())
    return {names[b]: {g: round(s ** e[b], 3) for g, s in gpu_speeds.items()} for b in BUCKETS}


def derive(path: str) -> list[dict[str, str]]:
    """Rows of the shipped file from Gavel's isolated throughputs (one GPU, every batch size)."""
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    steps: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["scale_factor"] == "1":
                steps[(r["model"], r["batch_size"])][r["gpu_type"]] = float(r["throughput_steps_per_s"])
    for (model, _), by in steps.items():
        for g in ("v100", "p100"):
            ratios[model][g].append(by[g] / by["k80"])
    out = []
    for b in BUCKETS:
        models = BUCKET_MODELS[b]
        pooled = {g: [x for m in models for x in ratios[m][g]] for g in ("v100", "p100")}
        gm = {g: math.exp(sum(map(math.log, xs)) / len(xs)) for g, xs in pooled.items()}
        out.append({"bucket": b, "gavel_model": "+".join(models), "batch_sizes": str(len(pooled["v100"])),
                    "v100_vs_k80": f"{gm['v100']:.4f}", "p100_vs_k80": f"{gm['p100']:.4f}"})
    return out


if __name__ == "__main__":  # pragma: no cover - maintenance command
    w = csv.DictWriter(sys.stdout, fieldnames=["bucket", "gavel_model", "batch_sizes", "v100_vs_k80",
                                               "p100_vs_k80"], lineterminator="\n")
    w.writeheader()
    w.writerows(derive(sys.argv[1]))
