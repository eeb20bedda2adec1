"""Quotes: what a job would cost and when it would start, for a few `max_wait_h` windows, from
the policy the controller runs, over the current ledger, without booking anything.

Each window is one `decide` of a copy of the controller's policy (its state as the controller has
it: the gang sizes seen, the run-time predictor) on a `StateView` built as the controller's tick
builds it (the sites up and not drained, the grid caps known): the quote's "now" option is where a
submit of the same job would be placed at the next tick, unless the ledger changes meanwhile. No
preemption is weighed (a quote never stops a running job). Quota and budget are checked as a
submit checks them: `refused` says why a submit would be refused."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import copy
import logging
import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from suanli.model.schedule import Segment
from suanli.model.schema import Job
from suanli.scheduling import policies
from suanli.scheduling.state import Defer, PendingJob, Place, Reject, StateView
from suanli.service import metering
from suanli.service.controller import Controller, drained_sites
from suanli.service.models import Tenant
from suanli.service.routes.deps import Ctl, Who, tenant_only
from suanli.service.routes.jobs import admit, check_refs
from suanli.service.schemas import DEFAULT_WINDOWS, QuoteIn, QuoteOption, QuoteOut

router = APIRouter(tags=["jobs"])
log = logging.getLogger("suanli.quotes")


def _policy(c: Controller):
    """A copy of the controller's policy, sharing the network (a policy starts afresh on another
    scenario object) and the ledger: deciding for a quote changes nothing the controller keeps."""
    try:
        return copy.deepcopy(c.policy, memo={id(c.public): c.public, id(c.network): c.network,
                                             id(c.ledger): c.ledger})
    except Exception as e:      # noqa: BLE001 - a policy that cannot be copied: a fresh one of the same name
        log.warning("policy %s could not be copied for a quote (%s: %s): a fresh one", c.policy_name,
                    type(e).__name__, e)
        return policies.make(c.policy_name)


def _finite(x: float) -> float | None:
    """A number JSON can carry: an infinite price (a lateness past any bound) is None."""
    return float(x) if math.isfinite(x) else None


def _option(c: Controller, job: Job, window: float, d) -> QuoteOption:
    if isinstance(d, Place):
        seg = Segment(job.id, d.site, d.gpu_type, job.gpus, d.start_h, d.end_h)
        billed = metering.price_segment(c.network, job, seg, [], data_moves=True)
        chosen = d.explain.chosen if d.explain is not None else None
        parts = {k: float(v) for k, v in chosen.parts.items() if math.isfinite(v)} if chosen is not None else {}
        return QuoteOption(max_wait_h=window, placed=True, reason=d.reason, site=d.site, gpu_type=d.gpu_type,
                           start=c.wall(d.start_h), start_h=d.start_h, end_h=d.end_h,
                           cost_cny=_finite(billed["total_cny"]), carbon_kg=_finite(billed["carbon_kg"]),
                           policy_cny=_finite(chosen.total) if chosen is not None else None, parts=parts)
    if isinstance(d, (Defer, Reject)):
        return QuoteOption(max_wait_h=window, placed=False,
                           reason=("rejected: " if isinstance(d, Reject) else "not now: ") + d.reason)
    return QuoteOption(max_wait_h=window, placed=False, reason=f"the policy answered {type(d).__name__}")


def quote(c: Controller, s, tenant: Tenant, body: QuoteIn) -> QuoteOut:
    windows = sorted(set(body.windows if body.windows is not None else
                         (*DEFAULT_WINDOWS, *(() if body.max_wait_h is None else (body.max_wait_h,)))))
    refused, tenant_name = None, tenant.name
    spec = body.model_dump(by_alias=True, exclude={"name", "command", "gpus", "key", "windows", "max_wait_h"})
    try:
        [spec["gpu_types"]] = admit(c, s, tenant, [body], c.now_h())    # the types a submit would allow
    except HTTPException as e:
        refused = str(e.detail)
    s.rollback()                            # admit only reads; nothing of it is kept
    options: list[QuoteOption] = []
    with c.lock:                            # the ledger as the last tick left it, not mid-tick
        now = c.now_h()
        if body.deadline_h is not None:
            spec["deadline_h"] = now + body.deadline_h
        placeable = c.up_sites(s) - c._flapped - drained_sites(s)
        down = frozenset(set(c.network.sites) - placeable)
        caps = tuple(e for e, *_ in c.grid_caps(s, now))
        s.rollback()                        # what it read is in hand: no transaction while the policy works
        view = StateView(now=now, scenario=c.public, ledger=c.ledger, down=down, grid_caps=caps)
        for w in windows:
            job = Job.model_validate({**spec, "id": "quote", "tenant": tenant_name, "submit_h": now,
                                      "gpus": body.gpus, "max_wait_h": w})
            pj = PendingJob(job, body.work_h, now)
            try:
                decided = [d for d in _policy(c).decide(view, [pj]) if getattr(d, "job_id", None) == "quote"]
                options.append(_option(c, job, w, decided[0]) if decided else
                               QuoteOption(max_wait_h=w, placed=False, reason="the policy gave no answer"))
            except Exception as e:          # noqa: BLE001 - the policy or pricing raised for this job: said, not a 500
                log.warning("quote: %s raised for a job (%s: %s)", c.policy_name, type(e).__name__, e)
                options.append(QuoteOption(max_wait_h=w, placed=False,
                                           reason=f"policy {c.policy_name} raised {type(e).__name__}: {e}"))
    # A job that may wait may still start as a shorter window's option does: a longer window is
    # never quoted dearer (the policy weighs delay and room as well as the bill, and may choose a
    # later start whose bill is higher; the quote then says so and offers the cheaper one).
    best: QuoteOption | None = None
    for i, o in enumerate(options):
        if o.placed and o.cost_cny is None:
            continue
        if best is not None and o.placed and o.cost_cny > best.cost_cny + 1e-9:
            options[i] = best.model_copy(update={
                "max_wait_h": o.max_wait_h,
                "reason": f"{best.reason} (as with max_wait_h {best.max_wait_h:g}: the policy's start at "
                          f"{o.start_h:.4f} h would bill {o.cost_cny:,.4f} CNY)"})
        elif o.placed and (best is None or o.cost_cny < best.cost_cny):
            best = o
    return QuoteOut(now_h=now, policy=c.policy_name, refused=refused, options=options)


@router.post("/v1/quotes", response_model=QuoteOut)
def post_quote(body: QuoteIn, p: Who, c: Ctl, request: Request) -> Any:
    """What a job would cost and when it would start if submitted now, for a few `max_wait_h`
    windows (`windows`, at most 4; default 0, 6 and 24 h): one option per window, from the policy
    the controller runs, over the current ledger. Nothing is booked. `refused`: why a submit of
    it would be refused now (quota, budget), else null."""
    tenant_only(p)
    check_refs(c, body)
    with request.app.state.readers() as s:      # it only reads: on SQLite, no write lock while the policy works
        tenant = s.get(Tenant, p.tenant_id)
        return quote(c, s, tenant, body)
