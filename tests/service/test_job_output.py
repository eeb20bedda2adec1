"""A job's output, as its owner finds it: where it lies on the site (`GET /v1/jobs/{id}`'s
`outputs`, `suanli job`), and its text (`GET /v1/jobs/{id}/logs`, `suanli logs`), the last MiB
the agent uploaded when the run ended; against a real `suanli serve` and a real agent."""

from __future__ import annotations

import os
import subprocess
import sys

import svc
from svc import job_body, wait_for

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module

MiB = 2**20


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "suanli.cli_service", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_a_jobs_output_is_recorded_and_read_by_its_owner_only(service, tmp_path):
    acme, rival = service.tenant("acme"), service.tenant("rival")
    work = tmp_path / "agents"
    service.start_agent("east-1", work)
    service.start_agent("west-1", work)
    # 1.5 MiB of numbered lines on stdout, then one line on stderr: more than the service keeps
    command = "seq -f 'line %07.0f' 0 149999 && echo 'the end, on stderr' >&2"
    with service.client(acme) as c:
        jid = c.post("/v1/jobs", json=job_body(name="talky", command=command)).json()["id"]
        job = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 90)
        assert job["state"] == "SUCCEEDED", job["reason"]
        [out] = wait_for(lambda: [o for o in c.get(f"/v1/jobs/{jid}").json()["outputs"] if o["size_bytes"]], 30)
        site_dir = work / job["site"] / str(jid)
        assert out["path"] == str(site_dir / f"fence-{out['fence']}.log") and out["site"] == job["site"]
        size = os.path.getsize(out["path"])
        assert out["size_bytes"] == size > 1.4 * MiB and out["kept_bytes"] == MiB

        got = c.get(f"/v1/jobs/{jid}/logs")
        assert got.status_code == 200, got.text
        logs = got.json()
        assert logs["fence"] == out["fence"] and logs["truncated"] is True
        with open(out["path"], "rb") as f:
            f.seek(size - MiB)
            assert logs["text"].encode() == f.read()           # the file's last MiB, byte for byte
        assert logs["text"].endswith("line 0149999\nthe end, on stderr\n")
        assert "line 0000000" not in logs["text"]
        assert c.get(f"/v1/jobs/{jid}/logs", params={"fence": 99}).status_code == 404

    with service.client(rival) as c:                    # another tenant: as if there were no such job
        r = c.get(f"/v1/jobs/{jid}/logs")
        assert (r.status_code, r.json()["detail"]) == (404, f"no job {jid}")
    with service.client(service.site_token(job["site"])) as c:
        assert c.get(f"/v1/jobs/{jid}/logs").status_code == 404
    with service.client(service.admin_token()) as c:
        assert c.get(f"/v1/jobs/{jid}/logs").json()["text"] == logs["text"]

    env = {"SUANLI_URL": service.url, "SUANLI_TOKEN": acme, "SUANLI_CONFIG": str(tmp_path / "none")}
    r = _cli("logs", str(jid), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == logs["text"]
    assert out["path"] in r.stderr and f"{size:,} bytes" in r.stderr
    r = _cli("job", str(jid), env=env)
    assert r.returncode == 0 and out["path"] in r.stdout.replace("\n", "") and f"suanli logs {jid}" in r.stdout
    r = _cli("logs", str(jid), env={**env, "SUANLI_TOKEN": rival})
    assert (r.returncode, r.stdout, r.stderr.strip()) == (2, "", f"error: 404: no job {jid}")


def test_a_job_without_output_yet_says_so(service, tmp_path):
    acme = service.tenant("acme")
    with service.client(acme) as c:                     # no agent: it stays PENDING/PLACED
        jid = c.post("/v1/jobs", json=job_body()).json()["id"]
        assert c.get(f"/v1/jobs/{jid}/logs").json() == {"job_id": jid, "fence": None, "runs": [],
                                                        "truncated": False, "text": ""}
    env = {"SUANLI_URL": service.url, "SUANLI_TOKEN": acme, "SUANLI_CONFIG": str(tmp_path / "none")}
    r = _cli("logs", str(jid), env=env)
    assert (r.returncode, r.stdout, r.stderr.strip()) == (0, "", f"job {jid}: no output yet (no run has started)")


def test_output_uploads_are_bounded_and_fenced(service, tmp_path):
    acme = service.tenant("acme")
    work = tmp_path / "agents"
    service.start_agent("east-1", work)
    service.start_agent("west-1", work)
    with service.client(acme) as c:
        jid = c.post("/v1/jobs", json=job_body(command="sleep 60", work_h=0.05)).json()["id"]
        job = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING" and j, 60)
        # the RUNNING report named the file before a byte was uploaded
        [out] = wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["outputs"], 30)
        assert out["path"].endswith(f"/{job['site']}/{jid}/fence-{out['fence']}.log")
        # while it runs, its usage so far is priced as metering would price it now: energy too
        u = wait_for(lambda: (u := c.get(f"/v1/jobs/{jid}").json()["usage"])["energy_kwh"] > 0 and u, 30)
        assert u["estimated"] is True and u["gpu_seconds"] > 0 and u["energy_cny"] > 0
        assert abs(u["energy_kwh"] - (u["grid_kwh"] + u["renewable_kwh"] + u["battery_kwh"])) < 1e-9
    site, fence = job["site"], out["fence"]
    url = f"/v1/agent/{site}/jobs/{jid}/output"
    octet = {"Content-Type": "application/octet-stream"}
    with service.client(service.site_token(site)) as c:
        params = {"fence": fence, "size": MiB + 1, "path": "/x"}
        r = c.put(url, params=params, content=b"x" * (MiB + 1), headers=octet)
        assert r.status_code == 413, r.text
        r = c.put(url, params={**params, "size": 3}, content=b"four", headers=octet)
        assert r.status_code == 422 and r.json()["detail"] == "size: 3 is less than the 4 bytes sent"
        r = c.put(url, params={**params, "fence": fence + 1, "size": 4}, content=b"four", headers=octet)
        assert r.status_code == 409, r.text
    other = "west-1" if site == "east-1" else "east-1"
    with service.client(service.site_token(other)) as c:           # another site's agent
        r = c.put(f"/v1/agent/{other}/jobs/{jid}/output", params={"fence": fence, "size": 4, "path": "/x"},
                  content=b"four", headers=octet)
        assert r.status_code == 404
    with service.client(acme) as c:                                 # a tenant cannot write a job's output
        r = c.put(url, params={"fence": fence, "size": 4, "path": "/x"}, content=b"four", headers=octet)
        assert r.status_code == 403
        assert c.get(f"/v1/jobs/{jid}/logs").json()["text"] == ""   # nothing of the refused uploads stored
        assert c.delete(f"/v1/jobs/{jid}").status_code == 200
