"""The live controller follows planned stops (docs/SCHEDULER.md, "Planned stops"), with a real
server, a real agent and a real checkpointing process: once a tenant's jobs have taught the
`suanli` policy's run-time predictor that their lengths vary (3 ended jobs: two far shorter than
their estimate, one longer), its next checkpointing job without a deadline is booked to a planned
stop (one whole checkpoint, a minute, of the fastest type); still running at the booking's end it
is stopped there keeping its checkpoint, its rest planned again at once (booked from the work
done, `RuntimePredictor.remaining`), and resumes from that checkpoint to finish, each step done by
one run only. With `suspend=False` (`suanli serve --no-suspend`), or for a job without
checkpoints, the run past its booking is reviewed as an overrun, as before (service/overrun.py).

Hours are compressed as in test_suspend_resume.py: the test moves the controller's epoch back
(its clock forward) by a minute while the job runs, so that its booking's end comes at once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import svc
from sites import job_command
from svc import NETWORK, ThreadServer, build, job_body, states, wait_for

from suanli.service.models import Job as JobRow

db_url = svc.db_url     # the fixture (SQLite, and PostgreSQL when SUANLI_TEST_PG_URL is set)
EST_S = 4.0                     # every job's estimate: 4 s on an H100 (speed 2)
WORK_H = EST_S / 3600 * 2.0
STEPS, STEP_S = 24, 0.5         # the checkpointing job really takes 12 s, a step written after each
STOP = "stopped at the end of its plan"


def _serve(db_url: str, tmp_path: Path, suspend: bool = True):
    app = build(NETWORK, db_url, policy="suanli", tick_s=0.2, heartbeat_timeout_s=10.0,
                checkpoint_store=tmp_path / "store", suspend=suspend)
    return app, ThreadServer(app)


def _move_clock(app, seconds: float) -> None:
    """The controller's clock `seconds` on (its epoch moved back), between two of its ticks."""
    c = app.state.controller
    with c.lock:
        c.epoch -= timedelta(seconds=seconds)


def _start_and_teach(app, url: str, db_url: str, tmp_path: Path):
    """A service with east-1's agent, whose tenant "acme" has had 3 jobs end: two at a fraction of
    their estimate, one at about twice it (the predictor's group for the tenant's next jobs)."""
    s = svc.Service(url, app, db_url)
    c = s.client(s.tenant("acme"))
    s.start_agent("east-1", tmp_path / "work")
    wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json()), 30)
    ids = [c.post("/v1/jobs", json=job_body(name=f"teach{i}", command=cmd, work_h=WORK_H, gpu_types=["h100"]))
           .json()["id"] for i, cmd in enumerate(("true", "true", f"sleep {2 * EST_S:g}"))]
    for jid in ids:
        wait_for(lambda jid=jid: c.get(f"/v1/jobs/{jid}").json()["state"] == "SUCCEEDED", 60,
                 dump=lambda jid=jid: c.get(f"/v1/jobs/{jid}").json())
    return s, c


def _submit(c, tmp_path: Path, checkpoint: bool, command: str | None = None) -> int:
    body = job_body(name="next", command=command or job_command(tmp_path, STEPS, STEP_S), work_h=WORK_H,
                    gpu_types=["h100"])
    if checkpoint:
        body["checkpoint_h"] = 1 / 60          # the least the API takes
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _running(c, job: int) -> dict:
    return wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] == "RUNNING" and j, 30,
                    dump=lambda: c.get(f"/v1/jobs/{job}").json())


def test_a_job_of_uncertain_length_stops_at_its_plan_s_end_and_resumes_from_its_checkpoint(db_url, tmp_path):
    app, server = _serve(db_url, tmp_path)
    with server as url:
        s, c = _start_and_teach(app, url, db_url, tmp_path)
        try:
            job = _submit(c, tmp_path, checkpoint=True)
            first = _running(c, job)
            # booked to a planned stop: one whole checkpoint (a minute on the H100), not the estimate
            assert first["stops"] is True and first["pieces"] is None, first
            assert first["end_h"] - first["start_h"] == pytest.approx(1 / 60, abs=1e-9)
            with s.sessions() as db:
                assert db.get(JobRow, job).stops is True          # durable: what every tick reads
            ckpt = tmp_path / "work" / "east-1" / "checkpoints" / str(job)
            wait_for(lambda: (ckpt / "log").exists() and len((ckpt / "log").read_text().split("\n")) > 6, 30)
            wait_for(lambda: c.get(f"/v1/jobs/{job}").json()["checkpoint_h"] is not None, 30)

            _move_clock(app, 60.0)              # the booking's end comes; the job, half done, goes on
            stopped = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] != "RUNNING"
                               and "PREEMPTED" in states(j) and j, 30, dump=lambda: c.get(f"/v1/jobs/{job}").json())
            stop = next(t for t in stopped["transitions"] if t["to_state"] == "PREEMPTED")
            assert stop["from_state"] == "RUNNING" and stop["reason"].startswith(
                f"{STOP}: its run on east-1/h100 was booked to {first['end_h']:.4f} h"), stop
            assert "its rest is planned again" in stop["reason"] and "to its checkpoint at" in stop["reason"]
            after = stopped["transitions"][states(stopped).index("PREEMPTED") + 1]
            assert after["to_state"] == "PENDING" and after["reason"].startswith(STOP), after
            assert not any("extended" in t["reason"] for t in stopped["transitions"])   # no overrun review
            with s.sessions() as db:
                assert db.get(JobRow, job).done_work > 0           # what its rest is predicted from

            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] in ("SUCCEEDED", "FAILED")
                            and j, 60, dump=lambda: c.get(f"/v1/jobs/{job}").json())
            assert done["state"] == "SUCCEEDED", done["transitions"]
            assert states(done) == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "PREEMPTED", "PENDING",
                                     "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED"]
            # resumed from its checkpoint: the first run did steps 1..k and was stopped (every line of
            # its fence before the second's), the second went on from a checkpoint it made
            lines = [ln.split() for ln in (ckpt / "log").read_text().splitlines()]
            fences = [int(f) for _, f, _ in lines]
            assert fences == sorted(fences) and len(set(fences)) == 2, fences
            one = [int(x) for _, f, x in lines if int(f) == fences[0]]
            two = [int(x) for _, f, x in lines if int(f) == fences[-1]]
            begun, last = map(int, (ckpt / "done-east-1").read_text().split())
            assert one == list(range(1, len(one) + 1)) and 0 < begun <= len(one) < STEPS
            assert two == list(range(begun + 1, STEPS + 1)) and last == STEPS
        finally:
            svc.stop_all(s.agents)


@pytest.mark.parametrize("suspend", [True, False], ids=["no-checkpoints", "suspend-off"])
def test_a_run_past_its_booking_is_an_overrun_without_checkpoints_or_with_suspend_off(db_url, tmp_path, suspend):
    """The same tenant's job, without checkpoints (suspend on) or with them under `suspend=False`: booked
    for its estimate (the predictor's factor is 1), with no planned stop; past its booking and the
    review's grace it is extended as an overrun, never stopped."""
    app, server = _serve(db_url, tmp_path, suspend=suspend)
    with server as url:
        s, c = _start_and_teach(app, url, db_url, tmp_path)
        try:
            job = _submit(c, tmp_path, checkpoint=not suspend)
            run = _running(c, job)
            assert run["stops"] is False and run["pieces"] is None, run
            assert run["end_h"] - run["start_h"] == pytest.approx(EST_S / 3600, abs=1e-9)
            _move_clock(app, 120.0)             # past its end and the overrun review's grace (60 s)
            j = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json()) and any(
                t["to_state"] == "RUNNING" and t["reason"].startswith("ran past its estimate; extended")
                for t in j["transitions"]) and j, 30, dump=lambda: c.get(f"/v1/jobs/{job}").json())
            assert j["state"] == "RUNNING" and "PREEMPTED" not in states(j), j["transitions"]
            assert c.delete(f"/v1/jobs/{job}").status_code in (200, 202)
        finally:
            svc.stop_all(s.agents)
