"""Invoices: a tenant's own, or (an operator) any tenant's or all, for a month, as JSON or CSV
(service/metering.py builds them from the usage ledger)."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from suanli.service import metering
from suanli.service.auth import billed_tenants
from suanli.service.routes.deps import DB, Who
from suanli.service.schemas import Invoice

router = APIRouter(tags=["billing"])


@router.get("/v1/invoices", response_model=list[Invoice], responses={200: {"content": {"text/csv": {}}}})
def invoices(p: Who, s: DB, month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
             tenant: Annotated[str | None, Query(description="admin only; default all tenants")] = None,
             format: Annotated[str, Query(pattern="^(json|csv)$")] = "json"):
    metering.check_month(month)
    invs = [metering.invoice(s, t, month) for t in billed_tenants(s, p, tenant)]
    if format == "csv":
        text = "".join(metering.invoice_csv(inv) if k == 0 else metering.invoice_csv(inv).split("\n", 1)[1]
                       for k, inv in enumerate(invs))
        return PlainTextResponse(text, media_type="text/csv")
    return invs
