"""Nothing a job or a report contains can stop an agent (issues "Trust" 1 and 2), against a real
server and real agent processes (tests/service/svc.py):

1. a job whose command holds a NUL byte fails alone; no agent that claims it dies;
2. a stored checkpoint holding a link, an absolute or `..` name, a device, or more bytes than the
   agent's cap is refused (the job starts afresh), never followed, and never kills the agent;
3. packing a 4 GiB sparse checkpoint does not stop the site's heartbeats: no preemption, the
   other tenant's job runs once;
4. uploads the controller refuses (413, 507, 503) back off per job while the agent goes on
   claiming work;
5. archives are packed in the agent's own directory (never the machine's temporary directory),
   leftovers are removed at start, and an agent stopped while packing stops its jobs at once;
6. a dispatch that reaches the agent twice starts one run (a newer fence supersedes the old run);
7. the agent says whom it talks to, and when it cannot reach its controller (once per outage,
   and again when it is back)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import pytest  # noqa: E402
import svc  # noqa: E402
from fastapi import HTTPException  # noqa: E402
from sqlalchemy.exc import DataError  # noqa: E402
from svc import NETWORK, job_body, stop_all, wait_for  # noqa: E402

from suanli.service import auth  # noqa: E402
from suanli.service.db import open_db  # noqa: E402
from suanli.service.models import Job as JobRow  # noqa: E402
from suanli.service.models import SiteAgent  # noqa: E402

db_url, service = svc.db_url, svc.service


def start_agent(service, site: str, workdir: Path, *extra: str,
                env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """A real agent process whose log (stderr) goes to `<workdir>/agent-<site>.log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    svc.searchable(workdir)
    logpath = workdir / f"agent-{site}.log"
    with open(logpath, "ab") as log:
        p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", service.url,
                              "--executor", "local", "--workdir", str(workdir),
                              "--interval-s", "0.2", *extra], stdout=log, stderr=subprocess.STDOUT,
                             env=dict(svc.agent_env(service.site_token(site)), **(env or {})))
    service.agents.append(p)
    return p, logpath


def sleeping(arg: str) -> bool:
    """Whether a `sleep ARG` process runs on this machine (not a zombie)."""
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if (d / "cmdline").read_bytes() == b"sleep\x00" + arg.encode() + b"\x00" and \
                    (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        except OSError:
            continue
    return False


def alive(pid: int = 0, group: int = 0) -> bool:
    """Whether process `pid` (or any process of group `group`) runs: not gone, not a zombie
    (an orphan waits for a reaper that a container may lack)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and (int(stat.parent.name) == pid or (group and int(fields[2]) == group)):
            return True
    return False


def up(c, site: str) -> bool:
    return any(s["id"] == site and s["up"] for s in c.get("/v1/sites").json())


def job(c, jid: int) -> dict:
    return c.get(f"/v1/jobs/{jid}").json()


def states(j: dict) -> list[str]:
    return [t["to_state"] for t in j["transitions"]]


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def store_checkpoint(service, jid: int, archive: bytes, made_on: str = "west-1") -> None:
    """Put `archive` in the controller's store as job `jid`'s checkpoint, made on `made_on`: its
    next dispatch resumes from it."""
    store = service.app.state.controller.store
    store.root.mkdir(parents=True, exist_ok=True)
    store.path(jid).write_bytes(archive)
    with service.sessions.begin() as s:
        row = s.get(JobRow, jid)
        row.checkpoint_site, row.checkpoint_bytes, row.checkpoint_h = made_on, len(archive), 0.0


# ----------------------------------------------------------------------------- 1. a NUL byte
def test_a_job_whose_command_holds_a_nul_byte_fails_alone_and_no_agent_dies(service, tmp_path):
    """The API refuses a NUL byte at its door; one that got into the database anyway (written
    before that check, or by hand) reaches the agents: each fails the job with the reason
    ("the command holds a NUL byte") and goes on; after its attempts the job is FAILED, and both
    sites run the next job."""
    c = service.client(service.tenant("acme"))
    jid = c.post("/v1/jobs", json=job_body(command="echo placeholder")).json()["id"]
    if service.db_url.startswith("postgresql"):     # PostgreSQL's text holds no NUL: the attack ends here
        with pytest.raises(DataError, match="NUL"), service.sessions.begin() as s:
            s.get(JobRow, jid).command = "echo a\x00b"
        return
    with service.sessions.begin() as s:
        s.get(JobRow, jid).command = "echo a\x00b"
    east, east_log = start_agent(service, "east-1", tmp_path)
    west, _ = start_agent(service, "west-1", tmp_path)
    done = wait_for(lambda: (j := job(c, jid))["state"] in ("FAILED", "SUCCEEDED") and j, 90,
                    dump=lambda: (east.poll(), west.poll(), east_log.read_text()[-2000:]))
    assert done["state"] == "FAILED" and "NUL byte" in done["reason"], done["reason"]
    assert states(done).count("TRANSFERRING") == service.app.state.controller.max_attempts
    assert east.poll() is None and west.poll() is None                    # no agent died
    for gpu_type, site in (("h100", "east-1"), ("a800", "west-1")):       # and each still runs jobs
        nxt = c.post("/v1/jobs", json=job_body(command="true", gpu_types=[gpu_type])).json()["id"]
        ok = wait_for(lambda: (j := job(c, nxt))["state"] == "SUCCEEDED" and j, 60)   # noqa: B023
        assert ok["site"] == site
    text = east_log.read_text() + (tmp_path / "agent-west-1.log").read_text()
    failed = re.findall(rf"job {jid} fence \d+: failed: the agent could not start it: "
                        r"ValueError: the command holds a NUL byte", text)
    assert len(failed) == service.app.state.controller.max_attempts, text


# ----------------------------------------------------------------------------- 2. bad archives
def test_a_checkpoint_holding_an_absolute_link_is_refused_and_the_job_starts_afresh(service, tmp_path):
    c = service.client(service.tenant("acme"))
    seen = svc.writable(tmp_path) / "seen"
    jid = c.post("/v1/jobs", json=job_body(command=f'ls -A "$SUANLI_CHECKPOINT_DIR" > {seen}',
                                           gpu_types=["h100"])).json()["id"]
    store_checkpoint(service, jid, _tar([(_member("state.bin"), b"x" * 100),
                                         (_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), None)]))
    east, log = start_agent(service, "east-1", tmp_path)
    done = wait_for(lambda: (j := job(c, jid))["state"] in ("FAILED", "SUCCEEDED") and j, 60,
                    dump=lambda: log.read_text()[-2000:])
    assert done["state"] == "SUCCEEDED", done
    assert seen.read_text() == ""                                          # afresh: nothing of the archive
    running = next(t["reason"] for t in done["transitions"] if t["to_state"] == "RUNNING")
    assert "stored checkpoint was refused ('passwd' is a symbolic link" in running and "started afresh" in running
    assert east.poll() is None
    assert "its stored checkpoint is refused" in log.read_text()


def test_a_checkpoint_bigger_than_the_agents_cap_is_not_downloaded_whole(service, tmp_path):
    """A gzip bomb (64 MiB of zeros, 64 KiB packed) past `--max-checkpoint-bytes 1MiB`: refused
    while it unpacks, the job starts afresh."""
    c = service.client(service.tenant("acme"))
    seen = svc.writable(tmp_path) / "seen"
    jid = c.post("/v1/jobs", json=job_body(command=f'du -sb "$SUANLI_CHECKPOINT_DIR" | cut -f1 > {seen}',
                                           gpu_types=["h100"])).json()["id"]
    store_checkpoint(service, jid, _tar([(_member("zeros"), bytes(64 * 2**20))]))
    east, log = start_agent(service, "east-1", tmp_path, "--max-checkpoint-bytes", "1MiB")
    done = wait_for(lambda: (j := job(c, jid))["state"] in ("FAILED", "SUCCEEDED") and j, 60,
                    dump=lambda: log.read_text()[-2000:])
    assert done["state"] == "SUCCEEDED"
    assert int(seen.read_text()) < 2**20
    running = next(t["reason"] for t in done["transitions"] if t["to_state"] == "RUNNING")
    assert "unpacks to more than 1.0 MiB" in running, running
    assert east.poll() is None


@pytest.mark.parametrize("members, why", [
    ([(_member("a", tarfile.SYMTYPE, "/etc/passwd"), None)], "'a' is a symbolic link"),
    ([(_member("a", tarfile.SYMTYPE, "b"), None)], "'a' is a symbolic link"),
    ([(_member("b"), b"1"), (_member("a", tarfile.LNKTYPE, "b"), None)], "'a' is a hard link"),
    ([(_member("../escape"), b"1")], "leaves the checkpoint directory"),
    ([(_member("d/../../escape"), b"1")], "leaves the checkpoint directory"),
    ([(_member("/tmp/abs"), b"1")], "is an absolute path"),
    ([(_member("null", tarfile.CHRTYPE), None)], "'null' is a device"),
    ([(_member("fifo", tarfile.FIFOTYPE), None)], "'fifo' is a FIFO"),
    ([(_member("big"), bytes(2000))], "unpacks to more than"),
])
def test_unpack_refuses_what_is_not_a_plain_file_inside_the_directory(tmp_path, members, why):
    from suanli.agent.checkpoints import BadArchive, unpack
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar(members))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "old").write_text("old")
    with pytest.raises(BadArchive, match=why.replace("(", r"\(")):
        unpack(archive, ckpt, max_bytes=1000)
    assert list(ckpt.iterdir()) == []                       # left empty: the job starts afresh
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs").exists()


def test_unpack_takes_a_good_archive_and_refuses_garbage(tmp_path):
    from suanli.agent.checkpoints import BadArchive, unpack
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar([(_member("d", tarfile.DIRTYPE), None), (_member("d/x"), b"abc"),
                              (_member("./y"), b"de")]))
    ckpt = tmp_path / "ckpt"
    assert unpack(archive, ckpt, max_bytes=5) == 5
    assert (ckpt / "d" / "x").read_bytes() == b"abc" and (ckpt / "y").read_bytes() == b"de"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(BadArchive, match="not a readable gzipped tar"):
        unpack(archive, ckpt, max_bytes=5)
    archive.write_bytes(_tar([(_member(f"f{i}"), b"") for i in range(20)]))
    with pytest.raises(BadArchive, match="more than 10 entries"):
        unpack(archive, ckpt, max_bytes=5, max_members=10)


def test_pack_reads_regular_files_only_and_counts_a_sparse_file_whole(tmp_path):
    from suanli.agent.checkpoints import Stop, pack, scan
    d = tmp_path / "ckpt"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "w.bin").write_bytes(b"w" * 10)
    (d / "passwd").symlink_to("/etc/passwd")
    (d / "outside").symlink_to(tmp_path)
    os.mkfifo(d / "fifo")
    with open(d / "sparse", "wb") as f:
        f.truncate(2**30)
    s = scan(d)
    assert [n for n, _ in s.files] == ["sparse", "sub/w.bin"] and s.total == 2**30 + 10 and s.skipped == 3
    small = [(n, z) for n, z in s.files if n != "sparse"]
    pack(d, small, tmp_path / "a.tar.gz", Stop())
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert [(m.name, m.isreg()) for m in tar] == [("sub/w.bin", True)]


def test_a_failed_runs_log_tail_is_read_only_from_a_plain_file(tmp_path):
    """The log lies in the job's directory: a job that replaced it by a link to a file it may not
    read, or by a FIFO (a reader would wait forever), gets no tail; control characters are escaped."""
    from suanli.agent.agent import clean_text, log_tail
    (tmp_path / "secret").write_text("root:x:0:0")
    (tmp_path / "link.log").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "fifo.log")
    (tmp_path / "plain.log").write_bytes(b"x" * 5000 + b"end\x00\x1b[2J")
    assert log_tail(tmp_path / "link.log") == "" and log_tail(tmp_path / "fifo.log") == ""
    tail = log_tail(tmp_path / "plain.log")
    assert len(tail) == 2000 and clean_text(tail, 2000, tail=True).endswith("end\\x00\\x1b[2J")


# ----------------------------------------------------------------------------- 3. heartbeats
def _heartbeat_gaps(service, site: str, until, timeout: float) -> list[float]:
    """The gaps between the site's heartbeats (as the server saw them) until `until()`."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        with service.sessions() as s:
            t = s.get(SiteAgent, site).last_seen_at
        if not seen or t != seen[-1]:
            seen.append(t)
        time.sleep(0.05)
    return [(b - a).total_seconds() for a, b in zip(seen, seen[1:], strict=False)]


def test_packing_a_4gib_sparse_checkpoint_does_not_stop_heartbeats(service, tmp_path):
    """Tenant acme's job writes a 4 GiB sparse file in its checkpoint directory beside tenant
    bolt's job on east-1 (server: heartbeat timeout 3 s). The agent packs and uploads it (under
    its default cap, 16 GiB) beside its loop: heartbeats keep their interval, east-1 is never down, bolt's job
    is not preempted and runs once."""
    c_acme, c_bolt = service.client(service.tenant("acme")), service.client(service.tenant("bolt"))
    ran = svc.writable(tmp_path) / "ran"
    east, log = start_agent(service, "east-1", tmp_path / "w")      # its cap: 16 GiB
    wait_for(lambda: up(c_acme, "east-1"), 30)
    other = c_bolt.post("/v1/jobs", json=job_body(command=f"echo $SUANLI_JOB_ID >> {ran}; sleep 60",
                                                  gpu_types=["h100"], work_h=0.05)).json()["id"]
    wait_for(lambda: job(c_bolt, other)["state"] == "RUNNING", 30)
    big = c_acme.post("/v1/jobs", json=job_body(
        command='truncate -s 4G "$SUANLI_CHECKPOINT_DIR/state.bin"; sleep 60', gpu_types=["h100"],
        work_h=0.05)).json()["id"]
    wait_for(lambda: job(c_acme, big)["state"] == "RUNNING", 30)
    t0 = time.monotonic()
    gaps = _heartbeat_gaps(service, "east-1", lambda: "checkpoint stored" in log.read_text(), 240)
    took = time.monotonic() - t0
    text = log.read_text()
    assert f"job {big} fence 1: packing its checkpoint (1 files, 4.0 GiB)" in text, text[-3000:]
    assert f"job {big} fence 1: checkpoint stored" in text, text[-3000:]
    print(f"heartbeats while packing and uploading a 4 GiB sparse checkpoint ({took:.1f} s): "
          f"{len(gaps)} gaps, longest {max(gaps):.2f} s (interval 0.2 s, server timeout 3 s)")
    # the server's timeout is what matters (no gap reaches it: the site is never down); the gaps
    # stay near the interval on an idle machine (0.45 s here), the old loop's was the whole packing
    assert max(gaps) < service.app.state.controller.heartbeat_timeout_s, gaps
    for cl, jid in ((c_bolt, other), (c_acme, big)):
        j = job(cl, jid)
        assert j["state"] == "RUNNING" and "PREEMPTED" not in states(j), j["transitions"]
    assert ran.read_text().split() == [str(other)]                         # ran once
    assert east.poll() is None
    for cl, jid in ((c_bolt, other), (c_acme, big)):
        cl.delete(f"/v1/jobs/{jid}")


# ----------------------------------------------------------------------------- 4. refused uploads
@pytest.mark.parametrize("refusal", [413, 507, 503])
def test_refused_uploads_back_off_and_the_agent_goes_on_claiming(service, tmp_path, refusal):
    """The store refuses every upload; the job writes a new checkpoint every 0.1 s. The agent
    tries again with an exponential back-off (not at each of its 0.2 s steps), logs the refusal
    once, and meanwhile claims and runs another job."""
    tries: list[float] = []

    async def refuse(job_id, stream, max_bytes=None, quota_left=None):
        tries.append(time.monotonic())
        raise HTTPException(refusal, {413: "too large", 507: "storage full", 503: "try later"}[refusal])
    service.app.state.controller.store.receive = refuse
    c = service.client(service.tenant("acme"))
    east, log = start_agent(service, "east-1", tmp_path)
    writer = c.post("/v1/jobs", json=job_body(
        command='for i in $(seq 1 300); do head -c 1000 /dev/urandom > "$SUANLI_CHECKPOINT_DIR/c.tmp"; '
                'mv "$SUANLI_CHECKPOINT_DIR/c.tmp" "$SUANLI_CHECKPOINT_DIR/c.bin"; sleep 0.1; done',
        gpu_types=["h100"], work_h=0.05)).json()["id"]
    wait_for(lambda: tries, 30, dump=lambda: log.read_text()[-2000:])         # the first refusal
    first = tries[0]
    other = c.post("/v1/jobs", json=job_body(command="true", gpu_types=["h100"])).json()["id"]
    wait_for(lambda: job(c, other)["state"] == "SUCCEEDED", 10, dump=lambda: log.read_text()[-2000:])
    time.sleep(max(0.0, first + 8 - time.monotonic()))
    window = [t for t in tries if t <= first + 8]
    print(f"{refusal}: {len(window)} upload tries in 8 s (without back-off: ~40)")
    assert 2 <= len(window) <= 5, [round(t - first, 2) for t in window]    # 0, 2, 6 s
    assert east.poll() is None and job(c, writer)["state"] == "RUNNING"
    text = log.read_text()
    assert text.count(f"job {writer} fence 1: the controller refused its checkpoint ({refusal}:") == 1, text
    c.delete(f"/v1/jobs/{writer}")


# ----------------------------------------------------------------------------- 5. leftovers, stop
def test_archives_stay_in_the_agents_directory_and_leftovers_are_removed(service, tmp_path):
    work, systmp = tmp_path / "w", tmp_path / "systmp"
    systmp.mkdir()
    left = work / "east-1" / "tmp" / "suanli-ckpt-7-f1.tar.gz"         # what a killed agent left
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half an archive")
    c = service.client(service.tenant("acme"))
    east, log = start_agent(service, "east-1", work, env={"TMPDIR": str(systmp)})
    jid = c.post("/v1/jobs", json=job_body(command='echo 1 > "$SUANLI_CHECKPOINT_DIR/c"; sleep 30',
                                           gpu_types=["h100"], work_h=0.05)).json()["id"]
    wait_for(lambda: "checkpoint stored" in log.read_text(), 30, dump=lambda: log.read_text()[-2000:])
    assert not left.exists() and "removed 1 archive(s) a previous agent left" in log.read_text()
    assert list(systmp.iterdir()) == []                # nothing in the machine's temporary directory
    assert service.app.state.controller.store.has(jid)
    c.delete(f"/v1/jobs/{jid}")


def test_an_agent_stopped_while_packing_stops_its_jobs_at_once(service, tmp_path):
    c = service.client(service.tenant("acme"))
    pid_file = svc.writable(tmp_path) / "pid"
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    east, log = start_agent(service, "east-1", tmp_path / "w", env={"TMPDIR": str(systmp)})    # its cap: 16 GiB
    c.post("/v1/jobs", json=job_body(command=f'truncate -s 4G "$SUANLI_CHECKPOINT_DIR/state.bin"; '
                                             f'sleep 301 & echo started > {pid_file}; wait', gpu_types=["h100"],
                                     work_h=0.1))
    packing = [tmp_path / "w" / "east-1" / "tmp", systmp]            # where an archive is written

    def under_way() -> bool:             # an archive with bytes in it: packing has begun
        return any(a.stat().st_size > 0 for p in packing if p.is_dir() for a in p.glob("suanli-ckpt-*"))
    wait_for(lambda: pid_file.exists() and under_way(), 60, dump=lambda: log.read_text()[-2000:])
    # the job's own pids are those of its PID namespace: find its sleep by its command line
    assert sleeping("301")
    t0 = time.monotonic()
    east.send_signal(signal.SIGTERM)
    try:
        east.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent did not stop within 30 s of SIGTERM; {log.read_text()[-2000:]}")
    took = time.monotonic() - t0
    print(f"stopped while packing 4 GiB: exited {took:.2f} s after SIGTERM")
    assert took < 5, took
    wait_for(lambda: not sleeping("301"), 5)              # its job is stopped (SIGTERM, at once)
    assert list((tmp_path / "w" / "east-1" / "tmp").iterdir()) == []


# ----------------------------------------------------------------------------- 6. a repeated dispatch
def test_a_dispatch_that_reaches_the_agent_twice_starts_one_run(service, tmp_path):
    """An agent in this process, whose claims come back twice (a proxy replaying the answer): the
    same fence starts one run; a newer fence (a second claim) stops the old run before the new
    one starts."""
    from suanli.agent.agent import Agent
    c = service.client(service.tenant("acme"))
    ran = svc.writable(tmp_path) / "ran"
    ag = Agent("east-1", service.url, service.site_token("east-1"), workdir=str(tmp_path / "w"), interval_s=0.2)
    real = ag.client.call
    second_claim = []

    def call(method, path, **kw):
        if path.endswith("/assignments") and second_claim:
            jid = second_claim.pop()
            with service.sessions.begin() as s:          # the controller dispatches it again
                row = s.get(JobRow, jid)
                row.fence += 1
                return [{"job_id": jid, "fence": row.fence, "tenant_id": row.tenant_id, "name": row.name,
                         "command": row.command, "gpus": 1,
                         "gpu_type": "h100", "start_h": row.start_h, "end_h": row.end_h, "checkpoint_h": None}]
        out = real(method, path, **kw)
        return out + out if path.endswith("/assignments") else out      # every claim answered twice
    ag.client.call = call
    try:
        jid = c.post("/v1/jobs", json=job_body(command=f"echo $SUANLI_FENCE >> {ran}; sleep 60",
                                               gpu_types=["h100"], work_h=0.05)).json()["id"]

        def step_until(cond):
            def once():
                ag.step()
                return cond()
            return wait_for(once, 30, 0.2)
        step_until(lambda: ran.exists() and job(c, jid)["state"] == "RUNNING")
        for _ in range(5):
            ag.step()
        first = ag.executor.runs[jid]
        assert ran.read_text().split() == ["1"] and first.fence == 1             # one run
        assert ag.executor.busy()["h100"] == 1
        second_claim.append(jid)
        step_until(lambda: len(ran.read_text().split()) == 2)
        assert ran.read_text().split() == ["1", "2"] and ag.executor.runs[jid].fence == 2
        wait_for(lambda: not alive(group=first.pid), 5)   # the superseded run is gone
        assert ag.executor.busy()["h100"] == 1
        step_until(lambda: job(c, jid)["transitions"][-1]["to_state"] == "RUNNING")
    finally:
        ag.executor.stop_all()
        ag.client.close()


# ----------------------------------------------------------------------------- 7. logs
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_agent_says_whom_it_talks_to_and_when_it_cannot_reach_it(tmp_path):
    """An agent started before its controller (a closed port): its first line names the
    controller, site, executor and workdir; it says once that it cannot reach the controller,
    and once that it is back when the server starts."""
    port = _port()
    db = f"sqlite:///{tmp_path / 'suanli.db'}"
    sessions = open_db(db)
    with sessions.begin() as s:
        token = auth.create_site_token(s, "east-1")
    url = f"http://127.0.0.1:{port}"
    logpath = tmp_path / "agent.log"
    svc.searchable(tmp_path)
    with open(logpath, "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", url,
                                  "--workdir", str(tmp_path / "w"), "--interval-s", "0.2",
                                  "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT,
                                 env=svc.agent_env(token))
    server = None
    try:
        wait_for(lambda: "cannot reach" in logpath.read_text(), 30)
        time.sleep(2.5)                                  # it keeps trying (every second), saying nothing more
        with open(tmp_path / "serve.log", "wb") as slog:
            server = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK,
                                       "--db", db, "--port", str(port), "--policy", "fifo", "--tick-s", "0.2",
                                       "--checkpoint-store", str(tmp_path / "store")], stdout=slog,
                                      stderr=subprocess.STDOUT)
        wait_for(lambda: "answers again" in logpath.read_text(), 60,
                 dump=lambda: (tmp_path / "serve.log").read_text()[-2000:])
        wait_for(lambda: "polling every" in logpath.read_text(), 30)
    finally:
        stop_all([agent, server])
    lines = [json.loads(line) for line in logpath.read_text().splitlines() if line.strip()]
    first = lines[0]
    assert first["level"] == "info" and first["logger"] == "suanli.agent", first
    for part in (url, "site east-1", "executor local", f"workdir {tmp_path / 'w'}"):
        assert part in first["message"], first
    away = [x for x in lines if "cannot reach" in x["message"]]
    assert len(away) == 1 and away[0]["level"] == "warning" and url in away[0]["message"], lines
    back = [x for x in lines if "answers again" in x["message"]]
    assert len(back) == 1, lines
    assert token not in logpath.read_text()
    assert agent.returncode == 0


def test_the_agent_refuses_a_bad_log_option(tmp_path):
    r = subprocess.run([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", "http://127.0.0.1:9",
                        "--log-format", "xml"], capture_output=True, text=True, timeout=60,
                       env=svc.agent_env("t"))
    assert r.returncode == 2 and "--log-format: 'xml' is not one of text, json" in r.stderr, r.stderr
