"""A small HTTP client of the API, for the CLI and the agent. Server URL and token: the
arguments, else `$SUANLI_URL` / `$SUANLI_TOKEN`, else the config file (`$SUANLI_CONFIG`, default
`~/.config/suanli/client.yaml`, with keys `url` and `token`). Failures are one-line UserErrors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from suanli.errors import UserError


def config_path() -> Path:
    return Path(os.environ.get("SUANLI_CONFIG") or Path.home() / ".config" / "suanli" / "client.yaml")


def resolve(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    url = url or os.environ.get("SUANLI_URL")
    token = token or os.environ.get("SUANLI_TOKEN")
    if not (url and token):
        p = config_path()
        if p.exists():
            try:
                doc = yaml.safe_load(p.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise UserError(f"{p}: cannot read the client config: {e}") from None
            if not isinstance(doc, dict):
                raise UserError(f"{p}: the client config must be a mapping with url and token")
            url = url or doc.get("url")
            token = token or doc.get("token")
    if not url:
        raise UserError(f"no server URL: set SUANLI_URL or 'url' in {config_path()}")
    if not token:
        raise UserError(f"no token: set SUANLI_TOKEN or 'token' in {config_path()}")
    return url.rstrip("/"), token


class Client:
    """`url` may list several replicas of one service, comma-separated: a call that cannot reach
    the current one tries the next (they share one database, so any replica answers alike). Only a
    failed connection moves on: a request that may have reached a server is not sent twice."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        urls, token = resolve(url, token)
        self.urls = [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]
        self.current = 0
        self.http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    @property
    def url(self) -> str:
        return self.urls[self.current]

    def close(self) -> None:
        self.http.close()

    def upload(self, path: str, file: Path, params: dict) -> Any:
        """PUT a file as the request body (streamed from disk)."""
        with open(file, "rb") as f:
            return self.call("PUT", path, params=params, content=f,
                             headers={"Content-Type": "application/gzip"})

    def download(self, path: str, dest: Path, params: dict) -> int:
        """GET a file to `dest` (streamed to disk); returns its size in bytes."""
        try:
            with self.http.stream("GET", self.url + path, params=params) as r:
                if r.status_code >= 400:
                    r.read()
                    raise UserError(f"{r.status_code}: {r.text}")
                size = 0
                with open(dest, "wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
                        size += len(chunk)
                return size
        except httpx.HTTPError as e:
            raise UserError(f"cannot reach {self.url}: {e}") from None

    def call(self, method: str, path: str, **kw) -> Any:
        for tried in range(len(self.urls)):
            try:
                r = self.http.request(method, self.url + path, **kw)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:   # nothing was sent: safe to retry
                failed = self.url
                self.current = (self.current + 1) % len(self.urls)
                if tried == len(self.urls) - 1:
                    raise UserError(f"cannot reach {failed}: {e}") from None
            except httpx.HTTPError as e:
                raise UserError(f"cannot reach {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise UserError(f"{r.status_code}: {detail}")
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text
