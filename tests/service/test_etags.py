"""ETags on the API's JSON reads: an unchanged resource answers 304 with no body to a poll that
names its tag; a change gives a new tag and the new body."""

from __future__ import annotations

import svc
from svc import job_body

db_url, service = svc.db_url, svc.service


def test_an_unchanged_job_answers_304_and_a_changed_one_a_new_body(service):
    c = service.client(service.tenant("acme"))
    jid = c.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]
    first = c.get(f"/v1/jobs/{jid}")
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('W/"')
    assert c.delete(f"/v1/jobs/{jid}").status_code == 200
    changed = c.get(f"/v1/jobs/{jid}", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["state"] == "CANCELLED"
    assert changed.headers["etag"] != tag
    # A cancelled job no longer changes, so the scheduler's ticks (every 0.2 s here) cannot
    # race this check, as they could while the job was queued.
    final = changed.headers["etag"]
    same = c.get(f"/v1/jobs/{jid}", headers={"If-None-Match": final})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == final
    listed = c.get("/v1/jobs")
    assert c.get("/v1/jobs", headers={"If-None-Match": listed.headers["etag"]}).status_code == 304
    assert c.get("/v1/jobs/999999", headers={"If-None-Match": tag}).status_code == 404     # errors pass through
