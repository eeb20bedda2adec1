"""The REST API (FastAPI), versioned under /v1; the OpenAPI schema is at /openapi.json.

This module puts it together: the limits at the door (limits.py), the error answers, one router
per resource (routes/: jobs, agent, energy, sites, billing), health, the dashboard and /metrics.

Every request carries `Authorization: Bearer TOKEN`. A tenant sees only its own jobs: another
tenant's job answers 404, exactly like one that does not exist. Bad input answers 4xx with
one line naming the field and the value.
"""

# no `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime

import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from suanli.errors import UserError, short_repr
from suanli.service import dashboard, etags, limits, metrics
from suanli.service.controller import Controller
from suanli.service.db import readers
from suanli.service.routes import agent, billing, demand, energy, jobs, quotes, sites
from suanli.service.schemas import ERROR_RESPONSES

log = logging.getLogger("suanli.api")


def _loc(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def create_app(controller: Controller, run_loop: bool = True) -> FastAPI:
    net = controller.network

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_loop:
            controller.start()
        yield
        controller.stop()

    app = FastAPI(title="suanli control plane", version="1", lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="Submit GPU jobs to a compute-power network; see docs/SERVICE.md.")
    app.state.controller = controller
    etags.install(app)        # 304 for a JSON read that did not change (etags.py)
    limits.install(app)       # body size, JSON depth, secrets in URLs, rate per token (limits.py)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        msg = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
        got = "" if err["type"] == "missing" else f" (got {short_repr(err.get('input'))})"
        more = len(exc.errors()) - 1
        note = f"; and {more} more error{'s' if more > 1 else ''}" if more > 0 else ""
        return JSONResponse(status_code=422, content={"detail": f"{_loc(err['loc'])}: {msg}{got}{note}"})

    @app.exception_handler(DBAPIError)
    async def _db_away(_req: Request, exc: DBAPIError):
        # the database is away (restarting, unreachable, our connection cut): the transaction did
        # not commit, so the client may retry; the pool's pre-ping replaces dead connections once
        # it is back. Any other database error is a bug: a 500.
        if not (exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)):
            raise exc
        log.warning("database unavailable: %s", (str(exc.orig or exc).splitlines() or [""])[0])
        return JSONResponse(status_code=503, content={"detail": "the database is unavailable; retry shortly"},
                            headers={"Retry-After": "1"})

    @app.exception_handler(PoolTimeout)
    async def _pool_full(_req: Request, exc: PoolTimeout):
        # every connection of the pool busy for db.POOL_TIMEOUT_S (admission keeps requests below
        # the pool's size, so this is the controller and the uploads too): busy, not broken
        log.warning("database pool exhausted: %s", str(exc).splitlines()[0])
        return JSONResponse(status_code=503, content={"detail": "the server is busy; retry shortly"},
                            headers={"Retry-After": "1"})

    @app.exception_handler(UserError)
    async def _user(_req: Request, exc: UserError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    app.state.readers = readers(controller.sessions)     # GET only reads (db.readers)
    for r in (jobs.router, quotes.router, agent.router, energy.router, sites.router, billing.router, demand.router):
        app.include_router(r)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"ok": controller.last_error is None, "now_h": controller.now_h(), "ticks": controller.ticks,
                "policy": controller.policy_name, "network": net.name, "leader": controller.leading,
                "error": controller.last_error, "time": datetime.now(UTC).isoformat()}

    dashboard.install(app, controller)       # the web dashboard at / and its API (docs/DASHBOARD.md)
    metrics.install(app, controller)         # GET /metrics for Prometheus, admin token (metrics.py)
    return app
