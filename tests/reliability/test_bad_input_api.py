"""Schemathesis against the service's own OpenAPI schema (reliability issue #9, part 3a).

A real server (uvicorn on loopback, in a thread) over SQLite, its controller loop running;
every generated request is sent with a real tenant, admin and site-agent token in turn (an
unauthenticated request only meets the bearer check). Checked: no 5xx, and every response
conforms to the schema the service publishes (`response_schema_conformance`), with a
declared content type.

The CI run is bounded (`SUANLI_FUZZ_EXAMPLES`, default 25 per operation: well under 60 s on
two cores); the long run is the same test with a larger figure, marked `slow`:

    SUANLI_FUZZ_EXAMPLES=1000 .venv/bin/pytest -q tests/reliability/test_bad_input_api.py -s
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)

from suanli.service.server import ThreadServer, build  # noqa: E402

EXAMPLES = int(os.environ.get("SUANLI_FUZZ_EXAMPLES", "25"))
SITE = "east-1"                   # the site of the agent token (tests/service/data/network.yaml)
CASES: dict[str, int] = {}        # requests sent per role, printed at the end (-s) for the record


class Live:
    def __init__(self, url: str, app: Any) -> None:
        self.url, self.app = url, app
        self.tokens: dict[str, str] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("fuzz") / "suanli.db"
    app = build(svc.NETWORK, f"sqlite:///{db}", policy="fifo", tick_s=0.2, heartbeat_timeout_s=3.0)
    with ThreadServer(app) as url:
        lv = Live(url, app)
        app.state.rate_limiter.configure(None)    # fuzzing is a flood by design: 429s would hide the handlers
        sessions = app.state.controller.sessions
        from suanli.service import auth
        with sessions.begin() as s:
            lv.tokens["tenant"] = auth.create_tenant(s, "acme", {}, None)
            lv.tokens["admin"] = auth.create_admin_token(s)
            lv.tokens["site"] = auth.create_site_token(s, SITE)
        # a few jobs, so that generated small ids find real rows (and cancellations happen)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {lv.tokens['tenant']}"}) as c:
            for _ in range(3):
                assert c.post("/v1/jobs", json=svc.job_body()).status_code == 201
        yield lv
    print(f"\nschemathesis: requests sent per role {CASES} (examples per operation {EXAMPLES})")


def _published_schema() -> dict[str, Any]:
    """The OpenAPI document the service publishes, from an app over a throwaway database (the
    schema is code, not data; loaded eagerly because schemathesis' lazy fixture loader does not
    run under pytest 9)."""
    with tempfile.TemporaryDirectory() as d:
        app = build(svc.NETWORK, f"sqlite:///{d}/schema.db", policy="fifo")
        doc = app.openapi()
        app.state.controller.sessions.kw["bind"].dispose()
        return doc


@schemathesis.serializer("application/gzip")
def _bytes(_ctx: Any, value: Any) -> bytes:
    """A checkpoint upload's body (binary in the schema): whatever was generated, as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


schema = schemathesis.openapi.from_dict(_published_schema())
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case, live: Live) -> None:
    for role, token in live.tokens.items():
        if role == "site" and "site" in (case.path_parameters or {}):
            # half of the agent calls on the token's own site, so the handlers behind the
            # site check see generated bodies too
            if hash(str(case.body)) % 2 == 0:
                case.path_parameters = {**case.path_parameters, "site": SITE}
        CASES[role] = CASES.get(role, 0) + 1
        case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {token}"},
                               checks=CHECKS, timeout=30)
