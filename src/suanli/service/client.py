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
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url, token = resolve(url, token)
        self.http = httpx.Client(base_url=self.url, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kw) -> Any:
        try:
            r = self.http.request(method, path, **kw)
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
