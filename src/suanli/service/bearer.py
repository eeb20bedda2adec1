"""Who is calling: the `Authorization: Bearer TOKEN` header of a request, turned into a
`Principal` (auth.py), for the API's and the dashboard's dependencies alike.

The door (limits.py) authenticates a request before its body is read and keeps the principal in
the request's scope (`scope["state"]["principal"]`); the dependencies take it from there. Token
lookups go through a `TokenCache`: a token's principal is kept `ttl_s` seconds by the token's
SHA-256 (never the token), so a busy tenant costs one lookup in a while, not two queries per
request. Unknown tokens are not cached (each is a lookup, and counts as a failure of its client
address: limits.FailedAuth). A revoked or deleted token stops working within `ttl_s`, or at once
where the code that revokes it calls `invalidate` (or `clear`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from suanli.service.auth import Principal, authenticate, hash_token

bearer = HTTPBearer(auto_error=False, description="a token from `suanli admin create-*`")


class TokenCache:
    """Token SHA-256 -> (principal, until); thread-safe, bounded (least recently used dropped)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._map: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        now = self.clock()
        with self._lock:
            hit = self._map.get(digest)
            if hit is None:
                return None
            if hit[1] <= now:
                del self._map[digest]
                return None
            self._map.move_to_end(digest)
            return hit[0]

    def put(self, digest: str, p: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._map[digest] = (p, self.clock() + self.ttl_s)
            self._map.move_to_end(digest)
            while len(self._map) > self.max_entries:
                self._map.popitem(last=False)

    def invalidate(self, token_or_digest: str) -> None:
        """Forget a token (given as itself or as its SHA-256 hex, as the database stores it)."""
        with self._lock:
            self._map.pop(token_or_digest, None)
            self._map.pop(hash_token(token_or_digest), None)

    def clear(self) -> None:
        with self._lock:
            self._map.clear()


def lookup(s: Session, token: str, cache: TokenCache | None = None) -> Principal | None:
    """The principal of `token`, from `cache` when there, else from the database (and cached);
    None for an unknown token. Ends the read it made."""
    digest = hash_token(token)
    if cache is not None:
        p = cache.get(digest)
        if p is not None:
            return p
    try:
        p = authenticate(s, token)
    finally:
        s.rollback()
    if p is not None and cache is not None:
        cache.put(digest, p)
    return p


def principal_of(s: Session, cred: HTTPAuthorizationCredentials | None,
                 cache: TokenCache | None = None) -> Principal:
    """The token's principal; 401 without a token or with an unknown one. Ends the read it made:
    a handler may take the controller's lock next (SQLite: one writer)."""
    if cred is None or not cred.credentials:
        raise HTTPException(401, "missing Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})
    p = lookup(s, cred.credentials, cache)
    if p is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return p
