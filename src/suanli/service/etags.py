"""ETags on the API's JSON reads, so a poller (the dashboard, `suanli jobs --watch`, a script)
gets `304 Not Modified` and no body when nothing changed.

An ASGI middleware: for a successful `GET /v1/...` answered with JSON it hashes the body
(SHA-256, first 16 bytes) into a weak ETag; a request whose `If-None-Match` names that tag gets
304 with the tag and no body. The handler still runs (the body must be known to be the same);
what is saved is the transfer and the client's parsing. Responses that set their own ETag (the
dashboard's, which leave out the clock) are passed through untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ETags:
    def __init__(self, app: ASGIApp, prefix: str = "/v1/"):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        wanted = None
        for k, v in scope.get("headers", []):
            if k == b"if-none-match":
                wanted = v.decode("latin-1").strip()
        start: Message = {}
        body = bytearray()
        passthrough = False

        async def hold(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                passthrough = (message["status"] != 200 or b"etag" in headers
                               or not headers.get(b"content-type", b"").startswith(b"application/json"))
                if passthrough:
                    await send(message)
                else:
                    start = message
                return
            if passthrough:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            tag = 'W/"' + hashlib.sha256(bytes(body)).hexdigest()[:32] + '"'
            headers = [(k, v) for k, v in start["headers"] if k not in (b"content-length", b"etag")]
            if wanted is not None and tag in (t.strip() for t in wanted.split(",")):
                await send({"type": "http.response.start", "status": 304,
                            "headers": [(k, v) for k, v in headers if k != b"content-type"]
                            + [(b"etag", tag.encode()), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": headers + [(b"etag", tag.encode()),
                                              (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": bytes(body)})

        await self.app(scope, receive, hold)


def install(app) -> None:
    app.add_middleware(ETags)
