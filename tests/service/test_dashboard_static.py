"""The dashboard's built files: sent gzipped (the `.gz` the build writes beside each) to a client
that accepts gzip, as they are to one that does not; hashed assets cached for good, the page
never; nothing outside the assets directory."""

from __future__ import annotations

from pathlib import Path

import httpx
import svc

import suanli.service.dashboard as dashboard

db_url, service = svc.db_url, svc.service


def _bundle() -> Path:
    return max((p for p in (dashboard.STATIC / "assets").glob("*.js")), key=lambda p: p.stat().st_size)


def test_assets_are_sent_gzipped_to_a_client_that_accepts_it(service):
    js = _bundle()
    with httpx.Client(base_url=service.url, timeout=30) as c:
        zipped = c.get(f"/assets/{js.name}", headers={"Accept-Encoding": "gzip"})
        assert zipped.status_code == 200
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < js.stat().st_size / 2          # what went over the wire
        assert zipped.content == js.read_bytes()                                         # httpx unzips it
        assert zipped.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        assert "immutable" in zipped.headers["cache-control"] and zipped.headers["vary"] == "Accept-Encoding"
        plain = c.get(f"/assets/{js.name}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == js.read_bytes()
        page = c.get("/", headers={"Accept-Encoding": "gzip, br"})
        assert page.headers["content-encoding"] == "gzip" and page.headers["cache-control"] == "no-cache"
        assert page.content.lstrip().lower().startswith(b"<!doctype html")


def test_nothing_but_the_built_assets_is_served(service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        for name in ("..%2Findex.html", "..%2F..%2Fdb.py", "%2Fetc%2Fpasswd", ".hidden", "nope.js",
                     f"{_bundle().name}.gz"):
            assert c.get(f"/assets/{name}").status_code == 404, name
