"""What the importer synthesises: seeded, within the configured network, and loadable as jobs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_scenario
from suanli.model.load import parse_scenario
from suanli.traces.gavel import class_speeds, derive, exponents, load_speedups
from suanli.traces.importer import ImportOptions, import_trace
from suanli.traces.synthesis import SynthOptions

HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


def philly(path: Path, n: int = 400) -> str:
    """n jobs, one a minute, from 5 tenants, with run times from 30 s to ~60 h and 1-16 GPUs."""
    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        fh.write(HEADER)
        for i in range(n):
            d = float(np.exp(rng.uniform(np.log(30), np.log(216000))))
            g = int(rng.choice([1, 1, 1, 2, 4, 8, 16]))
            fh.write(f"2017-10-01 {i // 60 % 24:02d}:{i % 60:02d}:00,{d:.1f},{g},{d * g:.1f},vc{i % 5}\n")
    return str(path)


def jobs(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(trace: str, out: Path, **synth) -> list[dict[str, str]]:
    import_trace(trace, str(out), ImportOptions(kind="philly", synth=SynthOptions(**synth)))
    return jobs(out)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_draws(tmp_path):
    trace = philly(tmp_path / "t.csv")
    run(trace, tmp_path / "a.csv", seed=7, classes=True)
    run(trace, tmp_path / "b.csv", seed=7, classes=True)
    run(trace, tmp_path / "c.csv", seed=8, classes=True)
    a, b, c = ((tmp_path / f"{x}.csv").read_bytes() for x in "abc")
    assert a == b
    assert a != c
    ra, rc = jobs(tmp_path / "a.csv"), jobs(tmp_path / "c.csv")
    assert [j["work_h"] for j in ra] == [j["work_h"] for j in rc]            # the trace's own fields stay
    assert [j["data_gb"] for j in ra] != [j["data_gb"] for j in rc]


def test_origins_come_from_the_given_cities_and_tenants_keep_their_home(tmp_path):
    rows = run(philly(tmp_path / "t.csv"), tmp_path / "o.csv", origins={"east": 1.0, "west": 3.0}, home_share=1.0)
    homes = {}
    for j in rows:
        assert homes.setdefault(j["tenant"], j["origin"]) == j["origin"]
    assert set(homes.values()) <= {"east", "west"} and len(homes) == 5
    mixed = run(philly(tmp_path / "t.csv"), tmp_path / "m.csv", origins={"east": 1.0, "west": 1.0}, home_share=0.0)
    share = sum(j["origin"] == "east" for j in mixed) / len(mixed)
    assert 0.4 < share < 0.6                          # fresh weighted draws, seeded


def test_deadlines_follow_the_slack_and_floor(tmp_path):
    rows = run(philly(tmp_path / "t.csv"), tmp_path / "d.csv", deadline_share=1.0, slack=(2.0, 2.0),
               min_deadline_h=0.5)
    for j in rows:
        submit, work, deadline = float(j["submit_h"]), float(j["work_h"]), float(j["deadline_h"])
        assert deadline == pytest.approx(submit + max(2.0 * work, 0.5), abs=3e-6) and deadline > submit
    none = run(philly(tmp_path / "t.csv"), tmp_path / "n.csv", deadline_share=0.0)
    assert {j["deadline_h"] for j in none} == {""}


def test_checkpoints_only_for_jobs_longer_than_the_threshold(tmp_path):
    rows = run(philly(tmp_path / "t.csv"), tmp_path / "c.csv", checkpoint_after_h=3.0, checkpoint_choices_h=(0.25, 1.0))
    long = [j for j in rows if float(j["work_h"]) > 3.0]
    assert long and {j["checkpoint_h"] for j in long} == {"0.25", "1"}
    assert {j["checkpoint_h"] for j in rows if float(j["work_h"]) <= 3.0} == {""}


def test_data_sizes_and_classes_follow_the_gpu_time_bucket(tmp_path):
    rows = run(philly(tmp_path / "t.csv"), tmp_path / "k.csv", classes=True)
    ranges = {"train-s": (0, 1, 5, 50), "train-m": (1, 10, 20, 300), "train-l": (10, 100, 100, 1500),
              "train-xl": (100, math.inf, 500, 5000)}
    for j in rows:
        lo, hi, dlo, dhi = ranges[j["class"]]
        assert lo <= int(j["gpus"]) * float(j["work_h"]) < hi
        assert dlo <= int(j["data_gb"]) <= dhi
    assert {j["class"] for j in rows} == set(ranges)


def test_imported_jobs_and_their_classes_load_as_a_scenario_jobs_file(tmp_path):
    out = tmp_path / "jobs.csv"
    r = import_trace(philly(tmp_path / "t.csv"), str(out),
                     ImportOptions(kind="philly", synth=SynthOptions(origins={"east": 1, "west": 1}, classes=True,
                                                                      gpu_speeds={"h100": 2.0, "a800": 1.0})))
    classes = yaml.safe_load((tmp_path / "jobs.classes.yaml").read_text())["job_classes"]
    assert classes == r.job_classes and classes["train-l"]["a800"] == 1.0
    raw = make_scenario(job_classes=classes, jobs_file="jobs.csv")
    del raw["jobs"]
    scn = parse_scenario(raw, str(tmp_path / "s.yaml"))
    assert len(scn.jobs) == 400 and scn.jobs[0].id == "j-000001"
    assert {j.class_ for j in scn.jobs} == set(classes)


def test_work_noise_writes_the_estimate_and_keeps_the_truth_beside_it(tmp_path):
    trace = philly(tmp_path / "t.csv")
    rows = run(trace, tmp_path / "n.csv", work_noise=0.5)
    truth = {t["id"]: float(t["true_work_h"]) for t in jobs(tmp_path / "n.truth.csv")}
    exact = run(trace, tmp_path / "e.csv")
    assert [truth[j["id"]] for j in rows] == [float(j["work_h"]) for j in exact]
    ratio = np.log([float(j["work_h"]) / truth[j["id"]] for j in rows])
    assert 0.4 < ratio.std() < 0.6 and abs(ratio.mean()) < 0.1
    assert not (tmp_path / "e.truth.csv").exists()


def test_sampling_is_seeded_and_counted(tmp_path):
    trace = philly(tmp_path / "t.csv", n=2000)
    r = import_trace(trace, str(tmp_path / "s.csv"), ImportOptions(kind="philly", sample=0.25))
    again = import_trace(trace, str(tmp_path / "s2.csv"), ImportOptions(kind="philly", sample=0.25))
    assert 400 < r.jobs < 600 and r.dropped == {"not drawn by --sample": 2000 - r.jobs}
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "s2.csv").read_bytes() and again.jobs == r.jobs


def test_gavel_speeds_keep_the_reference_type_and_spread_by_class():
    speeds = class_speeds({"fast": 2.0, "ref": 1.0, "slow": 0.5}, {"S": "s", "M": "m", "L": "l", "XL": "xl"})
    assert {c: v["ref"] for c, v in speeds.items()} == {"s": 1.0, "m": 1.0, "l": 1.0, "xl": 1.0}
    e = exponents(load_speedups())
    assert sum(e.values()) == pytest.approx(4.0)        # the average class runs at the base speeds
    assert speeds["s"]["fast"] == round(2.0 ** e["S"], 3) and speeds["s"]["fast"] > 2.0 > speeds["m"]["fast"]
    assert speeds["s"]["slow"] < 0.5 < speeds["m"]["slow"]          # CNNs gain and lose more than LSTMs


def test_gavel_derivation_takes_the_geometric_mean_over_batch_sizes(tmp_path):
    rows = ["gpu_type,job_type,model,batch_size,scale_factor,throughput_steps_per_s,speedup_vs_k80"]
    for model in ("ResNet-18", "LM", "Transformer", "ResNet-50"):
        for bs, v100 in ((16, 4.0), (32, 9.0)):
            rows += [f"k80,{model} ({bs}),{model},{bs},1,1.0,1.0", f"p100,{model} ({bs}),{model},{bs},1,2.0,2.0",
                     f"v100,{model} ({bs}),{model},{bs},1,{v100},{v100}",
                     f"v100,{model} ({bs}),{model},{bs},2,99.0,99.0"]            # multi-GPU rows are ignored
    (tmp_path / "g.csv").write_text("\n".join(rows) + "\n")
    out = derive(str(tmp_path / "g.csv"))
    assert [(r["bucket"], r["gavel_model"], r["v100_vs_k80"], r["p100_vs_k80"], r["batch_sizes"]) for r in out] == [
        ("S", "ResNet-18", "6.0000", "2.0000", "2"), ("M", "LM+Transformer", "6.0000", "2.0000", "4"),
        ("L", "ResNet-50", "6.0000", "2.0000", "2"), ("XL", "ResNet-50", "6.0000", "2.0000", "2")]
