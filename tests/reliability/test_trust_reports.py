"""What a site agent reports is bounded by what can be true ("Trust" 4).

A site token could report any GPU-hours for any job dispatched to its site (1e9 GPU-h landed on
another tenant's invoice) and date a checkpoint 9999-12-31 (whose hour a preemption then credits
as work done). Now: GPU-seconds <= GPUs x the wall time since the run's dispatch (and a little
slack), a checkpoint's time between the run's dispatch and now (a little skew either side);
anything else answers 422 in one line and is logged at WARNING with the site, job, fence and value.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402
from svc import job_body, wait_for  # noqa: E402

from suanli.service.server import ThreadServer, build  # noqa: E402

db_url = svc.db_url     # the fixture, used in this module


@pytest.fixture
def service(db_url, tmp_path):
    """A real server; this test plays the agent, slower than a real one's beat: a long heartbeat timeout."""
    app = build(svc.NETWORK, db_url, policy="fifo", tick_s=0.1, heartbeat_timeout_s=3600.0,
                checkpoint_store=tmp_path / "store")
    with ThreadServer(app) as url:
        yield svc.Service(url, app, db_url)

GZ = {"Content-Type": "application/gzip"}


def _running(service, gpus: int = 2) -> tuple:
    """acme's job dispatched to east-1 and RUNNING (this test plays the agent): (acme, east, job id, fence)."""
    acme = service.client(service.tenant("acme"))
    east = service.client(service.site_token("east-1"))
    assert east.post("/v1/agent/east-1/heartbeat", json={}).status_code == 200
    job_id = acme.post("/v1/jobs", json=job_body(gpus=gpus, gpu_types=["h100"])).json()["id"]
    wait_for(lambda: acme.get(f"/v1/jobs/{job_id}").json()["state"] == "PLACED")
    claimed = wait_for(lambda: east.post("/v1/agent/east-1/assignments").json())
    (fence,) = [a["fence"] for a in claimed if a["job_id"] == job_id]
    r = east.post(f"/v1/agent/east-1/jobs/{job_id}/report", json={"fence": fence, "state": "RUNNING"})
    assert r.status_code == 200, r.text
    return acme, east, job_id, fence


def _one_line_422(r) -> str:
    assert r.status_code == 422, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    return detail


def test_gpu_hours_beyond_gpus_times_wall_time_are_refused(service, caplog):
    acme, east, job_id, fence = _running(service)
    month = datetime.now(UTC).strftime("%Y-%m")
    with caplog.at_level(logging.WARNING, logger="suanli.api"):
        r = east.post(f"/v1/agent/east-1/jobs/{job_id}/report",
                      json={"fence": fence, "state": "SUCCEEDED", "exit_code": 0, "gpu_seconds": 1e6 * 3600})
    detail = _one_line_422(r)
    assert "gpu_seconds" in detail and "2 GPUs" in detail
    logged = [m.getMessage() for m in caplog.records if m.levelno == logging.WARNING]
    assert any("east-1" in m and str(job_id) in m and f"fence {fence}" in m and "3600000000" in m for m in logged), \
        logged
    job = acme.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "RUNNING"                        # refused: nothing metered, nothing ended
    inv = acme.get("/v1/invoices", params={"month": month}).json()[0]
    assert inv["lines"] == [] and inv["gpu_h"] == 0
    # what can be true passes: its 2 GPUs for (at most) the time since the dispatch
    r = east.post(f"/v1/agent/east-1/jobs/{job_id}/report",
                  json={"fence": fence, "state": "SUCCEEDED", "exit_code": 0, "gpu_seconds": 1.0})
    assert r.status_code == 200 and r.json()["state"] == "SUCCEEDED", r.text
    inv = acme.get("/v1/invoices", params={"month": month}).json()[0]
    assert inv["gpu_h"] == pytest.approx(1.0 / 3600)


def test_checkpoint_times_outside_the_run_are_refused(service, caplog):
    acme, east, job_id, fence = _running(service)
    url = f"/v1/agent/east-1/jobs/{job_id}/checkpoint"
    for at in (datetime(9999, 12, 31, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1),
               datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=1)):
        with caplog.at_level(logging.WARNING, logger="suanli.api"):
            r = east.put(url, params={"fence": fence, "at": at.isoformat()}, content=b"archive", headers=GZ)
        assert "at:" in _one_line_422(r)
        assert any(f"job {job_id}" in m.getMessage() and "east-1" in m.getMessage() and at.isoformat()[:16]
                   in m.getMessage() for m in caplog.records), [m.getMessage() for m in caplog.records]
        job = acme.get(f"/v1/jobs/{job_id}").json()
        assert job["checkpoint_h"] is None and job["checkpoint_bytes"] is None
    r = east.put(url, params={"fence": fence, "at": datetime.now(UTC).isoformat()}, content=b"archive", headers=GZ)
    assert r.status_code == 200 and r.json()["checkpoint_bytes"] == 7, r.text
