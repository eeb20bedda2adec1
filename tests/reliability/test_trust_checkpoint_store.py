"""The checkpoint store is bounded ("Trust part two" 6, "Trust" 2's store part).

It used to grow forever: no quota, nothing deleted, and when its disk filled every upload was a
500, retried each second. Now: a per-tenant quota (`--checkpoint-quota-bytes`: an upload that
would pass it is refused with 507 in one line, its stream read no further than the quota), a full
disk (ENOSPC while writing) answers 507 and leaves no partial file, a job's checkpoint is deleted
`--checkpoint-keep-h` after the job ended (the controller's periodic sweep), and `.part` files
left by a killed controller are removed at start (only old ones: a replica may be uploading).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402
from svc import job_body, wait_for  # noqa: E402

from suanli.service import checkpoints  # noqa: E402
from suanli.service.checkpoints import CheckpointStore, OverQuota, StoreFull  # noqa: E402
from suanli.service.server import ThreadServer, build  # noqa: E402

GZ = {"Content-Type": "application/gzip"}
db_url = svc.db_url     # the fixture, used in this module


@pytest.fixture
def make_service(db_url, tmp_path):
    made = []

    def make(**bounds) -> svc.Service:
        app = build(svc.NETWORK, db_url, policy="fifo", tick_s=0.1, heartbeat_timeout_s=3600.0,
                    checkpoint_store=tmp_path / "store", **bounds)
        server = ThreadServer(app)
        made.append(server)
        return svc.Service(server.__enter__(), app, db_url)
    yield make
    for server in made:
        server.__exit__(None, None, None)


def _dispatch(service: svc.Service, acme, east, n: int) -> list[tuple[int, int]]:
    """n of acme's 1-GPU jobs RUNNING on east-1 (this test plays its agent): [(job id, fence)]."""
    assert east.post("/v1/agent/east-1/heartbeat", json={}).status_code == 200
    ids = [acme.post("/v1/jobs", json=job_body(name=f"j{k}", gpu_types=["h100"])).json()["id"] for k in range(n)]
    out = {}
    def claim():
        for a in east.post("/v1/agent/east-1/assignments").json():
            out[a["job_id"]] = a["fence"]
        return len(out) == n
    wait_for(claim)
    for j in ids:
        r = east.post(f"/v1/agent/east-1/jobs/{j}/report", json={"fence": out[j], "state": "RUNNING"})
        assert r.status_code == 200, r.text
    return [(j, out[j]) for j in ids]


def _put(east, job_id: int, fence: int, body: bytes):
    return east.put(f"/v1/agent/east-1/jobs/{job_id}/checkpoint", content=body, headers=GZ,
                    params={"fence": fence, "at": datetime.now(UTC).isoformat()})


def _refused_507(r) -> str:
    assert r.status_code == 507, (r.status_code, r.text)
    assert r.headers.get("retry-after")
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    return detail


def test_a_tenants_checkpoints_stop_at_its_quota(make_service, tmp_path):
    service = make_service(checkpoint_quota_bytes=1000)
    acme, rival = service.client(service.tenant("acme")), service.client(service.tenant("rival"))
    east = service.client(service.site_token("east-1"))
    (a, fa), (b, fb) = _dispatch(service, acme, east, 2)
    assert _put(east, a, fa, b"x" * 600).status_code == 200
    assert "quota" in _refused_507(_put(east, b, fb, b"y" * 600))       # 600 + 600 > 1000
    assert acme.get(f"/v1/jobs/{b}").json()["checkpoint_bytes"] is None
    assert _put(east, a, fa, b"z" * 900).status_code == 200             # a job's new checkpoint replaces its old
    assert _put(east, b, fb, b"y" * 100).status_code == 200             # 900 + 100
    assert "quota" in _refused_507(_put(east, b, fb, b"y" * 101))
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [f"{a}.tar.gz", f"{b}.tar.gz"]  # no .part
    # another tenant's quota is its own
    (c, fc), = _dispatch(service, rival, east, 1)
    assert _put(east, c, fc, b"r" * 1000).status_code == 200


def test_an_upload_past_the_quota_is_read_no_further():
    store = CheckpointStore(Path("/nonexistent-never-written"), quota_bytes=1000)
    read = []

    async def body():
        for k in range(10_000):
            read.append(k)
            yield b"x" * 100

    store.root = Path(os.environ.get("TMPDIR", "/tmp")) / f"suanli-quota-{os.getpid()}"
    try:
        with pytest.raises(OverQuota):
            asyncio.run(store.receive(1, body(), quota_left=1000))
        assert len(read) == 11                       # the chunk that passed it, and no more
        assert list(store.root.iterdir()) == []      # nothing kept
    finally:
        shutil.rmtree(store.root, ignore_errors=True)


def test_a_full_disk_answers_507_and_keeps_no_partial_file(make_service, tmp_path, monkeypatch):
    service = make_service()
    acme, east = service.client(service.tenant("acme")), service.client(service.site_token("east-1"))
    (a, fa), = _dispatch(service, acme, east, 1)
    assert _put(east, a, fa, b"old").status_code == 200
    written = []

    def full(f, chunk):                         # the disk fills after the first chunk
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(chunk)
        f.write(chunk)
    monkeypatch.setattr(CheckpointStore, "_write", staticmethod(full))

    def chunks():
        yield b"n" * 70_000
        yield b"n" * 70_000
    detail = _refused_507(east.put(f"/v1/agent/east-1/jobs/{a}/checkpoint", content=chunks(), headers=GZ,
                                   params={"fence": fa, "at": datetime.now(UTC).isoformat()}))
    assert "full" in detail and "No space left on device" in detail
    assert [p.name for p in (tmp_path / "store").iterdir()] == [f"{a}.tar.gz"]     # no .part left
    assert (tmp_path / "store" / f"{a}.tar.gz").read_bytes() == b"old"           # the stored one stays
    assert acme.get(f"/v1/jobs/{a}").json()["checkpoint_bytes"] == 3


def test_a_real_full_file_system(tmp_path):
    """The same on a 64 KiB tmpfs, where the mount is allowed (root, outside a locked-down container)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = CheckpointStore(mnt)

        async def body():
            for _ in range(100):
                yield b"x" * 8192
        with pytest.raises(StoreFull) as e:
            asyncio.run(store.receive(1, body()))
        assert e.value.errno == errno.ENOSPC
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_checkpoints_are_deleted_after_their_job_ended_and_old_part_files_at_start(make_service, tmp_path,
                                                                                   monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    old, young = store / ".77.abc.part", store / ".78.abc.part"
    old.write_bytes(b"killed mid-upload")
    young.write_bytes(b"a replica's upload")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(checkpoints, "SWEEP_EVERY_S", 0.2)
    service = make_service(checkpoint_quota_bytes=1000, checkpoint_keep_h=2 / 3600)     # kept 2 s
    wait_for(lambda: not old.exists())
    assert young.exists()
    acme, east = service.client(service.tenant("acme")), service.client(service.site_token("east-1"))
    (a, fa), (b, fb) = _dispatch(service, acme, east, 2)
    assert _put(east, a, fa, b"x" * 900).status_code == 200
    assert _put(east, b, fb, b"y" * 900).status_code == 507
    r = east.post(f"/v1/agent/east-1/jobs/{a}/report", json={"fence": fa, "state": "SUCCEEDED", "exit_code": 0})
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    assert (store / f"{a}.tar.gz").exists()                     # kept a while after the end ...
    wait_for(lambda: not (store / f"{a}.tar.gz").exists(), timeout=10)     # ... then deleted
    assert _put(east, b, fb, b"y" * 900).status_code == 200      # and its bytes count no more
