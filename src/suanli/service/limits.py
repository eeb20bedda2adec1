"""What the service refuses before a handler sees it, and how often a caller may call.

`RequestLimits`, an ASGI middleware in front of the app:

- a JSON (or any non-upload) body larger than `max_body_bytes` answers 413, by its declared
  `Content-Length` before a byte is read, else as soon as the streamed bytes pass the limit
  (the body is read into memory only up to the limit); an upload (`application/gzip`,
  `application/octet-stream`: checkpoints) is streamed by its handler, and only a declared
  length above `max_upload_bytes` is refused here;
- a JSON body nested deeper than `max_json_depth` answers 400 (Python's parser recurses: a
  deep enough document is a RecursionError, not a 4xx), and one with a number literal longer
  than `max_number_chars` answers 400 (a 5,000-digit integer costs quadratic time to convert,
  and none of the API's fields needs more than 20 digits);
- a secret in the query string (`?token=...`, `?access_token=...`) answers 400: tokens go in
  the Authorization header only. The query string is blanked in the request's scope first,
  because uvicorn's access log prints the path with its query string after the app answers.

- a token bucket per caller (`RateLimiter`): each request takes one; an empty bucket answers
  429 with `Retry-After` (whole seconds until a request is allowed again). The caller is its
  bearer token, keyed by the token's SHA-256 as the database stores it (a tenant, a site agent
  and an admin each have their own token, so this is a limit per tenant); a request without a
  token is keyed by its client address. Here, not in the authentication dependency, so that
  every route (the dashboard's too, and any added later) is limited, and before the database is
  asked. `suanli serve --rate-limit` sets the rate; the default is generous (an agent's
  heartbeats and polls are a few a second).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from suanli.errors import UserError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MiB = 1 << 20
# query parameters that carry a secret: refused, and never left in a logged URL
SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "secret", "password",
                           "authorization", "auth", "bearer"})
UPLOAD_TYPES = ("application/gzip", "application/octet-stream", "application/x-tar")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)          # a JSON string, escapes included
_BRACKETS = re.compile(rb"[\[\]{}]")


@dataclass
class Limits:
    max_body_bytes: int = 1 * MiB          # a job is a few hundred bytes; a heartbeat lists a site's runs
    max_upload_bytes: int = 64 * 1024 * MiB   # a checkpoint archive
    max_json_depth: int = 32               # the deepest body of the API is 3 levels
    max_number_chars: int = 64             # a float's longest repr is 24 characters
    rate_per_s: float | None = 100.0       # requests per second per principal; None: no limit
    burst: float | None = None             # the bucket's size; default 2 s of requests (at least 10)


def parse_rate(text: str) -> float | None:
    """`20/s`, `600/min`, `5000/h`, `20` (per second), or `off` -> requests per second (None: off)."""
    t = text.strip().lower()
    if t in ("off", "none", "0", "unlimited"):
        return None
    num, _, unit = t.partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit.strip())
    try:
        n = float(num)
    except ValueError:
        n = math.nan
    if per is None or not (math.isfinite(n) and n > 0):
        raise UserError(f"--rate-limit: not a rate like 20/s, 600/min or off (got {text!r})")
    return n / per


class RateLimiter:
    """Token buckets by key; thread-safe (sync handlers run in a thread pool)."""

    MAX_KEYS = 100_000                     # forget the least recently seen beyond this

    def __init__(self, rate_per_s: float | None, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.configure(rate_per_s, burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # key -> (tokens, at)
        self._lock = threading.Lock()

    def configure(self, rate_per_s: float | None, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(2.0 * (rate_per_s or 0.0), 10.0)

    def take(self, key: str) -> float:
        """Take one request from `key`'s bucket: 0.0 if allowed, else the seconds to wait."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.MAX_KEYS:
                self._buckets.popitem(last=False)
        return wait



def json_problem(body: bytes, limits: Limits) -> str | None:
    """Why a JSON body is refused before parsing (too deep, a number too long), or None."""
    bare = _STRING.sub(b'""', body)          # brackets and digits inside strings do not count
    depth = deepest = 0
    for m in _BRACKETS.finditer(bare):
        depth += 1 if m.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > limits.max_json_depth:
                return f"body: JSON nested deeper than {limits.max_json_depth} levels"
    longest = max((len(m.group()) for m in re.finditer(rb"[-+0-9.eE]+", bare)), default=0)
    if longest > limits.max_number_chars:
        return f"body: a number longer than {limits.max_number_chars} characters"
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """The ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, limits: Limits, limiter: RateLimiter):
        self.app, self.limits, self.limiter = app, limits, limiter

    def caller(self, scope: Scope) -> str:
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()
        client = scope.get("client")
        return f"addr:{client[0] if client else '?'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.limits
        query = scope.get("query_string") or b""
        if query:
            names = {k.lower() for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
            secret = sorted(names & SECRET_PARAMS)
            if secret:
                scope["query_string"] = b""          # the access log prints it after we answer
                await _answer(send, 400, f"{secret[0]}: tokens go in the Authorization header "
                                         "(Bearer), never in the URL")
                return
        wait = self.limiter.take(self.caller(scope))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await _answer(send, 429, f"rate limit: more than {self.limiter.rate:g} requests per second; "
                                     f"retry after {retry} s", {"Retry-After": str(retry)})
            return
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        upload = ctype in UPLOAD_TYPES
        cap = lim.max_upload_bytes if upload else lim.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, f"Content-Length: not a number of bytes (got {declared[:32]!r})")
                return
            if int(declared) > cap:
                await _answer(send, 413, f"body: {int(declared):,} bytes is more than the limit of {cap:,}")
                return
        if upload or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)     # an upload streams; a GET's body is not read
            return
        chunks: list[bytes] = []
        size = 0
        while True:                                  # read the body, up to the limit
            msg = await receive()
            if msg["type"] != "http.request":        # the client went away
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _answer(send, 413, f"body: more than the limit of {cap:,} bytes")
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and (ctype.endswith("json") or ctype == ""):
            problem = json_problem(body, lim)
            if problem is not None:
                await _answer(send, 400, problem)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()                   # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


def install(app: Any, limits: Limits | None = None) -> Limits:
    """Put `RequestLimits` in front of `app`; its limits and its `RateLimiter` are kept on
    `app.state.limits` and `app.state.rate_limiter` (the middleware reads both on each request,
    so a test or an embedder may change them: `app.state.rate_limiter.configure(None)`)."""
    lim = limits if limits is not None else Limits(**vars(DEFAULT))
    limiter = RateLimiter(lim.rate_per_s, lim.burst)
    app.add_middleware(RequestLimits, limits=lim, limiter=limiter)
    app.state.limits, app.state.rate_limiter = lim, limiter
    return lim


# what `install` uses when given nothing: `suanli serve --rate-limit` sets its rate before the
# app is built (the app is built inside `server.serve`, which takes no limits of its own)
DEFAULT = Limits()
