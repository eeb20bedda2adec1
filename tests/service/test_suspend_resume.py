"""The live controller follows suspend-resume plans (docs/SCHEDULER.md, "Suspend and resume"), with
a real server, a real agent and a real checkpointing process: a checkpointing job whose cheapest
plan is in pieces runs its first piece, is stopped at the piece's end keeping its stored
checkpoint (PREEMPTED for price and carbon, then PENDING), is planned again and resumes from that
checkpoint in the cheaper hour, each piece a run on the ledger. A job without checkpoints is
never split; with `suspend=False` (`suanli serve --no-suspend`) no job is.

The network is east-1 alone with a time-of-use tariff: hour 0 cheap (0.2 CNY/kWh), hour 1 dear
(5), hour 2 in between (1). A job of 70 s of work with checkpoints every minute (the least the API
takes), submitted 65 s before hour 1, due at hour 3 and willing to wait 2 h (a job that must start
at once, `max_wait_h` 0, the API's default, is never planned in pieces), costs least in pieces: the last whole
minute of hour 0, then the 10 s it still needs at hour 2 (a single run now spends 5 s at 5 CNY/kWh;
one at hour 2 all 70 s at 1). Hours are real: the test sets the controller's clock (its epoch, as
a database first served earlier would have) to 65 s before hour 1, and, once the job waits for
its next piece with nothing running, moves it on to hour 2: an hour passes in a moment (the
controller's hours are all computed from its epoch; the agent's times are wall times).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import svc
from sites import job_command
from sqlalchemy import select
from svc import ThreadServer, build, job_body, pieces_network, set_clock, states, wait_for

from suanli.service.models import Job as JobRow
from suanli.service.models import Usage

db_url = svc.db_url     # the fixture (SQLite, and PostgreSQL when .ci/run starts one)
STEPS, STEP_S = 140, 0.5        # the job: 140 steps of 0.5 s, its step written after each
WORK_H = STEPS * STEP_S / 3600 * 2.0        # 70 s on an H100 (speed 2)
HEAD_S = 65.0                   # submitted this long before hour 1


def _stored_step(app, jid: int) -> int:
    """The step in the checkpoint archive the controller stores for the job."""
    with tarfile.open(app.state.controller.store.path(jid)) as t:
        m = next(m for m in t.getmembers() if m.name.rsplit("/", 1)[-1] == "step")
        return int(t.extractfile(m).read())


def _runs(app, jid: int) -> list[Usage]:
    with app.state.controller.sessions() as s:
        return s.scalars(select(Usage).where(Usage.job_id == jid, Usage.kind == "run").order_by(Usage.start_h)).all()


def _serve(db_url: str, tmp_path: Path, suspend: bool = True):
    app = build(pieces_network(tmp_path), db_url, policy="suanli", tick_s=0.2, heartbeat_timeout_s=10.0,
                checkpoint_store=tmp_path / "store", suspend=suspend)
    return app, ThreadServer(app)


def _start(app, url: str, db_url: str, tmp_path: Path):
    s = svc.Service(url, app, db_url)
    c = s.client(s.tenant("acme"))
    s.start_agent("east-1", tmp_path / "work")
    wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json()), 30)
    set_clock(app, 1.0 - HEAD_S / 3600)
    return s, c


def _submit(app, c, tmp_path: Path, checkpoint: bool, command: str | None = None) -> int:
    body = job_body(command=command or job_command(tmp_path, STEPS, STEP_S), work_h=WORK_H,
                    gpu_types=["h100"], deadline_h=3.0 - app.state.controller.now_h(), max_wait_h=2.0)
    if checkpoint:
        body["checkpoint_h"] = 1 / 60
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_checkpointing_job_runs_in_two_pieces_and_resumes_from_its_checkpoint(db_url, tmp_path):
    app, server = _serve(db_url, tmp_path)
    with server as url:
        s, c = _start(app, url, db_url, tmp_path)
        try:
            job = _submit(app, c, tmp_path, checkpoint=True)
            # the plan: the last minute of hour 0, then [2, 2 + what that minute does not keep)
            first = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] == "RUNNING" and j, 20,
                             dump=lambda: c.get(f"/v1/jobs/{job}").json())
            placed = next(t for t in first["transitions"] if t["to_state"] == "PLACED")
            assert "in 2 pieces" in placed["reason"], placed
            assert first["end_h"] == pytest.approx(1.0, abs=1e-9)
            [(a, b)] = first["pieces"]
            assert a == pytest.approx(2.0) and b == pytest.approx(2.0 + 10 / 3600)
            chosen = first["explanation"]["chosen"]
            assert chosen["pieces"] == [[a, b]] and chosen["start_h"] == pytest.approx(1.0 - 1 / 60)
            assert not first["suspended"] and first["pieces_done"] == []

            # at hour 1 the run is stopped, keeping its stored checkpoint, and its rest placed at hour 2
            ckpt = tmp_path / "work" / "east-1" / "checkpoints" / str(job)
            waiting = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] == "PLACED" and j, 90,
                               dump=lambda: c.get(f"/v1/jobs/{job}").json())
            assert states(waiting) == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "PREEMPTED", "PENDING",
                                        "PLACED"]
            stop = next(t for t in waiting["transitions"] if t["to_state"] == "PREEMPTED")
            assert stop["reason"].startswith("suspended for price and carbon: its plan in pieces stops it on "
                                             "east-1/h100 at the end of its piece, 1.0000 h, and resumes it at "
                                             "2.0000 h"), stop
            assert "to its checkpoint at" in stop["reason"] and 1.0 <= stop["at_h"] < 1.0 + 10 / 3600, stop
            assert stop["from_state"] == "RUNNING"
            assert waiting["transitions"][5]["reason"].startswith("suspended: waits to resume from its checkpoint")
            assert waiting["start_h"] == pytest.approx(2.0) and waiting["pieces"] is None
            # waiting for its next piece it reads as suspended, in its view and in a page of jobs,
            # and its view keeps the piece it ran: [its RUNNING hour, its stop's hour)
            ran = next(t for t in waiting["transitions"] if t["to_state"] == "RUNNING")
            assert waiting["suspended"] and waiting["pieces_done"] == [[ran["at_h"], stop["at_h"]]]
            [listed] = [j for j in c.get("/v1/jobs").json()["jobs"] if j["id"] == job]
            assert listed["suspended"] and listed["pieces_done"] == []
            stored = _stored_step(app, job)
            with s.sessions() as db:
                row = db.get(JobRow, job)
                kept = (row.checkpoint_h - first["start_h"]) * 2.0
                assert row.remaining_work == pytest.approx(WORK_H - kept) and 0 < kept < WORK_H
            # the first run ended and is billed; the agent stopped it (no step after the stop's fence)
            [run1] = wait_for(lambda: _runs(app, job), 10)
            assert run1.end_h == pytest.approx(stop["at_h"], abs=1e-9) and run1.total_cny > 0
            wait_for(lambda: _quiet(ckpt), 15)         # its process is gone

            set_clock(app, 2.0 + 1 / 3600)       # an hour on: the second piece's hour
            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] in ("SUCCEEDED", "FAILED")
                            and j, 90, dump=lambda: c.get(f"/v1/jobs/{job}").json())
            assert done["state"] == "SUCCEEDED", done["transitions"]
            assert states(done).count("RUNNING") == 2 and done["end_h"] <= done["spec"]["deadline_h"]
            assert not done["suspended"] and done["pieces_done"] == [[ran["at_h"], stop["at_h"]]]
            assert not c.get("/v1/jobs", params={"state": "SUCCEEDED"}).json()["jobs"][0]["suspended"]
            # resumed from its checkpoint: the first run did steps 1..k, the second went on from the
            # stored one or, on the same site, the newer one left on its disk (the agent keeps a
            # checkpoint made there), never both at once (every line of fence 1 before fence 2's)
            lines = [ln.split() for ln in (ckpt / "log").read_text().splitlines()]
            fences = [int(f) for _, f, _ in lines]
            assert fences == sorted(fences) and len(set(fences)) == 2, fences
            one = [int(x) for _, f, x in lines if int(f) == fences[0]]
            two = [int(x) for _, f, x in lines if int(f) == fences[-1]]
            assert one == list(range(1, len(one) + 1)) and 0 < stored <= len(one)
            begun, last = map(int, (ckpt / "done-east-1").read_text().split())
            assert stored <= begun <= len(one) and two == list(range(begun + 1, STEPS + 1)) and last == STEPS
            # each piece a run on the ledger, billed as runs are
            run1, run2 = _runs(app, job)
            assert run2.start_h >= 2.0 and run1.fence < run2.fence and run2.total_cny > 0
            assert done["usage"]["gpu_seconds"] == pytest.approx(run1.gpu_seconds + run2.gpu_seconds)
        finally:
            svc.stop_all(s.agents)


def _quiet(ckpt: Path) -> bool:
    """No step written for a second (the stopped process is gone)."""
    import time
    before = (ckpt / "log").stat().st_mtime
    time.sleep(1.0)
    return (ckpt / "log").stat().st_mtime == before


@pytest.mark.parametrize("suspend", [True, False], ids=["no-checkpoints", "suspend-off"])
def test_a_job_is_not_split_without_checkpoints_or_with_suspend_off(db_url, tmp_path, suspend):
    """The same job, without checkpoints (suspend on), or with them under `suspend=False`: one run,
    started now as the cheapest single run (5 s in the dear hour cost less than 70 s at hour 2's
    price), which goes on past hour 1 (the clock is moved there while it runs) and is not stopped."""
    app, server = _serve(db_url, tmp_path, suspend=suspend)
    with server as url:
        s, c = _start(app, url, db_url, tmp_path)
        try:
            job = _submit(app, c, tmp_path, checkpoint=not suspend)
            run = wait_for(lambda: (j := c.get(f"/v1/jobs/{job}").json())["state"] == "RUNNING" and j, 20,
                           dump=lambda: c.get(f"/v1/jobs/{job}").json())
            assert run["pieces"] is None and "pieces" not in run["explanation"]["chosen"], run
            assert run["end_h"] > 1.0 and run["end_h"] - run["start_h"] == pytest.approx(WORK_H / 2.0)
            set_clock(app, 1.0 + 2 / 3600)          # past hour 1, where a plan in pieces would stop it
            ticks = app.state.controller.ticks
            wait_for(lambda: app.state.controller.ticks >= ticks + 5, 20)
            j = c.get(f"/v1/jobs/{job}").json()
            assert j["state"] == "RUNNING" and "PREEMPTED" not in states(j), j["transitions"]
            assert not j["suspended"] and j["pieces_done"] == []
            assert c.delete(f"/v1/jobs/{job}").status_code in (200, 202)
        finally:
            svc.stop_all(s.agents)


def test_a_job_that_ends_within_its_first_piece_or_is_cancelled_gives_its_later_pieces_back(db_url, tmp_path):
    """While a plan in pieces runs its first piece, the GPUs of its later piece (hour 2) are held in
    the controller's ledger; a job that ends early, or is cancelled, gives them back."""
    app, server = _serve(db_url, tmp_path)
    with server as url:
        s, c = _start(app, url, db_url, tmp_path)
        ctl = app.state.controller
        try:
            def later_free() -> bool:         # all 4 H100s free in the later pieces' hour
                with ctl.lock:
                    return ctl.ledger.calendars[("east-1", "h100")].fits(2.0, 2.0 + 10 / 3600, 4)

            quick, slow = (_submit(app, c, tmp_path, checkpoint=True, command=cmd) for cmd in ("true", "sleep 600"))
            running = wait_for(lambda: (j := c.get(f"/v1/jobs/{slow}").json())["state"] == "RUNNING" and j, 20,
                               dump=lambda: c.get(f"/v1/jobs/{slow}").json())
            assert running["pieces"] and running["pieces"][0][0] == pytest.approx(2.0)
            assert not later_free()
            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{quick}").json())["state"] == "SUCCEEDED" and j, 20)
            assert "in 2 pieces" in next(t for t in done["transitions"] if t["to_state"] == "PLACED")["reason"]
            assert done["pieces"] is None and "PREEMPTED" not in states(done)
            assert c.delete(f"/v1/jobs/{slow}").status_code == 200
            wait_for(later_free, 10)
            assert not [k for k in ctl._held if k.startswith((f"j{quick}", f"j{slow}"))]
        finally:
            svc.stop_all(s.agents)
