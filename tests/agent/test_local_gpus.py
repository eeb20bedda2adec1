"""The local executor gives each run distinct GPU indices of this host (executors/local.py): the
pools in order, `CUDA_VISIBLE_DEVICES` = `NVIDIA_VISIBLE_DEVICES` as the job itself sees them,
given back when the run ends or is stopped. Real subprocesses; no GPU needed (`--gpus N`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from suanli.agent.executors.base import JobPolicy
from suanli.agent.executors.local import LocalExecutor, gpu_indices
from suanli.errors import UserError

# as root the agent runs jobs under other uids; here they run as the test's user
POLICY = JobPolicy(as_agent_user=True)


def assignment(job_id: int, gpus: int, gpu_type: str, command: str) -> dict:
    return {"job_id": job_id, "fence": 1, "tenant_id": 1, "command": command, "gpus": gpus, "gpu_type": gpu_type}


def env_of(out: Path, job_id: int) -> dict[str, str]:
    path = out / f"env-{job_id}"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_pools_take_consecutive_indices_of_the_host_in_their_order():
    assert gpu_indices("s", {"a800": 4, "h100": 2}, None) == {"a800": [0, 1, 2, 3], "h100": [4, 5]}
    assert gpu_indices("s", {"a800": 2}, 8) == {"a800": [0, 1]}          # more GPUs than pools: idle
    with pytest.raises(UserError) as e:
        gpu_indices("s", {"a800": 4, "h100": 2}, 4, "--gpus")
    msg = str(e.value)
    assert msg.startswith("--gpus: this host has 4 GPU(s), and site s's pools (a800 4, h100 2) hold 6")
    assert "\n" not in msg
    # NVML counting fewer (a demo network on a GPU machine): said, the indices past them simulated
    assert gpu_indices("s", {"a800": 4, "h100": 2}, 4, "NVML") == {"a800": [0, 1, 2, 3], "h100": [4, 5]}


def test_two_runs_get_distinct_gpus_that_they_see_and_give_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ex = LocalExecutor("s", {"a800": 2, "h100": 2}, str(tmp_path / "w"), policy=POLICY, gpus=4)
    assert ex.free == {"a800": [0, 1], "h100": [2, 3]}
    hold = tmp_path / "go"
    # written whole, then renamed: the test never reads half of it
    cmd = (f'env > {out}/env-$SUANLI_JOB_ID.tmp && mv {out}/env-$SUANLI_JOB_ID.tmp {out}/env-$SUANLI_JOB_ID; '
           f'while [ ! -e {hold} ]; do sleep 0.05; done')
    a = ex.start(assignment(1, 1, "a800", cmd))
    b = ex.start(assignment(2, 2, "h100", cmd))
    c = ex.start(assignment(3, 1, "a800", cmd))
    assert (a.devices, b.devices, c.devices) == ([0], [2, 3], [1])
    assert not ex.can_start(assignment(4, 1, "a800", cmd))
    seen = {j: env_of(out, j) for j in (1, 2, 3)}
    for j, run in ((1, a), (2, b), (3, c)):
        e = seen[j]
        assert e["CUDA_VISIBLE_DEVICES"] == e["NVIDIA_VISIBLE_DEVICES"] == ",".join(map(str, run.devices))
        assert e["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    indices = [int(i) for e in seen.values() for i in e["CUDA_VISIBLE_DEVICES"].split(",")]
    assert sorted(indices) == [0, 1, 2, 3]                    # no index given twice
    ex.stop(2)                                                # stopped: its GPUs are free again
    assert ex.free["h100"] == [2, 3]
    hold.touch()
    deadline = time.monotonic() + 30
    ended = []
    while len(ended) < 2 and time.monotonic() < deadline:
        ended += [r.job_id for r, _, _ in ex.finished()]
        time.sleep(0.05)
    assert sorted(ended) == [1, 3] and ex.free == {"a800": [0, 1], "h100": [2, 3]}
    d = ex.start(assignment(5, 2, "a800", "true"))
    assert d.devices == [0, 1]
    ex.stop_all()


def test_a_host_with_fewer_gpus_than_its_pools_is_refused_at_start(tmp_path):
    with pytest.raises(UserError) as e:
        LocalExecutor("s", {"a800": 8}, str(tmp_path / "w"), policy=POLICY, gpus=4)
    assert str(e.value).startswith("--gpus: this host has 4 GPU(s), and site s's pools (a800 8) hold 8")

