"""The live service's policy learns from the jobs that ended (issue "Decisions under
uncertainty", 2): the controller hands `StateView.ended` (each succeeded job with the work it
really took) to the `suanli` policy, whose run-time predictor then books a tenant's next job
for what its jobs really take, not for the estimate it keeps writing. Real server, real agent.
"""

from __future__ import annotations

import svc
from svc import NETWORK, Service, job_body, wait_for

from suanli.service.server import ThreadServer, build

db_url = svc.db_url

ESTIMATE_H = 1 / 3600          # the tenant says one second ...
COMMAND = "sleep 4"            # ... and each job takes four


def test_a_tenant_s_jobs_are_booked_for_what_they_really_take(db_url, tmp_path):
    app = build(NETWORK, db_url, policy="suanli", tick_s=0.2, checkpoint_store=tmp_path / "store")
    with ThreadServer(app) as url:
        s = Service(url, app, db_url)
        try:
            c = s.client(s.tenant("acme"))
            s.start_agent("east-1", tmp_path / "work")
            wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json()), 30)

            first = c.post("/v1/jobs", json=job_body(name="t0", command=COMMAND, work_h=ESTIMATE_H)).json()["id"]
            planned = lambda j: j["explanation"]["chosen"]["end_h"] - j["explanation"]["chosen"]["start_h"]  # noqa: E731
            j0 = wait_for(lambda: (j := c.get(f"/v1/jobs/{first}").json())["state"] == "SUCCEEDED" and j, 60)
            before = planned(j0)
            for i in range(1, 4):                       # three more, one after the other
                jid = c.post("/v1/jobs", json=job_body(name=f"t{i}", command=COMMAND, work_h=ESTIMATE_H)).json()["id"]
                wait_for(lambda jid=jid: c.get(f"/v1/jobs/{jid}").json()["state"] == "SUCCEEDED", 60)
            assert len(app.state.controller._ended) >= 3          # read at each offer
            # the predictor: the median of [1, 1, ~4, ~4, ~4, ~4] (two prior ratios of 1): ~4
            last = c.post("/v1/jobs", json=job_body(name="next", command=COMMAND, work_h=ESTIMATE_H)).json()["id"]
            jl = wait_for(lambda: (j := c.get(f"/v1/jobs/{last}").json())["explanation"] and j, 60)
            assert planned(jl) > 2.5 * before, (before, planned(jl))
        finally:
            svc.stop_all(s.agents)
