"""The agent loop (HTTP, every `interval_s`): heartbeat with the pools' state and the runs in
progress (the reply names runs to stop: cancelled, or dispatched elsewhere); report runs that
ended (SUCCEEDED with exit code 0, else FAILED, with the GPU-seconds measured); claim due
assignments and start them (RUNNING). Every report carries the dispatch's fence: the controller
refuses a stale one, and the agent then drops that run.

Each heartbeat carries the agent's `instance` (new at every start): after a restart the
controller re-places the dispatched jobs the new agent does not hold (the slurm and ray
executors adopt their cluster's jobs; the local executor kills what its predecessor left).
Checkpoints: a running job's newest checkpoint is uploaded to the controller's store when it
has a newer one; a re-placed job's stored checkpoint is downloaded into its checkpoint
directory before it starts (service/checkpoints.py, agent/checkpoints.py).
Output: a run's stdout and stderr go to `<workdir>/<site>/<job id>/fence-<n>.log` (executors/base.py);
the RUNNING report names that file, and its last MiB is uploaded when the run ends (or is
stopped) and every OUTPUT_EVERY_S while it runs, for `GET /v1/jobs/{id}/logs` (`suanli logs`).

Containment: nothing one job or one archive holds stops the agent. Whatever goes wrong while
preparing, fetching, starting or stopping one job fails that job alone (a FAILED report with
the reason, through the outbox) and the loop goes on; packing, uploading and fetching
checkpoints run in worker threads beside the loop, bounded in size and time, so heartbeats
keep their interval; an upload the controller refuses (413, 507, 5xx) is tried again later,
backing off per job, while the agent goes on claiming and running work. A dispatch that
reaches the agent twice starts one run (the same fence: ignored; a newer one: the old run is
stopped first).

Meters (`--meter SPEC`, agent/meters/): read and posted by threads of their own (agent/metering.py),
never by this loop; a meter that fails or hangs stops its readings only.
GPU energy: where a meter source reads each GPU's power (nvml, or a DCGM exporter through
prometheus), a local run's GPUs' energy over the run (agent/gpu_energy.py) goes in its SUCCEEDED
or FAILED report as `gpu_kwh`, and its mean power so far in each heartbeat while it runs; a run the
agent stops (cancelled, preempted, moved) has its mean power sent to
`POST /v1/agent/{site}/jobs/{id}/energy`, for the ledger row the controller made when it stopped
it. The controller shares the site's metered energy among the runs by these (service/bills.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from suanli.agent import checkpoints as ck
from suanli.agent.executors.base import JobPolicy
from suanli.agent.executors.local import LocalExecutor
from suanli.agent.gpu_energy import Mark
from suanli.agent.metering import Metering
from suanli.agent.meters import Composite
from suanli.errors import UserError
from suanli.service.client import Client

log = logging.getLogger("suanli.agent")
EXECUTORS = ("local", "slurm", "ray")
MAX_CHECKPOINT_BYTES = 16 * 2**30         # the sum of a checkpoint directory's file sizes, and what unpacks
CHECKPOINT_TIMEOUT_S = 600.0              # to pack and upload one checkpoint, or to fetch and unpack one
OUTPUT_TAIL_BYTES = 2**20                  # the end of a run's output sent to the controller (as much as it keeps)
OUTPUT_EVERY_S = 30.0                     # a running job's output is sent this often (when it grew)
BACKOFF_MAX_S = 300.0                     # the longest wait between two tries of a refused upload


def transient(e: UserError) -> bool:
    """A failure the agent waits out: the controller unreachable, or answering 5xx (its database
    restarting: 503) or 429/408; its journaled reports and its runs are kept meanwhile."""
    msg = str(e)
    return msg.startswith("cannot reach") or status(e) in (408, 429) or 500 <= (status(e) or 0) <= 599


def status(e: UserError) -> int | None:
    """The HTTP status of a refusal ("409: ..."), or None."""
    m = re.match(r"(\d{3}):", str(e))
    return int(m.group(1)) if m else None


def fatal(e: UserError) -> bool:
    """The controller does not accept this agent (its token refused): stop, and say why."""
    return status(e) in (401, 403)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str, limit: int = 4000, tail: bool = False) -> str:
    """A report's text with control characters (a NUL byte among them) made visible, cut to `limit`."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text[-limit:] if tail else text[:limit]


def read_tail(path: Path, limit: int) -> tuple[bytes, int] | None:
    """(the last `limit` bytes of a run's log, the file's size), or None if there is none. The log
    lies in the job's own directory: one the job replaced by a link (to a file the job may not
    read) or by a FIFO (whose reader would wait forever) is not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        try:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            return f.read(limit), size
        except OSError:
            return None


def log_tail(path: Path, limit: int = 2000) -> str:
    """The last `limit` bytes of a run's log, as text ("" if there is none: `read_tail`)."""
    got = read_tail(path, limit)
    return got[0].decode("utf-8", errors="replace") if got else ""


def _j(job_id, fence) -> dict:
    return {"extra": {"job_id": job_id, "fence": fence}}


class Outbox:
    """Reports not yet acknowledged by the controller, journaled as files (written whole, then
    renamed) in `<workdir>/<site>/outbox/`, sent in order: a run's start and its result reach
    the controller even across the controller's absence or this agent's own restart, so what
    a site ran is billed once (the usage ledger is built from these reports)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in root.glob("*.json"))
        self.seq = int(names[-1].split("-")[0]) + 1 if names else 0

    def add(self, job_id: int, body: dict, kind: str = "report") -> None:
        """Journal a report (`kind` "report": POST .../report) or a stopped run's energy ("energy")."""
        if kind != "report":
            body = {**body, "_kind": kind}
        path = self.root / f"{self.seq:012d}-{job_id}.json"
        self.seq += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    def pending(self) -> list[tuple[Path, int, dict]]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                out.append((p, int(p.stem.split("-")[1]), json.loads(p.read_text())))
            except (OSError, ValueError, IndexError):
                log.warning("outbox: unreadable report %s: skipped", p)
        return out

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)


@dataclass
class Track:
    """A running job's checkpoint uploads (per job and fence)."""
    uploaded: float = 0.0             # the newest file's mtime in the checkpoint last stored
    next_try: float = 0.0             # monotonic
    delay: float = 0.0                # the current back-off (0: none)
    said: str = ""                    # the last failure logged (a new one is logged, a repeat is not)


class Agent:
    def __init__(self, site: str, controller: str | None, token: str | None, executor: str = "local",
                 workdir: str | None = None, interval_s: float = 1.0, checkpoint_dir: str | None = None,
                 partition: str | None = None, ray_address: str | None = None,
                 max_checkpoint_bytes: int = MAX_CHECKPOINT_BYTES, checkpoint_timeout_s: float = CHECKPOINT_TIMEOUT_S,
                 connect_wait_s: float = 60.0, policy: JobPolicy | None = None,
                 meter: Composite | None = None, meter_interval_s: float = 15.0,
                 output_every_s: float = OUTPUT_EVERY_S, gpus: int | None = None):
        if executor not in EXECUTORS:
            raise UserError(f"--executor: unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
        if gpus is not None and executor != "local":
            raise UserError(f"--gpus: only the local executor gives jobs their GPUs itself; {executor} assigns "
                            f"its own (docs/SITES.md, Meters)")
        if gpus is not None and not 0 <= gpus <= 1024:
            raise UserError(f"--gpus: must lie in [0, 1024], got {gpus}")
        self.site = site
        self.instance = uuid.uuid4().hex            # new at every start: the controller sees a restart
        self.client = Client(controller, token)
        self._client_args = (controller, token)
        self.interval_s = interval_s
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self.checkpoint_timeout_s = checkpoint_timeout_s
        self.stopping = threading.Event()
        self.outage: tuple[float, str] | None = None         # (since, what) while the controller is away
        self._said: dict[str, str] = {}                       # the last error logged, per place
        workdir = workdir or tempfile.mkdtemp(prefix=f"suanli-agent-{site}-")
        log.info("agent %s of site %s, executor %s, workdir %s: controller %s", self.instance[:8], site, executor,
                 workdir, ", ".join(self.client.urls))
        sites = {s["id"]: s for s in self._first_contact(connect_wait_s)}
        if site not in sites:
            raise UserError(f"--site: the controller's network has no site {site!r} (sites: {', '.join(sites)})")
        pools = {p["gpu_type"]: p["count"] for p in sites[site]["pools"]}
        self.tmpdir = Path(workdir) / site / "tmp"            # archives being packed or fetched
        removed = ck.clean(self.tmpdir)
        if removed:
            log.info("removed %d archive(s) a previous agent left in %s", removed, self.tmpdir)
        self.outbox = Outbox(Path(workdir) / site / "outbox")
        if executor == "slurm":
            from suanli.agent.executors.slurm import SlurmExecutor
            self.executor = SlurmExecutor(site, workdir, partition, checkpoint_dir, policy=policy)
        elif executor == "ray":
            from suanli.agent.executors.ray import RayExecutor
            self.executor = RayExecutor(site, workdir, ray_address, checkpoint_dir, policy=policy)
        else:
            self.executor = LocalExecutor(site, pools, workdir, checkpoint_dir, policy=policy, gpus=gpus)
        if executor != "local" and self.executor.count != pools:
            log.warning("site %s: the %s cluster has GPUs %s; the controller's network says %s",
                        site, executor, self.executor.count, pools)
        self.waiting: deque[dict] = deque()       # claimed: fetching a checkpoint, or waiting for GPUs
        self.tracks: dict[tuple[int, int], Track] = {}          # checkpoint uploads of the runs
        self.upload: tuple[tuple[int, int], ck.Task] | None = None
        self.fetches: dict[tuple[int, int], ck.Task] = {}
        self.fetch_retry: dict[tuple[int, int], float] = {}
        self.resumed: set[tuple[int, int]] = set()              # checkpoint in place (or refused): may start
        self.notes: dict[tuple[int, int], str] = {}             # said in the run's RUNNING report
        self.sent_output: dict[tuple[int, int], int] = {}       # a run's output size last uploaded
        self.output_every_s = output_every_s
        self.outputs_at = time.monotonic()
        log.info("site %s: pools %s, %d run(s) adopted; polling every %g s", site, pools,
                 len(self.executor.runs), interval_s)
        self.metering = Metering(site, meter, self._meter_post(), meter_interval_s) if meter is not None else None
        # runs' GPU energy: local runs only (the agent knows their GPU indices), from a per-GPU source
        self.gpu_energy = self.metering.gpu_energy if self.metering is not None and executor == "local" else None
        self.energy_marks: dict[tuple[int, int], Mark | None] = {}
        if self.metering is not None and self.gpu_energy is None:
            log.info("site %s: no run's GPU energy is measured (%s): the controller weights runs by their GPUs' "
                     "rating", site, f"the runs' GPU indices are the {executor} cluster's" if executor != "local"
                     else "no meter source reads each GPU's power")

    def _meter_post(self):
        """The metering thread's way to post a batch: a client of its own, never the loop's."""
        client = Client(*self._client_args, timeout=10.0)
        self._mclient = client

        def post(body: dict):
            return client.call("POST", f"/v1/agent/{self.site}/meter", json=body)
        return post

    # ------------------------------------------------------------------ the controller
    def _first_contact(self, wait_s: float) -> list[dict]:
        """The network's sites; waits up to `wait_s` for a controller that is still starting."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                sites = self.client.call("GET", "/v1/sites")
                self._reached()
                return sites
            except UserError as e:
                if not transient(e) or time.monotonic() > deadline:
                    raise
                self._away(e, f"waiting up to {wait_s:g} s for it to start")
                if self.stopping.wait(1.0):
                    raise UserError(f"stopped before reaching the controller ({e})") from None

    def _away(self, e: UserError, doing: str) -> None:
        """The controller is unreachable or answers 5xx: said once per outage."""
        if self.outage is None:
            self.outage = (time.monotonic(), str(e))
            what = str(e) if str(e).startswith("cannot reach") else f"the controller at {self.client.url} answers {e}"
            log.warning("%s: %s", what, doing)

    def _reached(self) -> None:
        if self.outage is not None:
            log.warning("the controller at %s answers again, after %.1f s away", self.client.url,
                        time.monotonic() - self.outage[0])
            self.outage = None

    def _once(self, where: str, level: int, msg: str, *args, exc_info=None, **kw) -> None:
        """Log a failure at `where` unless it is the one logged there last."""
        text = msg % args if args else msg
        if self._said.get(where) != text:
            self._said[where] = text
            log.log(level, text, exc_info=exc_info, **kw)

    def send_reports(self) -> None:
        """Send the journaled reports in order; each leaves the outbox once the controller answered
        (a 409/404 too: the job was cancelled or re-dispatched, and a run still going is stopped; any
        other refusal is logged and the report dropped: a report it will never take must not hold
        up the others)."""
        for path, job_id, body in self.outbox.pending():
            if body.get("_kind") == "energy":
                self._send_energy(path, job_id, body)
                continue
            try:
                self.client.call("POST", f"/v1/agent/{self.site}/jobs/{job_id}/report", json=body)
                log.info("job %s fence %s: reported %s", job_id, body.get("fence"), body.get("state"),
                         **_j(job_id, body.get("fence")))
            except UserError as e:
                if transient(e) or fatal(e):
                    raise                              # the controller is away: the rest waits too
                if status(e) in (409, 404):
                    log.info("job %s fence %s: the %s report is stale: %s", job_id, body.get("fence"),
                             body.get("state"), e, **_j(job_id, body.get("fence")))
                    run = self.executor.runs.get(job_id)
                    if run is not None and run.fence == body.get("fence"):
                        self._stop(job_id, run.fence, "its dispatch is over")
                else:
                    log.error("job %s fence %s: the controller refused the %s report (%s): dropped", job_id,
                              body.get("fence"), body.get("state"), e, **_j(job_id, body.get("fence")))
            self.outbox.done(path)

    def _send_energy(self, path: Path, job_id: int, body: dict) -> None:
        """A stopped run's GPUs' mean power, for its ledger row. Refused (the row already billed from the
        meters, or none: 404/409/422): logged and dropped, the run stays weighted by its rating."""
        body = {k: v for k, v in body.items() if k != "_kind"}
        try:
            self.client.call("POST", f"/v1/agent/{self.site}/jobs/{job_id}/energy", json=body)
            log.info("job %s fence %s: its GPU energy sent (a mean %.4f kW)", job_id, body.get("fence"),
                     body.get("gpu_kw"), **_j(job_id, body.get("fence")))
        except UserError as e:
            if transient(e) or fatal(e):
                raise
            log.warning("job %s fence %s: the controller did not take its GPU energy (%s): dropped", job_id,
                        body.get("fence"), e, **_j(job_id, body.get("fence")))
        self.outbox.done(path)

    # ------------------------------------------------------------------ GPU energy (agent/gpu_energy.py)
    def _mark(self, run) -> None:
        """A local run has just started: its GPUs' energy counters now."""
        if self.gpu_energy is not None and getattr(run, "devices", None):
            self.energy_marks[(run.job_id, run.fence)] = self.gpu_energy.mark(run.devices)

    def _energy(self, run) -> float | None:
        """The run's GPUs' energy since it started, kWh (None: not measured; its mark dropped)."""
        key = (run.job_id, run.fence)
        if self.gpu_energy is None or key not in self.energy_marks:
            return None
        kwh = self.gpu_energy.energy_kwh(self.energy_marks.pop(key))
        if kwh is None:
            log.info("job %s fence %s: its GPU energy is not measured (no fresh per-GPU sample at its start or "
                     "end, or a gap between): billed by its GPUs' rating", *key, **_j(*key))
        return kwh

    def _ref(self, run) -> dict:
        """A run in the heartbeat, with its GPUs' mean power so far where it is measured (the
        controller shares the meter among the runs beside it by it)."""
        ref = {"job_id": run.job_id, "fence": run.fence}
        mark = self.energy_marks.get((run.job_id, run.fence))
        if mark is not None and self.gpu_energy is not None:
            t = time.monotonic()
            kwh = self.gpu_energy.energy_kwh(mark, t)
            if kwh is not None and t > mark.at:
                ref["gpu_kw"] = kwh * 3600.0 / (t - mark.at)
        return ref

    # ------------------------------------------------------------------ the loop
    def step(self) -> None:
        ex = self.executor
        try:
            ex.refresh()
        except Exception as e:                 # the cluster manager did not answer: the runs as last seen
            self._once("refresh", logging.ERROR, "site %s: cannot read the %s cluster's state: %s", self.site,
                       ex.name, e)
        running = [self._ref(r) for r in ex.runs.values()]
        running += [{"job_id": a["job_id"], "fence": a["fence"]} for a in self.waiting]
        held = {(r["job_id"], r["fence"]) for r in running}
        running += [{"job_id": j, "fence": b["fence"]} for _, j, b in self.outbox.pending()
                    if (j, b["fence"]) not in held and "_kind" not in b]   # ended, the result not yet delivered
        reply = self.client.call("POST", f"/v1/agent/{self.site}/heartbeat", json={
            "executor": ex.name, "instance": self.instance, "running": running,
            "pools": [{"gpu_type": g, "count": n, "busy": ex.busy()[g]} for g, n in ex.count.items()]})
        self._reached()
        for ref in reply["cancel"]:
            jid, fence = ref["job_id"], ref["fence"]
            run = ex.runs.get(jid)
            if run is not None and run.fence == fence:
                self._stop(jid, fence, "cancelled or dispatched elsewhere")
            if any(a["job_id"] == jid and a["fence"] == fence for a in self.waiting):
                log.info("job %s fence %s: dropped before it started (cancelled or dispatched elsewhere)", jid,
                         fence, **_j(jid, fence))
                self.waiting = deque(a for a in self.waiting if not (a["job_id"] == jid and a["fence"] == fence))
        self._announce()
        self._collect()
        self.send_reports()
        self.checkpoints()
        self.send_outputs()
        self.accept(self.client.call("POST", f"/v1/agent/{self.site}/assignments"))
        self.start_waiting()
        self._announce()                 # the local executor's runs start at once
        self.send_reports()

    def _announce(self) -> None:
        try:
            started = self.executor.started()
        except Exception as e:
            self._once("started", logging.ERROR, "site %s: cannot list the runs started: %s", self.site, e)
            return
        for run, why in started:
            note = self.notes.pop((run.job_id, run.fence), "")
            reason = f"{why}; {note}" if note else why
            log.info("job %s fence %s: running (%s)", run.job_id, run.fence, reason, **_j(run.job_id, run.fence))
            self.outbox.add(run.job_id, {"fence": run.fence, "state": "RUNNING", "reason": clean_text(reason),
                                         "output_path": str(self.executor.log_path(run))})

    def _collect(self) -> None:
        ex = self.executor
        try:
            finished = ex.finished()
        except Exception as e:
            self._once("finished", logging.ERROR, "site %s: cannot list the runs ended: %s", self.site, e)
            return
        # their GPUs' energy now, as they were seen to end: before any upload below takes time
        energy = {(run.job_id, run.fence): self._energy(run) for run, _, _ in finished}
        for run, code, wall_s in finished:
            body = {"fence": run.fence, "state": "SUCCEEDED" if code == 0 else "FAILED", "exit_code": code,
                    "gpu_seconds": max(0.0, wall_s) * run.gpus}
            kwh = energy[(run.job_id, run.fence)]
            if kwh is not None:
                body["gpu_kwh"] = kwh
            if code != 0:
                body["log_tail"] = clean_text(log_tail(ex.log_path(run)), 2000, tail=True)  # the log stays here
            self.send_output(run)                # before the result: the job's owner reads it once it ended
            log.info("job %s fence %s: ended, exit code %s after %.1f s%s", run.job_id, run.fence, code, wall_s,
                     f", its GPUs used {kwh:.6f} kWh" if kwh is not None else "", **_j(run.job_id, run.fence))
            self.outbox.add(run.job_id, body)

    def _stop(self, job_id: int, fence: int, why: str) -> None:
        """Stop one run; a failure to stop it is logged (the next heartbeat asks again)."""
        log.info("job %s fence %s: stopping it: %s", job_id, fence, why, **_j(job_id, fence))
        try:
            stopped = self.executor.stop(job_id)
            if stopped is not None:
                self.send_output(stopped[0])
                kwh = self._energy(stopped[0])
                if kwh is not None and stopped[1] > 0:    # the controller metered it when it stopped it
                    self.outbox.add(job_id, {"fence": stopped[0].fence, "gpu_kw": kwh * 3600.0 / stopped[1]},
                                    kind="energy")
        except Exception as e:
            log.error("job %s fence %s: cannot stop it: %s: %s", job_id, fence, type(e).__name__, e,
                      **_j(job_id, fence))

    def send_output(self, run) -> None:
        """Upload the tail of a run's output (its last OUTPUT_TAIL_BYTES) to the controller, which
        keeps it for the job's owner (`suanli logs`). Best effort: the file stays on the site, and
        a failure is logged."""
        path = self.executor.log_path(run)
        got = read_tail(path, OUTPUT_TAIL_BYTES)
        if got is None:
            return
        tail, size = got
        if self.sent_output.get((run.job_id, run.fence)) == size:
            return                                              # nothing new since the last upload
        try:
            self.client.call("PUT", f"/v1/agent/{self.site}/jobs/{run.job_id}/output",
                             params={"fence": run.fence, "size": size, "path": str(path)}, content=tail,
                             headers={"Content-Type": "application/octet-stream"})
            self.sent_output[(run.job_id, run.fence)] = size
        except UserError as e:
            log.warning("job %s fence %s: the output (%s, %d bytes) was not uploaded: %s", run.job_id, run.fence,
                        path, size, e, **_j(run.job_id, run.fence))

    def send_outputs(self) -> None:
        """The running jobs' output so far, every `output_every_s` (what `suanli logs` shows of a run
        still going)."""
        now = time.monotonic()
        if now - self.outputs_at < self.output_every_s:
            return
        self.outputs_at = now
        for run in list(self.executor.runs.values()):
            self.send_output(run)

    def _fail(self, a: dict, reason: str) -> None:
        """Fail one assignment (a FAILED report, through the outbox): the other jobs go on."""
        log.error("job %s fence %s: failed: %s", a["job_id"], a["fence"], reason, **_j(a["job_id"], a["fence"]))
        self.outbox.add(a["job_id"], {"fence": a["fence"], "state": "FAILED", "reason": clean_text(reason),
                                      "gpu_seconds": 0.0})

    def accept(self, assignments) -> None:
        """Take claimed assignments; one the agent already runs or waits for (the same job) is a
        dispatch that reached it twice: the same fence (or an older one) is ignored, a newer one
        supersedes the old run, which is stopped first."""
        ex = self.executor
        for a in assignments if isinstance(assignments, list) else []:
            try:
                jid, fence = int(a["job_id"]), int(a["fence"])
            except (KeyError, TypeError, ValueError):
                log.error("an assignment without a job id and fence: ignored (%.200r)", a)
                continue
            log.info("job %s fence %s: claimed (%s x %s GPUs%s)", jid, fence, a.get("gpus"), a.get("gpu_type"),
                     f", resumes from a checkpoint of {a['resume_bytes']:,} bytes" if a.get("resume_bytes") else "",
                     **_j(jid, fence))
            run = ex.runs.get(jid)
            if run is not None:
                if fence <= run.fence:
                    log.info("job %s fence %s: already running under fence %s: the repeated dispatch is ignored",
                             jid, fence, run.fence, **_j(jid, fence))
                    continue
                self._stop(jid, run.fence, f"superseded by fence {fence}")
            queued = [w["fence"] for w in self.waiting if w["job_id"] == jid]
            if queued:
                if fence <= max(queued):
                    log.info("job %s fence %s: already waiting under fence %s: the repeated dispatch is ignored",
                             jid, fence, max(queued), **_j(jid, fence))
                    continue
                log.info("job %s fence %s: supersedes the waiting fence %s", jid, fence, max(queued), **_j(jid, fence))
                self.waiting = deque(w for w in self.waiting if w["job_id"] != jid)
            self.waiting.append(a)

    def start_waiting(self) -> None:
        ex = self.executor
        keys = {(a["job_id"], a["fence"]) for a in self.waiting}
        for key in [k for k in self.fetches if k not in keys]:      # dropped while fetching
            self.fetches.pop(key).abandon()
        self.resumed &= keys
        self.fetch_retry = {k: v for k, v in self.fetch_retry.items() if k in keys}
        for _ in range(len(self.waiting)):
            a = self.waiting.popleft()
            try:
                ready = self._resume_ready(a)
                if ready is None:
                    continue                      # re-dispatched meanwhile: drop it
                if not ready or not ex.can_start(a):
                    self.waiting.append(a)
                    continue
            except Exception as e:
                self._fail(a, f"the agent could not prepare it: {type(e).__name__}: {e}")
                continue
            self._start(a)
        live = {(r.job_id, r.fence) for r in ex.runs.values()} | {(a["job_id"], a["fence"]) for a in self.waiting}
        self.notes = {k: v for k, v in self.notes.items() if k in live}
        self.energy_marks = {k: v for k, v in self.energy_marks.items() if k in live}

    def _start(self, a: dict) -> None:
        ex = self.executor
        free = getattr(ex, "free", None)
        saved = {g: list(d) for g, d in free.items()} if isinstance(free, dict) else None
        try:
            run = ex.start(a)
        except Exception as e:
            run = ex.runs.get(a["job_id"])
            if run is None or run.fence != a["fence"]:
                if saved is not None:
                    ex.free = saved               # the GPUs it took are free again
            self._fail(a, f"the agent could not start it: {type(e).__name__}: {e}")
            return
        self._mark(run)

    # ------------------------------------------------------------------ checkpoints (agent/checkpoints.py)
    def _resume_ready(self, a: dict) -> bool | None:
        """Whether the assignment's checkpoint is in place: True (or none to fetch), False (a fetch
        under way), None (the controller no longer dispatches it here). A fetch that fails for the
        archive's sake (too big, not a safe archive, too slow) is refused: the job starts afresh, the
        reason in its RUNNING report."""
        key = (a["job_id"], a["fence"])
        if not a.get("resume_bytes") or key in self.resumed:
            return True
        ckpt = self.executor.checkpoint_dir(a["job_id"])
        if a.get("resume_from") == self.site and ckpt.is_dir() and any(ckpt.iterdir()):
            self.resumed.add(key)
            return True
        task = self.fetches.get(key)
        if task is None:
            if time.monotonic() < self.fetch_retry.get(key, 0.0):
                return False
            if int(a["resume_bytes"]) > self.max_checkpoint_bytes:
                self._afresh(a, ckpt, f"{int(a['resume_bytes']):,} bytes, over the agent's cap of "
                                      f"{ck.human(self.max_checkpoint_bytes)}")
                return True
            log.info("job %s fence %s: fetching its checkpoint (%s bytes, made on %s)", *key, a["resume_bytes"],
                     a.get("resume_from"), **_j(*key))
            self.fetches[key] = ck.Task(f"fetch-{key[0]}", lambda stop: self._fetch(a, ckpt, stop),
                                        self.checkpoint_timeout_s)
            return False
        if not task.done():
            if not task.overdue():
                return False
            task.abandon()
            task.error = ck.Cancelled(f"stuck past {self.checkpoint_timeout_s:g} s")
        del self.fetches[key]
        e = task.error
        if e is None:
            log.info("job %s fence %s: checkpoint fetched (%s bytes unpacked)", *key, f"{task.result:,}", **_j(*key))
            self.notes[key] = "resumes from its stored checkpoint"
            self.resumed.add(key)
            return True
        if isinstance(e, UserError) and status(e) in (409, 404):
            log.info("job %s fence %s: not dispatched here any more (%s): dropped", *key, e, **_j(*key))
            return None
        if isinstance(e, UserError) and (transient(e) or fatal(e)):
            self.fetch_retry[key] = time.monotonic() + max(2.0, 2 * self.interval_s)
            self._once(f"fetch-{key}", logging.WARNING, "job %s fence %s: cannot fetch its checkpoint yet (%s): "
                       "it waits", *key, e, **_j(*key))
            return False
        self._afresh(a, ckpt, f"{type(e).__name__}: {e}" if not isinstance(e, ck.BadArchive | UserError) else str(e))
        return True

    def _afresh(self, a: dict, ckpt: Path, why: str) -> None:
        key = (a["job_id"], a["fence"])
        log.warning("job %s fence %s: its stored checkpoint is refused (%s): it starts afresh", *key, why, **_j(*key))
        ck._empty(ckpt)
        self.notes[key] = f"its stored checkpoint was refused ({why}): started afresh"
        self.resumed.add(key)

    def _fetch(self, a: dict, ckpt: Path, stop: ck.Stop) -> int:
        """In a worker thread: download the job's stored checkpoint and unpack it, both bounded."""
        client = Client(*self._client_args)
        archive = self.tmpdir / f"fetch-{a['job_id']}-f{a['fence']}.tar.gz"
        try:
            ck.download(client, f"/v1/agent/{self.site}/jobs/{a['job_id']}/checkpoint", archive,
                        {"fence": a["fence"]}, self.max_checkpoint_bytes, stop)
            return ck.unpack(archive, ckpt, self.max_checkpoint_bytes, stop)
        finally:
            archive.unlink(missing_ok=True)
            client.close()

    def checkpoints(self) -> None:
        """Poll the upload worker; when idle, give it the next running job whose turn it is: it
        scans the checkpoint directory and, when there is a newer checkpoint under the cap, packs
        and uploads it. Never raises: uploads never hold up the loop."""
        try:
            self._checkpoints()
        except Exception as e:
            self._once("checkpoints", logging.ERROR, "checkpoint uploads: %s: %s", type(e).__name__, e, exc_info=True)

    def _checkpoints(self) -> None:
        now = time.monotonic()
        if self.upload is not None:
            key, task = self.upload
            if not task.done():
                if not task.overdue():
                    return
                task.abandon()
                task.error = ck.Cancelled(f"stuck past {self.checkpoint_timeout_s:g} s: abandoned")
            self.upload = None
            self._uploaded(key, task)
        live = {(r.job_id, r.fence): r for r in self.executor.runs.values() if r.announced and r.checkpoint_dir}
        self.tracks = {k: t for k, t in self.tracks.items() if k in live}
        due = [k for k in live if self.tracks.setdefault(k, Track()).next_try <= now]
        if not due:
            return
        key = min(due, key=lambda k: (self.tracks[k].next_try, k))
        tr, run = self.tracks[key], live[key]
        self.upload = (key, ck.Task(f"upload-{key[0]}", lambda stop: self._pack_upload(
            key, run.checkpoint_dir, tr.uploaded, stop), self.checkpoint_timeout_s))

    def _pack_upload(self, key: tuple[int, int], directory: str, uploaded: float, stop: ck.Stop) -> tuple:
        """In a worker thread: ("empty"|"unchanged"|"too big"|"changed"|"stored", ...)."""
        jid, fence = key
        s = ck.scan(directory)
        if s.newest is None:
            return ("empty",)
        if s.newest <= uploaded:
            return ("unchanged",)
        sig = (s.newest, s.total)
        if s.total > self.max_checkpoint_bytes:
            return ("too big", sig, s.total, len(s.files))
        archive = self.tmpdir / f"suanli-ckpt-{jid}-f{fence}.tar.gz"
        t0 = time.monotonic()
        try:
            log.info("job %s fence %s: packing its checkpoint (%d files, %s)", jid, fence, len(s.files),
                     ck.human(s.total), **_j(jid, fence))
            try:
                ck.pack(directory, s.files, archive, stop)
            except ck.Changed as e:
                return ("changed", str(e))
            size = archive.stat().st_size
            at = datetime.fromtimestamp(s.newest, UTC).isoformat()
            ck.upload(self._upload_client(), f"/v1/agent/{self.site}/jobs/{jid}/checkpoint", archive,
                      {"fence": fence, "at": at}, stop)
            return ("stored", s.newest, s.total, size, time.monotonic() - t0)
        finally:
            archive.unlink(missing_ok=True)

    def _upload_client(self) -> Client:
        if getattr(self, "_uclient", None) is None:
            self._uclient = Client(*self._client_args)       # the worker's own: never shared with the loop
        return self._uclient

    def _uploaded(self, key: tuple[int, int], task: ck.Task) -> None:
        """The loop takes a finished upload's outcome: record it, log a decision, back off on a refusal."""
        tr = self.tracks.get(key)
        if tr is None:
            return                             # the run is over
        jid, fence = key
        now = time.monotonic()
        e = task.error
        if e is None:
            kind = task.result[0]
            if kind == "stored":
                _, newest, total, size, took = task.result
                if tr.said:
                    log.info("job %s fence %s: checkpoint uploads work again", jid, fence, **_j(jid, fence))
                tr.uploaded, tr.delay, tr.said = newest, 0.0, ""
                tr.next_try = now + self.interval_s
                log.info("job %s fence %s: checkpoint stored (%s in files, %s packed, %.1f s)", jid, fence,
                         ck.human(total), ck.human(size), took, **_j(jid, fence))
                return
            if kind in ("empty", "unchanged", "changed"):
                tr.next_try = now + self.interval_s
                return
            if kind == "too big":
                _, _, total, n = task.result
                why = (f"its checkpoint directory holds {ck.human(total)} in {n} files, over the agent's cap of "
                       f"{ck.human(self.max_checkpoint_bytes)} (--max-checkpoint-bytes): not uploaded")
                self._backoff(key, tr, why, logging.WARNING)
                return
        if isinstance(e, UserError) and status(e) in (409, 404):
            log.info("job %s fence %s: checkpoint not stored (%s): no more uploads for this dispatch", jid, fence,
                     e, **_j(jid, fence))
            tr.next_try = float("inf")
            return
        if isinstance(e, ck.Cancelled) and self.stopping.is_set():
            return
        what = (f"the controller refused its checkpoint ({e})" if isinstance(e, UserError)
                else f"packing or uploading its checkpoint failed ({type(e).__name__}: {e})")
        self._backoff(key, tr, what, logging.WARNING if isinstance(e, UserError | ck.Cancelled) else logging.ERROR)

    def _backoff(self, key: tuple[int, int], tr: Track, why: str, level: int) -> None:
        tr.delay = max(2.0, 2 * self.interval_s) if tr.delay == 0 else min(2 * tr.delay, BACKOFF_MAX_S)
        tr.next_try = time.monotonic() + tr.delay
        if why != tr.said:                    # once per change, not at every try
            tr.said = why
            log.log(level, "job %s fence %s: %s; trying again in %.0f s, backing off up to %.0f s", *key, why,
                    tr.delay, BACKOFF_MAX_S, **_j(*key))

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self.stopping.set())
            except ValueError:          # not the main thread
                pass
        if self.metering is not None:
            self.metering.start()
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                    self._said.pop("step", None)
                except UserError as e:
                    if fatal(e):
                        raise
                    if transient(e):
                        self._away(e, f"the runs go on, their reports wait in the outbox; trying every "
                                      f"{self.interval_s:g} s")
                    else:
                        self._once("step", logging.ERROR, "the controller refused a call: %s", e)
                except Exception as e:         # a bug, a full disk: said, and the loop goes on
                    self._once("step", logging.ERROR, "the agent's step failed: %s: %s", type(e).__name__, e,
                               exc_info=True)
                self.stopping.wait(self.interval_s)
        finally:
            log.info("agent %s of site %s stops: stopping its %d run(s)", self.instance[:8], self.site,
                     len(self.executor.runs))
            if self.upload is not None:
                self.upload[1].abandon()      # a daemon thread: cancelled at its next read, never waited for
            for task in self.fetches.values():
                task.abandon()
            try:
                self.executor.stop_all()
            finally:
                ck.clean(self.tmpdir)         # what an abandoned worker was writing
                if self.metering is not None:     # after the runs: its last post must not delay their stop
                    try:
                        self.metering.stop()
                    except Exception as e:
                        log.error("meters: stopping: %s: %s", type(e).__name__, e)
                    self._mclient.close()
                self.client.close()
                if getattr(self, "_uclient", None) is not None:
                    self._uclient.close()
