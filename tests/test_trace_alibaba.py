"""The Alibaba importers: openb 2023 (GPU-spec mapping, shares, CPU-only) and DLRM 2025 services."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from suanli.errors import UserError
from suanli.traces.importer import ImportOptions, WindowSpec, import_trace
from suanli.traces.synthesis import SERVICE_CHECKPOINT_H, SynthOptions

OPENB = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
         "scheduled_time\n")
DLRM = ("instance_sn,role,app_name,cpu_request,cpu_limit,gpu_request,gpu_limit,rdma_request,rdma_limit,"
        "memory_request,memory_limit,disk_request,disk_limit,max_instance_per_node,creation_time,scheduled_time,"
        "deletion_time\n")


def write(path: Path, header: str, rows: list[str]) -> str:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return str(path)


def jobs(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def openb(tmp_path: Path) -> str:
    return write(tmp_path / "pods.csv", OPENB, [
        "p0,8000,1024,0,0,,BE,Succeeded,0,100,0",                     # CPU-only: skipped
        "p1,8000,1024,1,1000,,LS,Running,0,36000,0",                   # 10 h on one GPU, no constraint
        "p2,8000,1024,1,500,V100M16|T4,BE,Succeeded,3600,10800,5400",   # a share, two models
        "p3,8000,1024,8,1000,G3,LS,Succeeded,7200,14400,7200",
        "p4,8000,1024,1,1000,,BE,Pending,7300,7400,",                   # never scheduled: skipped
        "p5,8000,1024,2,1000,X9,BE,Failed,7400,7500,7400",              # unknown model: a bad row
        "p6,8000,1024,1,1000,P100,BE,Failed,7500,7000,7500",            # deleted before scheduled: bad
    ])


def test_openb_maps_pods_to_jobs_run_time_from_scheduling(openb, tmp_path):
    r = import_trace(openb, str(tmp_path / "j.csv"), ImportOptions(kind="alibaba-openb"))
    rows = jobs(tmp_path / "j.csv")
    assert [(float(j["submit_h"]), float(j["work_h"]), int(j["gpus"])) for j in rows] == \
        [(0.0, 10.0, 1), (1.0, 1.5, 1), (2.0, 2.0, 8)]
    assert [j["gpu_types"] for j in rows] == ["", "a800;910b", "h100"]
    assert {j["tenant"] for j in rows} == {""}
    assert r.skipped == {"CPU-only task (num_gpu 0)": 1, "never scheduled (no scheduled_time)": 1}
    assert r.bad == {"gpu_spec: GPU model 'X9' is not in the mapping (--gpu-map)": (1, 7),
                     "deletion_time: before scheduled_time 7500": (1, 8)}
    assert r.notes["fractional GPU share rounded up to a whole GPU"] == 1


def test_openb_gpu_map_overrides_entries_and_must_name_network_types(openb, tmp_path):
    opts = ImportOptions(kind="alibaba-openb", gpu_map="T4=l40s,X9=h100;a800",
                         synth=SynthOptions(gpu_speeds={"h100": 2.0, "a800": 1.0, "910b": 0.9, "l40s": 0.8}))
    r = import_trace(openb, str(tmp_path / "j.csv"), opts)
    assert [j["gpu_types"] for j in jobs(tmp_path / "j.csv")] == ["", "a800;l40s", "h100", "h100;a800"]
    assert list(r.bad) == ["deletion_time: before scheduled_time 7500"]
    with pytest.raises(UserError, match=r"--gpu-map: G2=a800 names a GPU type that is not in --gpu-types "
                                        r"\(h100, l40s\)"):
        import_trace(openb, str(tmp_path / "k.csv"),
                     ImportOptions(kind="alibaba-openb", synth=SynthOptions(gpu_speeds={"h100": 2, "l40s": 0.8})))


@pytest.fixture
def dlrm(tmp_path: Path) -> str:
    row = "{sn},{role},{app},12,12,{gpu},{gpu},25,25,120.0,120.0,640.0,800.0,8,{c},{s},{d}"
    return write(tmp_path / "dlrm.csv", DLRM, [
        row.format(sn="i0", role="HN", app="app_0", gpu=1, c="", s="", d="7200.0"),        # existed before
        row.format(sn="i1", role="HN", app="app_0", gpu=1, c="3600.0", s="3600.0", d=""),  # alive at the end
        row.format(sn="i2", role="CN", app="app_1", gpu=0, c="0.0", s="0.0", d="100.0"),   # CPU: skipped
        row.format(sn="i3", role="HN", app="app_2", gpu=1, c="1800.0", s="1810.0", d="18000.0"),
        row.format(sn="i4", role="HN", app="app_2", gpu=1, c="5000.0", s="5000.0", d="5000.0"),  # 0 s: dropped
        row.format(sn="i5", role="HN", app="app_2", gpu=1, c="", s="", d=""),              # whole trace
    ])


def test_dlrm_instances_are_services_with_censored_lifetimes(dlrm, tmp_path):
    opts = ImportOptions(kind="alibaba-dlrm", synth=SynthOptions(classes=True, rtt_choices_ms=(20, 30, 40, 50, 60)))
    r = import_trace(dlrm, str(tmp_path / "s.csv"), opts)
    rows = jobs(tmp_path / "s.csv")
    end_h = 18000 / 3600                                   # the last time in the file ends censored lifetimes
    assert [float(j["submit_h"]) for j in rows] == [0.0, 1.0, 0.5, 0.0]
    assert [float(j["work_h"]) for j in rows] == pytest.approx([2.0, end_h - 1.0, (18000 - 1810) / 3600, end_h],
                                                               abs=1e-6)   # 6 decimals kept
    assert [j["tenant"] for j in rows] == ["app_0", "app_0", "app_2", "app_2"]
    assert {j["class"] for j in rows} == {"service"} and {j["deadline_h"] for j in rows} == {""}
    assert {float(j["checkpoint_h"]) for j in rows} == {SERVICE_CHECKPOINT_H}
    rtt = {(j["tenant"], j["max_rtt_ms"]) for j in rows}
    assert len(rtt) == 2, "every instance of an app shares the app's latency bound"
    assert {float(v) for _, v in rtt} <= {20, 30, 40, 50, 60}
    assert r.skipped == {"CPU-only instance (gpu_request 0)": 1}
    assert r.dropped == {"no run time (0 s)": 1}
    assert r.job_classes == {"service": {"h100": 1.0, "a800": 1.0, "910b": 1.0}}
    assert r.notes["existed before the trace started: submitted at the trace start"] == 2


def test_dlrm_window_carries_running_services_in_at_hour_0(dlrm, tmp_path):
    r = import_trace(dlrm, str(tmp_path / "w.csv"),
                     ImportOptions(kind="alibaba-dlrm", window=WindowSpec(start="1h", end="2h")))
    rows = jobs(tmp_path / "w.csv")
    # i0 (until 2 h), i3 (from 0.5 h to 5 h) and i5 (whole trace) were running at 1 h; i1 arrives at 1 h
    assert [(float(j["submit_h"]), round(float(j["work_h"]), 6)) for j in rows] == \
        [(0.0, 1.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0)]
    assert r.notes["already running when the window opened: carried in at hour 0 with its remaining lifetime"] == 3
