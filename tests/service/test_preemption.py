"""The live service preempts as the simulator does: with the suanli policy, a job that would be
late stops a running one (real agent, local executor); the stopped run is metered, its agent
stops it (new fence), and it runs again and finishes. `--no-preempt` turns it off; then the
late job waits, and is placed earlier as soon as the run before it ends early."""

from __future__ import annotations

from pathlib import Path

import pytest
import svc
import yaml
from svc import NETWORK, ThreadServer, build, job_body, wait_for

db_url = svc.db_url     # the fixture (SQLite, and PostgreSQL when .ci/run starts one)


def _network(tmp_path: Path) -> str:
    """The test network's east-1 alone (4 h100), with lateness priced (1,000 CNY per GPU-hour)."""
    net = yaml.safe_load(Path(NETWORK).read_text())
    net["sites"] = net["sites"][:1]
    net["objective"] = {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 1000.0}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


def _states(job: dict) -> list[str]:
    return [t["to_state"] for t in job["transitions"]]


@pytest.mark.parametrize("preempt", [True, False])
def test_an_urgent_job_stops_a_lax_one_that_then_runs_again(db_url, tmp_path, preempt):
    """lax (4 GPUs, planned 90 s) runs; urgent (4 GPUs, 2 s, due 20 s after submission) would
    wait for it and be ~70 s late (~78 CNY at 1,000 CNY per GPU-hour); stopping lax costs the
    few seconds it ran. So urgent starts at once and lax runs again after it."""
    app = build(_network(tmp_path), db_url, policy="suanli", tick_s=0.2, heartbeat_timeout_s=3.0,
                checkpoint_store=tmp_path / "store", preempt=preempt)
    with ThreadServer(app) as url:
        s = svc.Service(url, app, db_url)
        try:
            c = s.client(s.tenant("acme"))
            s.start_agent("east-1", tmp_path / "work")
            wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json()), 30)
            lax = c.post("/v1/jobs", json=job_body(name="lax", command="sleep 6", gpus=4, work_h=0.05)).json()["id"]
            wait_for(lambda: c.get(f"/v1/jobs/{lax}").json()["state"] == "RUNNING", 30,
                     dump=lambda: c.get(f"/v1/jobs/{lax}").json())
            urgent = c.post("/v1/jobs", json=job_body(name="urgent", command="true", gpus=4, work_h=0.001,
                                                      deadline_h=20 / 3600)).json()["id"]
            if not preempt:                     # urgent is planned after lax's planned end
                placed = wait_for(lambda: (j := c.get(f"/v1/jobs/{urgent}").json())["state"] == "PLACED" and j, 30)
                running = c.get(f"/v1/jobs/{lax}").json()
                assert placed["start_h"] >= running["end_h"] - 1e-6
                assert placed["explanation"]["chosen"]["parts"]["late"] > 0
                assert "PREEMPTED" not in _states(running)
                # lax ends after 6 s, not the 180 s planned: urgent is placed earlier and goes at
                # once (issue "For the people who use it", 2), staying PLACED (no second placement)
                done = wait_for(lambda: (j := c.get(f"/v1/jobs/{urgent}").json())["state"] == "SUCCEEDED" and j, 40,
                                dump=lambda: c.get(f"/v1/jobs/{urgent}").json())
                first = c.get(f"/v1/jobs/{lax}").json()
                assert _states(done) == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED"]
                assert any(t["reason"].startswith("dispatched") for t in done["transitions"])
                assert first["end_h"] - 1e-6 <= done["start_h"] < placed["start_h"] - 60 / 3600
                assert app.state.controller.pulled_forward >= 1
                return
            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{urgent}").json())["state"] == "SUCCEEDED" and j, 60,
                            dump=lambda: (c.get(f"/v1/jobs/{urgent}").json(), c.get(f"/v1/jobs/{lax}").json()))
            first = wait_for(lambda: (j := c.get(f"/v1/jobs/{lax}").json())["state"] == "SUCCEEDED" and j, 60)
            assert _states(first).count("PREEMPTED") == 1, first["transitions"]
            stop = next(t for t in first["transitions"] if t["to_state"] == "PREEMPTED")
            assert stop["reason"].startswith("stopped by suanli: stopped for " + str(urgent)), stop
            assert done["start_h"] < first["end_h"]              # it went first
            assert first["usage"]["gpu_seconds"] > 0             # both of lax's runs are metered
            with s.sessions() as db:
                from sqlalchemy import select

                from suanli.service.models import Usage
                runs = db.scalars(select(Usage).where(Usage.job_id == lax).order_by(Usage.start_h)).all()
            assert len(runs) == 2 and runs[0].end_h <= runs[1].start_h + 1e-9
        finally:
            svc.stop_all(s.agents)
