"""Tenants and tokens. A token is 32 random bytes (URL-safe text), stored as its SHA-256:
what the database holds cannot be used to call the API.

Roles: `admin` (the operator: everything), `tenant` (its own jobs and invoices), `site`
(the agent of one site: its registration, heartbeats, assignments and reports).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.errors import UserError
from suanli.model.scenario import Scenario
from suanli.service.models import Meta, Tenant, Token
from suanli.service.schemas import MAX_HOURS

ROLES = ("admin", "tenant", "site")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(s: Session, role: str, tenant_id: int | None = None, site: str | None = None) -> str:
    """Create a token; returns the token itself (only its hash is stored)."""
    token = "sl_" + secrets.token_urlsafe(32)
    s.add(Token(token_hash=hash_token(token), role=role, tenant_id=tenant_id, site=site))
    return token


@dataclass(frozen=True)
class Principal:
    role: str
    tenant_id: int | None = None
    tenant_name: str | None = None
    site: str | None = None


def authenticate(s: Session, token: str) -> Principal | None:
    """The principal of `token`, or None. The token itself never reaches the database: the row
    is looked up by the token's SHA-256, so how long the lookup takes says nothing about the
    token's characters (an index compares hashes, which an attacker cannot steer byte by byte),
    and the hash found is compared again in constant time (`hmac.compare_digest`), so that no
    comparison on this path stops at the first differing byte of anything derived from input."""
    digest = hash_token(token)
    row = s.scalar(select(Token).where(Token.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    name = s.get(Tenant, row.tenant_id).name if row.tenant_id is not None else None
    return Principal(row.role, row.tenant_id, name, row.site)


def parse_quota(text: str | None, gpu_types: list[str] | None = None) -> dict[str, int]:
    """`h100=64,a800=16` -> {"h100": 64, "a800": 16}; one-line errors naming the part."""
    if not text:
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        name, eq, num = part.partition("=")
        if not eq or not name.strip():
            raise UserError(f"--quota: expected TYPE=GPUS, got {part!r}")
        try:
            n = int(num)
        except ValueError:
            raise UserError(f"--quota: {name.strip()}: GPUs must be a whole number, got {num!r}") from None
        if n < 0:
            raise UserError(f"--quota: {name.strip()}: GPUs must be >= 0, got {n}")
        if gpu_types is not None and name.strip() not in gpu_types:
            raise UserError(f"--quota: unknown GPU type {name.strip()!r} (types: {', '.join(gpu_types)})")
        out[name.strip()] = n
    return out


def _wait_key(tenant_id: int) -> str:
    return f"tenant.{tenant_id}.max_wait_h"


def default_max_wait_h(s: Session, tenant_id: int) -> float:
    """The tenant's default `max_wait_h` for a job that gives none (`create-tenant --max-wait-h`,
    kept in the `meta` table: no schema change); 0, start as soon as it can, if it has none."""
    row = s.get(Meta, _wait_key(tenant_id))
    return float(row.value) if row is not None else 0.0


def create_tenant(s: Session, name: str, quota: dict[str, int], budget_cny: float | None,
                  max_wait_h: float | None = None) -> str:
    if max_wait_h is not None and not 0 <= max_wait_h <= MAX_HOURS:
        raise UserError(f"--max-wait-h: must be between 0 and {MAX_HOURS:g} hours, got {max_wait_h}")
    if not _NAME.match(name):
        raise UserError(f"NAME: a tenant name is letters, digits, '_', '.', '-' (got {name!r})")
    if budget_cny is not None and budget_cny < 0:
        raise UserError(f"--budget-cny: must be >= 0, got {budget_cny}")
    if s.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise UserError(f"NAME: tenant {name!r} already exists")
    t = Tenant(name=name, quota=quota, budget_cny=budget_cny)
    s.add(t)
    s.flush()
    if max_wait_h:
        s.add(Meta(key=_wait_key(t.id), value=repr(float(max_wait_h))))
    return new_token(s, "tenant", tenant_id=t.id)


def create_site_token(s: Session, site: str, network: Scenario | None = None) -> str:
    if network is not None and site not in network.sites:
        raise UserError(f"SITE: unknown site {site!r} (sites: {', '.join(network.sites)})")
    if not _NAME.match(site):
        raise UserError(f"SITE: not a site id {site!r}")
    return new_token(s, "site", site=site)


def create_admin_token(s: Session) -> str:
    return new_token(s, "admin")


def billed_tenants(s: Session, p: Principal, name: str | None) -> list[Tenant]:
    """The tenants whose usage `p` may read, narrowed to `name` if given: a tenant its own only
    (another name: 403), an operator any or all (an unknown name: 404), a site agent none (403)."""
    from fastapi import HTTPException
    if p.role == "site":
        raise HTTPException(403, "a site agent token cannot read invoices")
    if p.role == "tenant":
        if name is not None and name != p.tenant_name:
            raise HTTPException(403, "tenant: a tenant token reads its own invoice only")
        return [s.get(Tenant, p.tenant_id)]
    if name is not None:
        t = s.scalar(select(Tenant).where(Tenant.name == name))
        if t is None:
            raise HTTPException(404, f"tenant: no tenant {name!r}")
        return [t]
    return list(s.scalars(select(Tenant).order_by(Tenant.id)))
