"""Each local run's GPU energy, measured per GPU, end to end: a real `suanli serve` (SQLite, and
PostgreSQL when configured), a real agent process whose meter is prometheus_client's own HTTP
exporter serving `DCGM_FI_DEV_POWER_USAGE{gpu="0"}`..`{gpu="3"}` at known watts, as DCGM exporter
does. Two runs at once get GPU indices that do not overlap (each job writes the environment it
sees), each reports its GPUs' energy (`gpu_kwh`: their watts times its time), and its invoice line
is its share of the site's metered energy by that power (service/bills.py), not by its GPUs'
rating. A run the controller stops (cancelled) keeps its measured power too. NVML is the same
path with another source, checked only where the host has an NVIDIA GPU."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import svc
from sqlalchemy import select
from svc import job_body, wait_for
from test_agent_meter import agent_log, start_agent
from test_metered_bills import Site, _metered, _month, _submit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))      # meterkit.py, as tests/agent imports it
from meterkit import dcgm_power, prometheus_exporter  # noqa: E402

from suanli.agent.meters.nvml import gpu_count
from suanli.service.models import SiteAgent, Usage

db_url, service = svc.db_url, svc.service
# east-1's H100s (rated 0.7 kW each): all well below their rating. The two runs take GPUs 0-3; GPUs
# 4 and 5 stay idle, so the meter's IT power (every GPU's) is well above the runs' 0.65 kW: with IT
# equal to the runs' sum, a run whose ledger span came out a little shorter than the agent's (a
# loaded machine) outdrew the meter, and both lines were scaled down (a CI run: 8 % low)
WATTS = [300.0, 200.0, 100.0, 50.0, 120.0, 120.0]
PUE = 1.25
H100_KW = 0.7
# a job writes the environment it sees, whole, then renames it: the test never reads half of it
WRITE_ENV = "env > {out}/e-$SUANLI_JOB_ID && mv {out}/e-$SUANLI_JOB_ID {out}/env-$SUANLI_JOB_ID"


@pytest.fixture
def dcgm():
    """A DCGM-like exporter: each GPU's power, W, labelled by its index."""
    with prometheus_exporter() as (reg, url):
        dcgm_power(reg, WATTS, ("gpu", "UUID", "Hostname"))
        yield url


def seen_env(out: Path, job_id: int) -> dict[str, str] | None:
    p = out / f"env-{job_id}"
    if not p.exists():
        return None
    env = dict(line.split("=", 1) for line in p.read_text().splitlines() if "=" in line)
    return env if "CUDA_VISIBLE_DEVICES" in env else None


def ledger(service, job_id: int) -> Usage | None:
    with service.sessions() as s:
        return s.scalar(select(Usage).where(Usage.job_id == job_id, Usage.kind == "run"))


def states(tenant, ids) -> list[str]:
    return [tenant.get(f"/v1/jobs/{i}").json()["state"] for i in ids]


def ended(tenant, ids) -> list[str] | None:
    st = states(tenant, ids)
    return st if all(x in ("SUCCEEDED", "FAILED", "CANCELLED") for x in st) else None


def log_with(work: Path, *texts: str) -> str | None:
    log = agent_log(work, "east-1")
    return log if any(t in log for t in texts) else None


def readings_flow(work: Path) -> None:
    """The site's readings reach the controller before a job starts: a run is billed from the
    meters only when readings cover all of it."""
    wait_for(lambda: log_with(work, "the controller takes the readings"), timeout=60, every=0.1)


def submit(tenant, command: str) -> int:
    r = tenant.post("/v1/jobs", json=job_body(command=command, gpus=2, gpu_types=["h100"], work_h=0.02))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def metered_lines(tenant, *jobs: int) -> dict[int, dict]:
    month = datetime.now(UTC).strftime("%Y-%m")

    def done():
        (inv,) = tenant.get("/v1/invoices", params={"month": month}).json()
        got = {ln["job_id"]: ln for ln in inv["lines"] if ln["job_id"] in jobs and ln["energy_basis"] == "metered"}
        return got if len(got) == len(jobs) else None
    return wait_for(done, timeout=90, every=0.3)


def test_two_runs_get_distinct_gpus_and_are_billed_by_their_measured_energy(service, tmp_path, dcgm):
    out = svc.writable(tmp_path)
    go = out / "go"
    work = tmp_path / "agent"
    # one reading a second: a sample then holds 3 s (3 × the interval) before it is stale; at 0.2 s
    # (0.6 s) a loaded CI machine stalled the agent's sampler past it, and the runs went unmeasured
    start_agent(service, "east-1", work, "--meter", f"prometheus:{dcgm},pue={PUE}", "--meter-interval-s", "1.0",
                "--gpus", "6")
    readings_flow(work)
    tenant = service.client(service.tenant("acme"))
    # each job: what it sees, then its own start and end times around a wait for the test's signal
    cmd = (f'{WRITE_ENV.format(out=out)}; date +%s.%N > {out}/t0-$SUANLI_JOB_ID; '
           f'while [ ! -e {go} ]; do sleep 0.05; done; date +%s.%N > {out}/t1-$SUANLI_JOB_ID')
    ids = [submit(tenant, cmd), submit(tenant, cmd)]
    envs = wait_for(lambda: [seen_env(out, i) for i in ids] if all(seen_env(out, i) for i in ids) else None,
                    timeout=90, every=0.2, dump=lambda: agent_log(work, "east-1")[-3000:])
    time.sleep(3.0)                                      # both run at once, on their GPUs
    go.touch()
    assert wait_for(lambda: ended(tenant, ids), timeout=60, every=0.2) == ["SUCCEEDED", "SUCCEEDED"]

    devices = {}
    for i, env in zip(ids, envs, strict=True):
        assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"]
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        devices[i] = [int(d) for d in env["CUDA_VISIBLE_DEVICES"].split(",")]
        assert len(devices[i]) == 2 and all(0 <= d < 6 for d in devices[i])
    assert not set(devices[ids[0]]) & set(devices[ids[1]]), devices          # never one GPU for two runs

    log = agent_log(work, "east-1")
    for i in ids:
        u = ledger(service, i)
        watts = sum(WATTS[d] for d in devices[i])
        assert u.gpu_kwh is not None, log[-3000:]
        # the agent's own time for the run is its GPU-seconds over its GPUs: the same span it integrated
        agent_s = u.gpu_seconds / u.gpus
        assert u.gpu_kwh * 3.6e6 == pytest.approx(watts * agent_s, rel=0.01)
        # and the job's own clock: the run holds what the job did, and a poll of the agent at most more
        t0, t1 = (float((out / f"{n}-{i}").read_text()) for n in ("t0", "t1"))
        assert watts * (t1 - t0) <= u.gpu_kwh * 3.6e6 * 1.03 and agent_s <= t1 - t0 + 3.0
    assert "its GPUs used" in log

    lines = metered_lines(tenant, *ids)
    for i in ids:
        u = ledger(service, i)
        # the meter's IT power is the GPUs' (0.89 kW), below the runs' rating (2.8 kW): shared by
        # measured power, each line is its GPUs' energy times the metered PUE
        assert lines[i]["energy_kwh"] == pytest.approx(u.gpu_kwh * PUE, rel=0.05)
    for i in ids:
        u = ledger(service, i)
        print(f"job {i}: GPUs {devices[i]}, {sum(WATTS[d] for d in devices[i]):.0f} W, agent's time "
              f"{u.gpu_seconds / u.gpus:.3f} s, gpu_kwh {u.gpu_kwh:.7f} (watts x time: "
              f"{sum(WATTS[d] for d in devices[i]) * u.gpu_seconds / u.gpus / 3.6e6:.7f}), invoice line "
              f"{lines[i]['energy_kwh']:.7f} kWh = {lines[i]['energy_kwh'] / u.gpu_kwh:.4f} x gpu_kwh")
    # by their rating (2 H100 each) the two lines would be alike; measured, they are apart as their watts
    ratio = lines[ids[0]]["energy_kwh"] / lines[ids[1]]["energy_kwh"]
    expect = sum(WATTS[d] for d in devices[ids[0]]) / sum(WATTS[d] for d in devices[ids[1]])
    assert ratio == pytest.approx(expect, rel=0.1) and abs(expect - 1) > 0.5


def test_a_run_the_controller_stops_keeps_its_measured_power(service, tmp_path, dcgm):
    out = svc.writable(tmp_path)
    work = tmp_path / "agent"
    start_agent(service, "east-1", work, "--meter", f"prometheus:{dcgm},pue={PUE}", "--meter-interval-s", "1.0")
    readings_flow(work)
    tenant = service.client(service.tenant("acme"))
    job = submit(tenant, f"{WRITE_ENV.format(out=out)}; sleep 600")
    env = wait_for(lambda: seen_env(out, job), timeout=90, every=0.2)
    watts = sum(WATTS[int(d)] for d in env["CUDA_VISIBLE_DEVICES"].split(","))
    time.sleep(2.0)
    assert tenant.delete(f"/v1/jobs/{job}").status_code in (200, 202)
    log = wait_for(lambda: log_with(work, "its GPU energy sent", "did not take its GPU energy"), timeout=60,
                   every=0.2)
    u = ledger(service, job)
    # the heartbeat's mean power, or the agent's after it stopped the run (which replaced it while
    # the row was modelled): either way its GPUs' watts, over the row's length
    assert u.gpu_kwh is not None, log[-3000:]
    assert u.gpu_kwh * 3.6e6 == pytest.approx(watts * (u.end_h - u.start_h) * 3600, rel=0.02)
    assert u.gpu_kwh / (u.end_h - u.start_h) < 2 * H100_KW / 2.5           # far below its 2 GPUs' rating


GPUS, WHY = gpu_count()


@pytest.mark.skipif(GPUS == 0, reason=f"NVML: no NVIDIA GPU on this host ({WHY}); the nvml source feeds the "
                                      f"same per-GPU path as the DCGM exporter above")
def test_with_nvml_a_run_reports_its_gpus_energy(service, tmp_path):
    out = svc.writable(tmp_path)
    work = tmp_path / "agent"
    start_agent(service, "east-1", work, "--meter", "nvml,pue=1.2", "--meter-interval-s", "0.2",
                "--gpus", str(max(GPUS, 4)))
    tenant = service.client(service.tenant("acme"))
    r = tenant.post("/v1/jobs", json=job_body(command=f"{WRITE_ENV.format(out=out)}; sleep 3", gpus=1,
                                              gpu_types=["h100"], work_h=0.02))
    job = r.json()["id"]
    wait_for(lambda: states(tenant, [job]) == ["SUCCEEDED"], timeout=90, every=0.2)
    u = ledger(service, job)
    assert u.gpu_kwh is not None and 0 < u.gpu_kwh / (u.gpu_seconds / 3600) < 2.0   # one board's power, kW


# ------------------------------------------------------------------------------ the controller's side
# The test as west-1's agent (tests/service/test_metered_bills.py's Site): heartbeats that carry a
# run's measured mean power, readings it posts itself, so every figure is known.
def beat_with(site, kw: dict[int, float]) -> None:
    running = [{"job_id": j, "fence": f, **({"gpu_kw": kw[j]} if j in kw else {})} for j, f in site.running.items()]
    r = site.c.post(f"/v1/agent/{site.site}/heartbeat", json={"executor": "local", "pools": [], "running": running})
    assert r.status_code == 200, r.text


def live(service, site: str) -> dict:
    with service.sessions() as s:
        return dict((s.get(SiteAgent, site).info or {}).get("energy") or {})


def test_a_running_neighbour_weighs_its_measured_power_and_a_stopped_run_keeps_it(service):
    acme = service.tenant("acme")
    ca = service.client(acme)
    west = Site(service, "west-1")                    # A800, rated 0.4 kW each
    west.beat()
    t0 = datetime.now(UTC)
    ja, jb = _submit(ca, 1, "a800"), _submit(ca, 3, "a800")
    west.start(ja)
    west.start(jb)
    beat_with(west, {jb: 100.0})                       # more than 3 GPUs can draw: left out, and logged
    assert str(jb) not in live(service, "west-1")
    beat_with(west, {jb: 0.3})                         # b's 3 GPUs draw 0.3 kW in all (rated 1.2)
    assert live(service, "west-1")[str(jb)] == [west.running[jb], 0.3]
    time.sleep(1.0)
    west.finish(ja, gpu_kwh=0.1 * (datetime.now(UTC) - t0).total_seconds() / 3600)     # about 0.1 kW
    month = _month()
    west.readings(t0, datetime.now(UTC) + timedelta(seconds=1), 1.0, 1.5, 1.0)
    got_a = _metered(ca, month, ja)[ja]
    a = ledger(service, ja)
    # IT 1 kW > a's 0.1 + b's measured 0.3: a pays its own measured energy × the metered PUE 1.5;
    # by b's rating (1.2 kW) the runs would have outdrawn the meter, and a paid 0.1/1.3 of it
    assert got_a["energy_kwh"] == pytest.approx(a.gpu_kwh * 1.5, rel=1e-9)

    fence_b = west.running.pop(jb)
    assert ca.delete(f"/v1/jobs/{jb}").status_code == 200          # the controller stops b: its row now
    b = ledger(service, jb)
    length_h = b.end_h - b.start_h
    assert b.gpu_kwh == pytest.approx(0.3 * length_h, rel=1e-9)       # priced by its last measured power
    # the agent, having stopped it, sends its mean power up to then: it replaces the heartbeat's
    url = f"/v1/agent/west-1/jobs/{jb}/energy"
    r = west.c.post(url, json={"fence": fence_b, "gpu_kw": 0.25})
    assert r.status_code == 200, r.text
    assert r.json()["gpu_kwh"] == pytest.approx(0.25 * length_h, rel=1e-9) and r.json()["energy_basis"] == "modelled"
    r = west.c.post(url, json={"fence": fence_b, "gpu_kw": 3 * 5.0 + 0.1})
    assert r.status_code == 422 and r.json()["detail"].startswith("gpu_kw: 15.1 is not possible"), r.text
    assert west.c.post(url, json={"fence": fence_b + 1, "gpu_kw": 0.2}).status_code == 404
    assert west.c.post(url, json={"fence": fence_b, "gpu_kwh": 0.2}).status_code == 422         # not the field
    west.readings(t0, datetime.now(UTC) + timedelta(seconds=1), 1.0, 1.5, 1.0)
    got_b = _metered(ca, month, jb)[jb]
    assert got_b["energy_kwh"] == pytest.approx(0.25 * length_h * 1.5, rel=1e-9)
    r = west.c.post(url, json={"fence": fence_b, "gpu_kw": 0.2})
    assert r.status_code == 409 and "already billed from the meters" in r.json()["detail"]
