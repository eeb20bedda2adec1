"""What the service refuses before a handler sees it, and how often a caller may call.

`RequestLimits`, an ASGI middleware in front of the app:

- a JSON (or any non-upload) body larger than `max_body_bytes` answers 413, by its declared
  `Content-Length` before a byte is read, else as soon as the streamed bytes pass the limit
  (the body is read into memory only up to the limit); a batch of meter readings
  (`POST /v1/agent/{site}/meter`, a site token only: any other answers 403 before its body is
  read) has its own, larger limit, `max_meter_body_bytes`; an upload (`application/gzip`,
  `application/octet-stream`: checkpoints, a run's output) is streamed by its handler, and only a declared
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

- authentication before any body is read: a request with a bearer token is authenticated here
  (bearer.TokenCache, else one lookup in a worker thread) and its principal kept in the scope for
  the handlers; an unknown token answers 401, and counts against its client address
  (`FailedAuth`): past `max_auth_failures` in a row the address gets 429 with Retry-After on every
  request that carries a token until its bucket refills (a guesser is slowed to
  `auth_failures_per_s`; a valid token from another address is not affected). A request with a
  body and no token answers 401 before a byte of the body is read;
- the content type: a body is JSON (`application/json`, `*+json`, or none said), except the one
  upload routes (`PUT /v1/agent/{site}/jobs/{id}/checkpoint` and `.../output`, a site token only) that take
  `application/gzip` or `application/octet-stream`; anything else answers 415 at once, so no route
  reads a body whole that its limit does not bound;
- admission (`Admission`): at most `max_in_flight` requests in the handlers at once (below the
  database pool's size, so a request never waits 30 s for a connection and then fails with 500),
  at most `max_in_flight_per_caller` of them one caller's; a request over its caller's share
  answers 503 with Retry-After at once, one over the total waits at most `queue_s` in a bounded
  queue (`max_queue`), then 503 with Retry-After. The excess of an overload is answered fast, and
  what is admitted is served at the speed of an unloaded server (goodput near the knee). A site
  agent's calls are bounded by their own share only: its heartbeats keep its site up, and a
  tenants' flood must not make the sites look down.

`RequestLog`, in front of it: each request gets an id (a sane `X-Request-Id` from the client,
else a new one; echoed in the response), set in `suanli.logs.REQUEST_ID` while it is served, and
one line at INFO when it ends (method, path without the query, status, ms, the caller's kind),
and the request counted by its route's template (`telemetry.Telemetry.request`, for /metrics);
an exception escaping the app is logged with the request id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from anyio import to_thread

from suanli.errors import UserError
from suanli.logs import REQUEST_ID
from suanli.service.telemetry import route_of

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
UPLOAD_ROUTE = re.compile(r"^/v1/agent/[^/]+/jobs/[^/]+/(checkpoint|output)$")    # PUT only, site token only
METER_ROUTE = re.compile(r"^/v1/agent/[^/]+/meter$")     # POST only, site token only: a larger JSON body
UNLIMITED = ("/v1/health",)       # never queued or shed: what a load balancer and an operator look at
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
log = logging.getLogger("suanli.api")


@dataclass
class Limits:
    max_body_bytes: int = 1 * MiB          # a job is a few hundred bytes; a heartbeat lists a site's runs
    max_upload_bytes: int = 64 * 1024 * MiB   # a checkpoint archive
    max_meter_body_bytes: int = 4 * MiB    # a batch of meter readings: 10,000 of ~200 bytes (meters.py)
    max_json_depth: int = 32               # the deepest body of the API is 3 levels
    max_number_chars: int = 64             # a float's longest repr is 24 characters
    rate_per_s: float | None = 100.0       # requests per second per principal; None: no limit
    burst: float | None = None             # the bucket's size; default 2 s of requests (at least 10)
    max_auth_failures: int = 20            # unknown tokens in a row from one address before 429
    auth_failures_per_s: float = 1 / 3     # ... after which one more try per 3 s
    max_in_flight: int = 16                # requests in the handlers at once (db pool: 20, db.py)
    max_in_flight_per_caller: int = 8      # ... of them one caller's (a token, or an address)
    max_queue: int = 512                   # requests waiting for one of the max_in_flight
    queue_s: float = 0.3                   # the longest a request waits there before 503
    token_ttl_s: float = 5.0               # a token's principal is cached this long (bearer.TokenCache)


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

    def waiting(self, key: str) -> float:
        """Seconds until `key`'s bucket holds a whole request again (0.0: it does now); takes nothing."""
        if self.rate is None:
            return 0.0
        with self._lock:
            hit = self._buckets.get(key)
        if hit is None:
            return 0.0
        tokens = min(self.burst, hit[0] + (self.clock() - hit[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class FailedAuth(RateLimiter):
    """Unknown tokens per client address: a bucket of `max_failures`, refilled at `per_s`. An
    address whose bucket is empty is refused (429) on every request with a token, without a
    lookup, until it refills."""

    def __init__(self, max_failures: int = 20, per_s: float = 1 / 3, clock: Callable[[], float] = time.monotonic):
        super().__init__(per_s, float(max_failures), clock)

    def configure(self, rate_per_s: float | None, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self.burst = burst if burst is not None else 20.0

    def locked(self, addr: str) -> float:
        return self.waiting(addr)

    def failed(self, addr: str) -> None:
        self.take(addr)


class Admission:
    """How many requests are in the handlers, in all and per caller (the event loop's thread only:
    no lock). `enter` answers None when admitted (call `leave(key)` after), else the reason to
    answer 503."""

    def __init__(self, max_in_flight: int, per_caller: int, max_queue: int, queue_s: float):
        self.configure(max_in_flight, per_caller, max_queue, queue_s)
        self.in_flight = 0
        self.by_caller: dict[str, int] = {}
        self._queue: deque[asyncio.Future] = deque()
        self.shed = 0                      # 503s so far

    def configure(self, max_in_flight: int | None, per_caller: int | None = None, max_queue: int = 512,
                  queue_s: float = 0.3) -> None:
        """None: no limit (tests that flood on purpose)."""
        self.max_in_flight = max_in_flight if max_in_flight is not None else 1 << 30
        self.per_caller = per_caller if per_caller is not None else 1 << 30
        self.max_queue, self.queue_s = max_queue, queue_s

    async def enter(self, key: str, own_share_only: bool = False) -> str | None:
        """`own_share_only`: a site agent's call (heartbeats keep its site up: shed under a tenants'
        flood, they would make the site look down); bounded by its caller's share only, and not
        counted in the total (call `leave(key, True)` after)."""
        mine = self.by_caller.get(key, 0)
        if mine >= self.per_caller:
            self.shed += 1
            return f"more than {self.per_caller} requests of this caller at once"
        if own_share_only:
            self.by_caller[key] = mine + 1
            return None
        if self.in_flight >= self.max_in_flight or self._queue:
            if len(self._queue) >= self.max_queue:
                self.shed += 1
                return "the server is busy"
            fut = asyncio.get_running_loop().create_future()
            self._queue.append(fut)
            try:
                await asyncio.wait_for(fut, self.queue_s)     # `leave` hands its place over
            except TimeoutError:
                if fut in self._queue:
                    self._queue.remove(fut)
                if not (fut.done() and not fut.cancelled()):
                    self.shed += 1
                    return "the server is busy"
            except BaseException:
                if fut in self._queue:
                    self._queue.remove(fut)
                elif fut.done() and not fut.cancelled():      # handed a place, then cancelled: give it on
                    self._hand_over()
                raise
            mine = self.by_caller.get(key, 0)                 # the place was handed over: in_flight kept
        else:
            self.in_flight += 1
        self.by_caller[key] = mine + 1
        return None

    def _hand_over(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)           # the slot passes to it: in_flight unchanged
                return
        self.in_flight -= 1

    def leave(self, key: str, own_share_only: bool = False) -> None:
        n = self.by_caller.get(key, 1) - 1
        if n > 0:
            self.by_caller[key] = n
        else:
            self.by_caller.pop(key, None)
        if not own_share_only:
            self._hand_over()



def set_in_flight(lim: Limits, n: int) -> None:
    """`suanli serve --max-in-flight N`: N requests at once, N/2 of one caller's, and a database
    pool larger than N (db.POOL_SIZE, read when the engine is made)."""
    from suanli.service import db
    if not 1 <= n <= 1000:
        raise UserError(f"--max-in-flight: a number of requests from 1 to 1000 (got {n})")
    lim.max_in_flight, lim.max_in_flight_per_caller = n, max(1, n // 2)
    db.POOL_SIZE = max(db.POOL_SIZE, n + 4)


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


def _addr(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


class RequestLimits:
    """The ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, limits: Limits, limiter: RateLimiter, state: Any = None):
        self.app, self.limits, self.limiter, self.state = app, limits, limiter, state
        self._readers = None

    def caller(self, scope: Scope) -> str:
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()
        return f"addr:{_addr(scope)}"

    def _lookup(self, token: str):
        """The token's principal (cache, else one read of the database), or None."""
        from suanli.service.bearer import lookup
        if self._readers is None:
            from suanli.service.db import readers
            self._readers = readers(self.state.controller.sessions)
        with self._readers() as s:
            return lookup(s, token, getattr(self.state, "token_cache", None))

    async def _authenticate(self, scope: Scope, send: Send, token: str) -> tuple[bool, Any]:
        """(answered, principal): a locked-out address or an unknown token is answered here."""
        failures: FailedAuth | None = getattr(self.state, "auth_failures", None)
        addr = _addr(scope)
        if failures is not None:
            wait = failures.locked(addr)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _answer(send, 429, f"authentication: too many unknown tokens from this address; "
                                         f"retry after {retry} s", {"Retry-After": str(retry)})
                return True, None
        from suanli.service.auth import hash_token
        cache = getattr(self.state, "token_cache", None)
        p = cache.get(hash_token(token)) if cache is not None else None
        if p is None:
            p = await to_thread.run_sync(self._lookup, token)
        if p is None:
            if failures is not None:
                failures.failed(addr)
            await _answer(send, 401, "unknown token", {"WWW-Authenticate": "Bearer"})
            return True, None
        return False, p

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
        key = self.caller(scope)
        wait = self.limiter.take(key)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await _answer(send, 429, f"rate limit: more than {self.limiter.rate:g} requests per second; "
                                     f"retry after {retry} s", {"Retry-After": str(retry)})
            return
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        principal = None
        if key.startswith("token:") and self.state is not None and hasattr(self.state, "controller"):
            token = (_header(scope, b"authorization") or "").partition(" ")[2].strip()
            answered, principal = await self._authenticate(scope, send, token)
            if answered:
                return
            scope.setdefault("state", {})["principal"] = principal
        declared = _header(scope, b"content-length")
        if declared is not None and not declared.strip().isdigit():
            await _answer(send, 400, f"Content-Length: not a number of bytes (got {declared[:32]!r})")
            return
        size = None if declared is None else int(declared) if len(declared.strip()) <= 18 else 1 << 62
        has_body = (size is not None and size > 0) or (
            size is None and _header(scope, b"transfer-encoding") is not None)
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        upload = False
        if has_body and method in BODY_METHODS:
            if principal is None and self.state is not None and hasattr(self.state, "controller"):
                await _answer(send, 401, "missing Authorization: Bearer TOKEN (before any body is read)",
                              {"WWW-Authenticate": "Bearer"})
                return
            if ctype in UPLOAD_TYPES:
                upload = method == "PUT" and UPLOAD_ROUTE.match(path) is not None
                if upload and principal is not None and principal.role != "site":
                    await _answer(send, 403, f"this call is for a site agent token, not a {principal.role} token")
                    return
                if not upload:
                    await _answer(send, 415, f"Content-Type: {ctype[:64]} is taken only by the uploads "
                                             "(PUT /v1/agent/{site}/jobs/{id}/checkpoint or output, a site token); "
                                             "this route takes application/json")
                    return
            elif not (ctype == "" or ctype == "application/json" or ctype.endswith("+json")):
                await _answer(send, 415, f"Content-Type: {ctype[:64]!r} is not supported; send application/json")
                return
        meter = method == "POST" and METER_ROUTE.match(path) is not None
        if meter and has_body and principal is not None and principal.role != "site":
            await _answer(send, 403, f"this call is for a site agent token, not a {principal.role} token")
            return
        cap = lim.max_upload_bytes if upload else lim.max_meter_body_bytes if meter else lim.max_body_bytes
        if size is not None and size > cap:
            shown = f"{size:,}" if len(declared.strip()) <= 18 else declared.strip()[:24] + "..."
            await _answer(send, 413, f"body: {shown} bytes is more than the limit of {cap:,}")
            return
        admission: Admission | None = getattr(self.state, "admission", None)
        if admission is not None and not upload and path not in UNLIMITED:
            agent = principal is not None and principal.role == "site"
            why = await admission.enter(key, agent)
            if why is not None:
                await _answer(send, 503, f"overloaded: {why}; retry after 1 s", {"Retry-After": "1"})
                return
            try:
                await self._pass(scope, receive, send, upload, cap, ctype, method)
            finally:
                admission.leave(key, agent)
            return
        await self._pass(scope, receive, send, upload, cap, ctype, method)

    async def _pass(self, scope: Scope, receive: Receive, send: Send, upload: bool, cap: int, ctype: str,
                    method: str) -> None:
        if upload or method in ("GET", "HEAD", "OPTIONS"):
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
            problem = json_problem(body, self.limits)
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


class RequestLog:
    """Request ids and one log line per request: see the module's docstring."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str | None, int, float], None] | None = None):
        self.app = app
        self.observe = observe      # (method, route template, status, seconds): telemetry.Telemetry.request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _header(scope, b"x-request-id")
        if rid is None or not _REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)
        status = 0
        rid_header = (b"x-request-id", rid.encode())
        t0 = time.perf_counter()

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg["headers"] = [*msg.get("headers", ()), rid_header]
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("%s %s: unhandled error", scope.get("method"), scope.get("path"))
            raise
        finally:
            if self.observe is not None:
                self.observe(scope.get("method", "GET"), route_of(scope), status or 500, time.perf_counter() - t0)
            if log.isEnabledFor(logging.INFO) or status >= 500:
                p = scope.get("state", {}).get("principal")
                ms = (time.perf_counter() - t0) * 1000.0
                log.log(logging.ERROR if status >= 500 and status != 503 else logging.INFO,
                        "%s %s %d %.1f ms %s", scope.get("method"), scope.get("path"), status or 500, ms,
                        p.role if p is not None else "anonymous",
                        extra={"method": scope.get("method"), "path": scope.get("path"), "status": status or 500,
                               "ms": round(ms, 1), "principal": p.role if p is not None else "anonymous"})
            REQUEST_ID.reset(token)


def install(app: Any, limits: Limits | None = None) -> Limits:
    """Put `RequestLimits` (and `RequestLog` in front of it) before `app`; its limits and its
    `RateLimiter` are kept on `app.state.limits` and `app.state.rate_limiter`, with the failed
    authentications (`app.state.auth_failures`), the admission (`app.state.admission`) and the
    token cache (`app.state.token_cache`). The middleware reads them on each request, so a test or
    an embedder may change them: `app.state.rate_limiter.configure(None)`,
    `app.state.admission.configure(None)`."""
    from suanli.service.bearer import TokenCache
    lim = limits if limits is not None else Limits(**vars(DEFAULT))
    limiter = RateLimiter(lim.rate_per_s, lim.burst)
    app.state.auth_failures = FailedAuth(lim.max_auth_failures, lim.auth_failures_per_s)
    app.state.admission = Admission(lim.max_in_flight, lim.max_in_flight_per_caller, lim.max_queue, lim.queue_s)
    app.state.token_cache = TokenCache(lim.token_ttl_s)
    # outermost, outside Starlette's own middleware (errors, exceptions, ...): a request refused
    # here (a 503 of an overload, a 401, a 429) costs no pass through the framework's layers
    inner_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        telemetry = getattr(getattr(app.state, "controller", None), "telemetry", None)
        return RequestLog(RequestLimits(inner_stack(), limits=lim, limiter=limiter, state=app.state),
                          observe=telemetry.request if telemetry is not None else None)
    app.build_middleware_stack = build_middleware_stack
    app.state.limits, app.state.rate_limiter = lim, limiter
    return lim


# what `install` uses when given nothing: `suanli serve --rate-limit` sets its rate before the
# app is built (the app is built inside `server.serve`, which takes no limits of its own)
DEFAULT = Limits()
