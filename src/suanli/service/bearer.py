"""Who is calling: the `Authorization: Bearer TOKEN` header of a request, turned into a
`Principal` (auth.py), for the API's and the dashboard's dependencies alike."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from suanli.service.auth import Principal, authenticate

bearer = HTTPBearer(auto_error=False, description="a token from `suanli admin create-*`")


def principal_of(s: Session, cred: HTTPAuthorizationCredentials | None) -> Principal:
    """The token's principal; 401 without a token or with an unknown one. Ends the read it made:
    a handler may take the controller's lock next (SQLite: one writer)."""
    if cred is None or not cred.credentials:
        raise HTTPException(401, "missing Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})
    p = authenticate(s, cred.credentials)
    s.rollback()
    if p is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return p
