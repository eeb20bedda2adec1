"""Invoices: a tenant's own, or (an operator) any tenant's or all, for a month, as JSON or CSV
(service/metering.py builds them from the usage ledger).

JSON: each invoice carries the month's totals (summed by the database) and a page of its lines,
at most `limit` (<= 1000) after `cursor`; `next_cursor` is the cursor of the next page. CSV: every
line, streamed a page at a time."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from suanli.service import metering
from suanli.service.auth import billed_tenants
from suanli.service.routes.deps import DB, Who, done
from suanli.service.schemas import CursorQuery, Invoice

router = APIRouter(tags=["billing"])


@router.get("/v1/invoices", response_model=list[Invoice], responses={200: {"content": {"text/csv": {}}}})
def invoices(request: Request, p: Who, s: DB,
             month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
             tenant: Annotated[str | None, Query(description="admin only; default all tenants")] = None,
             format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
             limit: Annotated[int, Query(ge=1, le=metering.PAGE,
                                         description="lines per invoice (JSON)")] = metering.PAGE,
             cursor: CursorQuery = None):
    metering.check_month(month)
    tenants = billed_tenants(s, p, tenant)
    if format == "csv":
        readers = request.app.state.readers

        def chunks():
            with readers() as r:          # its own session: the request's closes before the body is sent
                for k, t in enumerate(tenants):
                    yield from metering.invoice_csv_chunks(r, t, month, header=k == 0)
        return StreamingResponse(chunks(), media_type="text/csv")
    return done(s, [metering.invoice(s, t, month, limit, cursor) for t in tenants])
