"""The web dashboard in a real browser: Debian's Chromium driven by Playwright against a real
server (uvicorn in a thread, SQLite) on the East-West network with two real agents
(tests/service/svc.py's helpers). A tenant submits a job through the form and sees it placed and
explained; another tenant cannot open it; the operator sees everything; no page logs a console
error. The screenshots in docs/img/ (docs/DASHBOARD.md) are taken here
(`SUANLI_SCREENSHOTS=docs/img .venv/bin/pytest tests/browser`).

Chromium and Playwright missing: the tests skip, unless SUANLI_TEST_BROWSER=1 (.ci/run sets it),
where they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))   # svc.py, as tests/service imports it

from svc import Service, job_body, wait_for  # noqa: E402

from suanli.service.server import ThreadServer, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NETWORK = str(ROOT / "src" / "suanli" / "service" / "examples" / "east-west-network.yaml")
# The screenshots land in docs/img/ (the README's) only when asked: SUANLI_SCREENSHOTS=docs/img;
# otherwise in a temporary directory, so a test run leaves the checkout clean.
SHOTS = Path(os.environ["SUANLI_SCREENSHOTS"]) if os.environ.get("SUANLI_SCREENSHOTS") else \
    Path(tempfile.gettempdir()) / "suanli-dashboard-shots"
CHROMIUM = os.environ.get("SUANLI_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("SUANLI_TEST_BROWSER") == "1"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
AGENT_SITES = ("beijing-1", "hami-1")


def _unavailable(why: str):
    if REQUIRED:
        pytest.fail(f"SUANLI_TEST_BROWSER=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        except Exception as e:          # a broken install: the same rule as a missing one
            _unavailable(f"Chromium at {CHROMIUM} did not start: {e}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def dash(tmp_path_factory) -> Iterator[Service]:
    """One server for the module (the East-West network, policy `cheapest`: it scores every candidate,
    so the explanation has parts to show), agents on two of its seven sites."""
    d = tmp_path_factory.mktemp("dash")
    app = build(NETWORK, f"sqlite:///{d / 'suanli.db'}", policy="cheapest", tick_s=0.2, heartbeat_timeout_s=3.0)
    with ThreadServer(app) as url:
        s = Service(url, app, "sqlite")
        s.tokens = {"acme": s.tenant("acme", budget=5000.0), "bolt": s.tenant("bolt"), "admin": s.admin_token()}
        try:
            for site in AGENT_SITES:
                s.start_agent(site, d)
            c = s.client(s.tokens["admin"])
            wait_for(lambda: {x["id"] for x in c.get("/v1/sites").json() if x["up"]} == set(AGENT_SITES), 60)
            yield s
        finally:
            for p in s.agents:
                p.terminate()
            for p in s.agents:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class Console:
    """Every console error and uncaught exception of a page; `allow` lists expected ones (regexes)."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.allow: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(a, e) for a in self.allow)]


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.console = Console(pg)
    yield pg
    errors = pg.console.unexpected()
    ctx.close()
    assert not errors, "console errors:\n" + "\n".join(errors)


def login(page, dash: Service, who: str, hash_: str = "#/network") -> None:
    page.goto(f"{dash.url}/{hash_}")
    page.fill("#token", dash.tokens[who])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#who .role")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def api(dash: Service, who: str) -> httpx.Client:
    return dash.client(dash.tokens[who])


# ----------------------------------------------------------------------------- tests
def test_the_page_needs_no_token_but_every_call_does(dash):
    r = httpx.get(f"{dash.url}/")
    assert r.status_code == 200 and "<script" in r.text
    asset = re.search(r'src="(/assets/[^"]+\.js)"', r.text).group(1)
    assert httpx.get(f"{dash.url}{asset}").status_code == 200
    for path in ("/v1/dashboard/me", "/v1/dashboard/network", "/v1/dashboard/sites/hami-1/series",
                 "/v1/dashboard/tenants?month=2026-01"):
        assert httpx.get(f"{dash.url}{path}").status_code == 401, path
    site = dash.client(dash.site_token("hami-1"))
    assert site.get("/v1/dashboard/network").status_code == 403
    c = api(dash, "acme")
    first = c.get("/v1/dashboard/network")
    assert first.status_code == 200 and first.headers["etag"]
    again = c.get("/v1/dashboard/network", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code in (200, 304)            # 200 only if something changed in between
    assert c.get("/v1/dashboard/tenants", params={"month": "2026-01", "tenant": "bolt"}).status_code == 403


def test_network_view_shows_sites_cities_links_and_flows(dash, page):
    # a job from Shanghai with data to move, running while we look: a flow on the map
    c = api(dash, "acme")
    jid = c.post("/v1/jobs", json=job_body(name="shanghai-etl", origin="shanghai", data_gb=20, gpus=4,
                                           command="sleep 30", work_h=0.05)).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 60)
    login(page, dash, "acme")
    page.wait_for_selector("#map canvas")
    cards = page.locator(".site-card")
    cards.first.wait_for()
    assert cards.count() == 7
    for site in AGENT_SITES:
        assert page.locator(f'.site-card[data-site="{site}"] .pill').inner_text() == "up"
    assert page.locator('.site-card[data-site="qingyang-1"] .pill').inner_text() == "down"
    hami = page.locator('.site-card[data-site="hami-1"]').inner_text()
    for text in ("a800", "48 free / 48", "PUE", "renewables now", "grid carbon now", "price now"):
        assert text in hami, (text, hami)
    net = c.get("/v1/dashboard/network").json()
    flows = [f for f in net["flows"] if f["origin"] == "shanghai"]
    assert flows and flows[0]["path"][0] == "shanghai" and flows[0]["data_gb"] == 20
    job = c.get(f"/v1/jobs/{jid}").json()
    site = next(s for s in net["sites"] if s["id"] == job["site"])
    pool = next(p for p in site["pools"] if p["gpu_type"] == job["gpu_type"])
    assert pool["used"] == 4
    card = page.locator(f'.site-card[data-site="{job["site"]}"]')
    assert f"{pool['count'] - 4} free / {pool['count']}" in card.inner_text()
    page.wait_for_timeout(800)            # the map's first animation frame
    shot(page, "dashboard-network.png")
    c.delete(f"/v1/jobs/{jid}")


def test_the_submit_form_quotes_now_and_if_it_may_wait_then_submits_the_choice(dash, page):
    """Issue "For the people who use it", 1: a quote in the submit form, from the policy the
    controller runs, booking nothing; "Choose" sets the job's max_wait_h, which the submit keeps."""
    c = api(dash, "acme")

    def quoted() -> list[dict]:
        return [j for j in c.get("/v1/jobs", params={"limit": 500}).json()["jobs"] if j["name"] == "quoted"]
    assert quoted() == []
    login(page, dash, "acme", "#/submit")
    page.fill("#submit input[name=name]", "quoted")
    page.fill("#submit input[name=command]", "sleep 1")
    page.fill("#submit input[name=work_h]", "0.002")
    page.click("#quote-button")
    rows = page.locator("#quote table.quote tbody tr")
    rows.first.wait_for()
    body = {"name": "quoted", "command": "sleep 1", "gpus": 1, "work_h": 0.002, "origin": "beijing",
            "data_gb": 0, "windows": [0, 6, 24]}
    q = c.post("/v1/quotes", json=body).json()
    assert rows.count() == len(q["options"]) == 3
    first = rows.nth(0).inner_text()
    assert "start now" in first and "¥" in first and "kg" in first, first
    assert "may wait 6 h" in rows.nth(1).inner_text() and "may wait 24 h" in rows.nth(2).inner_text()
    assert quoted() == []                                                   # a quote books nothing
    shot(page, "dashboard-submit-quote.png")
    rows.nth(1).locator("button").click()
    assert page.input_value("#submit input[name=max_wait_h]") == "6"
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))
    jid = int(page.url.rsplit("/", 1)[1])
    assert c.get(f"/v1/jobs/{jid}").json()["spec"]["max_wait_h"] == 6 and len(quoted()) == 1


def test_a_tenant_submits_a_job_and_sees_it_placed_and_explained(dash, page):
    login(page, dash, "acme", "#/submit")
    page.fill("#submit input[name=name]", "ui-finetune")
    page.fill("#submit input[name=command]", "sleep 1")
    page.fill("#submit input[name=gpus]", "2")
    page.fill("#submit input[name=work_h]", "0.002")
    page.select_option("#submit select[name=origin]", "shanghai")
    page.fill("#submit input[name=data_gb]", "5")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))
    jid = int(page.url.rsplit("/", 1)[1])
    # live: the page follows the job to the end without a reload
    page.wait_for_selector("#job h2 .state-succeeded", timeout=60_000)
    job = api(dash, "acme").get(f"/v1/jobs/{jid}").json()
    assert job["name"] == "ui-finetune" and job["tenant"] == "acme" and job["state"] == "SUCCEEDED"
    expl = page.locator("#explanation").inner_text()
    assert f"{job['site']} / {job['gpu_type']}" in expl
    rows = page.locator("#candidates tbody tr")
    assert rows.count() == len(job["explanation"]["candidates"]) >= 2
    assert page.locator("#candidates tr.chosen").count() >= 1
    assert "rental" in page.locator("#candidates thead").inner_text()
    assert page.locator("#rejected tbody tr").count() == 5            # the sites without an agent
    assert "outage: site is down" in page.locator("#rejected").inner_text()
    states = page.locator("#lifecycle tbody tr td:nth-child(4)").all_inner_texts()
    assert states == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED"]
    assert "¥" in page.locator(".panels").inner_text()
    page.wait_for_selector("#parts canvas")
    shot(page, "dashboard-job.png")

    page.goto(f"{dash.url}/#/jobs?state=SUCCEEDED")
    page.wait_for_selector(f'#jobs tr[data-job="{jid}"]')
    page.goto(f"{dash.url}/#/jobs?state=RUNNING")
    page.wait_for_selector("#jobs tbody tr")
    assert page.locator(f'#jobs tr[data-job="{jid}"]').count() == 0


def test_a_tenant_cannot_open_another_tenants_job_and_the_operator_sees_all(dash, page):
    acme = api(dash, "acme")
    jid = acme.post("/v1/jobs", json=job_body(name="acme-secret", origin="beijing")).json()["id"]
    bolt = api(dash, "bolt")
    bid = bolt.post("/v1/jobs", json=job_body(name="bolt-own", origin="hami")).json()["id"]
    login(page, dash, "bolt", f"#/jobs/{jid}")
    page.wait_for_selector(".notfound")
    assert f"No job {jid}" in page.locator(".notfound").inner_text()
    assert "acme-secret" not in page.content()
    # the browser logs the API's 404 for that job (the only error this page may log)
    page.console.allow.append(r"status of 404")
    page.goto(f"{dash.url}/#/jobs")
    page.wait_for_selector(f'#jobs tr[data-job="{bid}"]')
    assert page.locator(f'#jobs tr[data-job="{jid}"]').count() == 0
    assert set(page.locator("#jobs tbody td:nth-child(3)").all_inner_texts()) == {"bolt"}

    page.click("#logout")
    login(page, dash, "admin", "#/jobs")
    page.wait_for_selector(f'#jobs tr[data-job="{jid}"]')
    assert page.locator(f'#jobs tr[data-job="{bid}"]').count() == 1
    assert "operator" in page.locator("#who").inner_text()
    page.goto(f"{dash.url}/#/jobs?tenant=bolt")
    page.wait_for_selector(f'#jobs tr[data-job="{bid}"]')
    assert set(page.locator("#jobs tbody td:nth-child(3)").all_inner_texts()) == {"bolt"}
    page.goto(f"{dash.url}/#/jobs/{jid}")
    page.wait_for_selector("#job h2")
    assert "acme-secret" in page.locator("#job h2").inner_text()


def test_site_view_charts_72_hours_and_polls_with_etags(dash, page):
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/series" in r.url else None)
    # a big job running at hami-1 for hours: load in the past hour and in the forecast
    bolt = api(dash, "bolt")
    big = bolt.post("/v1/jobs", json=job_body(name="pretrain", origin="hami", gpus=32, gpu_types=["910b"],
                                              work_h=6.0, command="sleep 120")).json()["id"]
    wait_for(lambda: bolt.get(f"/v1/jobs/{big}").json()["state"] == "RUNNING", 60)
    login(page, dash, "acme", "#/sites/hami-1")
    page.wait_for_selector("#energy canvas")
    page.wait_for_selector("#prices canvas")
    assert "hami" in page.locator("#site-city").inner_text()
    data = api(dash, "acme").get("/v1/dashboard/sites/hami-1/series").json()
    assert len(data["hours"]) == data["slot"] - data["first_h"] + 48
    assert max(data["renewable_kw"]) > 0 and len(set(data["cny_per_kwh"])) > 1       # wind and a TOU tariff
    now = data["slot"] - data["first_h"]
    planned = 32 * 0.40 * 1.18                     # GPUs x 910b board power x hami-1's PUE, kWh per full hour
    assert data["load_kwh"][now + 2] == pytest.approx(planned)                   # the forecast holds the job
    assert data["renewable_used_kwh"][now + 2] + data["grid_kwh"][now + 2] == pytest.approx(planned)
    assert "kWh" in page.locator("#site-totals").inner_text()
    page.wait_for_timeout(300)
    shot(page, "dashboard-site.png")
    # live: the page polls; nothing changed at hami-1, so the server answers 304 and sends no body
    # (wait in Playwright, not in time.sleep: the sync API delivers events only while it runs)
    page.wait_for_event("response", lambda r: "/series" in r.url and r.status == 304, timeout=20_000)
    assert statuses[0] == 200
    bolt.delete(f"/v1/jobs/{big}")


def test_tenant_invoice_and_carbon_avoided(dash, page):
    acme = api(dash, "acme")
    jobs = acme.get("/v1/jobs", params={"state": "SUCCEEDED"}).json()["jobs"]
    if not jobs:                          # run alone: make one finished job
        jid = acme.post("/v1/jobs", json=job_body(name="invoice-me", origin="shanghai", work_h=0.001)).json()["id"]
        wait_for(lambda: acme.get(f"/v1/jobs/{jid}").json()["state"] == "SUCCEEDED", 60)
    t = acme.get("/v1/dashboard/tenants", params={"month": _month(dash)}).json()["tenants"]
    assert [x["tenant"] for x in t] == ["acme"]
    inv = acme.get("/v1/invoices", params={"month": _month(dash)}).json()[0]
    assert t[0]["invoice"]["total_cny"] == pytest.approx(inv["total_cny"])      # the same metering
    c = t[0]["carbon"]
    assert c["avoided_kg"] == pytest.approx(c["origin_grid_kg"] - c["kg"])
    login(page, dash, "acme", "#/tenant")
    page.wait_for_selector('.invoice[data-tenant="acme"] table.lines tbody tr td a')
    text = page.locator('.invoice[data-tenant="acme"]').inner_text()
    assert "kg CO₂e avoided" in text and "¥" in text
    ids = page.locator('.invoice[data-tenant="acme"] table.lines tbody td:first-child').all_inner_texts()
    assert sorted(map(int, ids)) == sorted({ln["job_id"] for ln in inv["lines"]})       # one row per job
    assert page.locator(".invoice").count() == 1               # not bolt's
    # no site of this server has meter readings: every line's energy is the model's
    assert {ln["energy_basis"] for ln in inv["lines"]} == {"modelled"}
    basis = page.locator('.invoice[data-tenant="acme"] table.lines tbody td.basis-cell')
    assert set(basis.all_inner_texts()) == {"modelled"}
    assert {basis.nth(k).get_attribute("data-basis") for k in range(basis.count())} == {"modelled"}
    page.wait_for_selector(".invoice canvas")
    shot(page, "dashboard-invoice.png")

    page.click("#logout")
    login(page, dash, "admin", "#/tenant")
    page.wait_for_selector('.invoice[data-tenant="bolt"]')
    assert page.locator(".invoice").count() == 2


def _month(dash: Service) -> str:
    from datetime import timedelta
    ctl = dash.app.state.controller
    return (ctl.epoch + timedelta(hours=ctl.now_h())).strftime("%Y-%m")


# ----------------------------------------------------------------------------- languages, phones, accessibility
# axe-core (Deque, MPL-2.0), vendored as tests/browser/axe.min.js (web/package.json pins the same
# version), so CI needs no npm: injected into each view, it must find no serious or critical
# WCAG 2.1 A/AA violation. Every violation found (any impact) is also written, per view, to
# $TMPDIR/suanli-axe-results.json.
AXE = Path(__file__).with_name("axe.min.js")
AXE_RESULTS: dict[str, list] = {}
PHONE = {"width": 390, "height": 844}


def _context(browser, lang: str = "en-US", viewport: dict | None = None):
    ctx = browser.new_context(viewport=viewport or {"width": 1360, "height": 900}, locale=lang)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.console = Console(pg)
    return ctx, pg


def _finish(ctx, pg) -> None:
    errors = pg.console.unexpected()
    ctx.close()
    assert not errors, "console errors:\n" + "\n".join(errors)


def axe(page, label: str) -> list[dict]:
    """Serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
        const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
        return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                         targets: v.nodes.slice(0, 4).map((n) => n.target.join(" "))}));
    }""")
    AXE_RESULTS[label] = found
    (Path(tempfile.gettempdir()) / "suanli-axe-results.json").write_text(
        json.dumps(AXE_RESULTS, indent=1, ensure_ascii=False))
    return [v for v in found if v["impact"] in ("serious", "critical")]


_JOB: dict[str, int] = {}


def finished_job(dash: Service) -> int:
    """A SUCCEEDED job of acme's, made once."""
    if "id" not in _JOB:
        acme = api(dash, "acme")
        jid = acme.post("/v1/jobs", json=job_body(name="view-me", origin="shanghai", work_h=0.001)).json()["id"]
        wait_for(lambda: acme.get(f"/v1/jobs/{jid}").json()["state"] == "SUCCEEDED", 60)
        _JOB["id"] = jid
    return _JOB["id"]


def views(dash: Service) -> list[tuple[str, str, str]]:
    """(name, URL fragment, a selector that says the view has drawn its data)."""
    return [("network", "#/network", ".site-card"),
            ("site", "#/sites/hami-1", "#energy canvas"),
            ("site-down", "#/sites/qingyang-1", '#site-agent .pill[data-up="down"]'),
            ("jobs", "#/jobs", "#jobs tbody tr[data-job]"),
            ("job", f"#/jobs/{finished_job(dash)}", "#job h2 .state"),
            ("submit", "#/submit", "#submit"),
            ("invoice", "#/tenant", ".invoice table.lines")]


def open_view(page, dash: Service, fragment: str, ready: str) -> None:
    page.goto(f"{dash.url}/{fragment}")
    page.wait_for_selector(ready)
    page.wait_for_function("() => document.getElementById('status').textContent.length > 0")


@pytest.mark.parametrize("lang", ["en-US", "zh-CN"])
def test_every_view_passes_axe_in_both_languages(dash, browser, lang):
    ctx, page = _context(browser, lang)
    zh = lang == "zh-CN"
    page.goto(f"{dash.url}/#/network")
    page.wait_for_selector("#login h1")
    assert not axe(page, f"{lang} login")
    login(page, dash, "acme")
    bad = {}
    for name, fragment, ready in views(dash):
        open_view(page, dash, fragment, ready)
        assert page.locator("h1").count() == 1, name
        if zh:
            assert re.search(r"[\u4e00-\u9fff]", page.locator("h1").inner_text()), name
            page.wait_for_timeout(300)            # the map's first frame
            shot(page, f"dashboard-zh-{name}.png")
        if found := axe(page, f"{lang} {name}"):
            bad[name] = found
    assert not bad, bad
    _finish(ctx, page)


@pytest.mark.parametrize("lang", ["en-US", "zh-CN"])
def test_every_view_fits_a_390_px_phone(dash, browser, lang):
    ctx, page = _context(browser, lang, PHONE)
    page.goto(f"{dash.url}/#/network")
    page.wait_for_selector("#login h1")
    width = "() => [document.documentElement.scrollWidth, window.innerWidth]"
    sw, iw = page.evaluate(width)
    assert sw <= iw, ("login", sw, iw)
    login(page, dash, "acme")
    # Sign out is readable: not the colour of what is behind it
    out = page.evaluate("""() => { const b = document.getElementById("logout"); const s = getComputedStyle(b);
        return [s.color, s.backgroundColor, getComputedStyle(document.getElementById("top")).backgroundColor]; }""")
    assert out[0] != out[1] and out[1] != "rgba(0, 0, 0, 0)", out
    too_wide = {}
    for name, fragment, ready in views(dash):
        open_view(page, dash, fragment, ready)
        sw, iw = page.evaluate(width)
        if sw > iw:
            too_wide[name] = sw - iw
        if found := axe(page, f"{lang} phone {name}"):
            too_wide[f"{name} axe"] = found
        if lang == "zh-CN":
            page.wait_for_timeout(300)
            shot(page, f"dashboard-phone-{name}.png")
    assert not too_wide, too_wide
    _finish(ctx, page)


def test_chinese_from_the_browser_and_the_switch_is_remembered(dash, browser):
    ctx, page = _context(browser, "zh-CN")
    page.goto(f"{dash.url}/#/network")
    page.wait_for_selector("#login h1")
    assert page.locator("#login h1").inner_text() == "登录"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    login(page, dash, "acme")
    page.wait_for_selector(".site-card")
    assert page.locator("h1").inner_text() == "算力网络"
    assert page.locator("#nav").inner_text().split() == ["网络", "作业", "提交作业", "用量与账单"]
    cards = page.locator("#cards").inner_text()
    for name in ("庆阳-1", "哈密-1", "中卫-1", "乌兰察布-1", "贵阳-1", "北京-1", "郑州-1", "离线", "在线"):
        assert name in cards, name
    assert "¥" in cards and "CNY" not in cards
    assert page.locator('.site-card[data-site="qingyang-1"] .pill').inner_text() == "离线"
    assert page.locator("#logout").inner_text() == "退出"
    # times: Beijing time, 24-hour, in the status line and the tables
    assert re.search(r"\d{2}:\d{2}:\d{2}$", page.locator("#status").inner_text())
    page.goto(f"{dash.url}/#/jobs/{finished_job(dash)}")
    page.wait_for_selector("#lifecycle tbody tr")
    states = page.locator("#lifecycle tbody tr td:nth-child(4)").all_inner_texts()
    assert states[-1] == "成功"
    first = page.locator("#lifecycle tbody tr td:first-child").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", first), first
    assert "上海" in page.locator(".panels").inner_text()
    # the switch: English, remembered over a reload (localStorage), then back
    page.click('#lang button[data-lang="en"]')
    page.wait_for_function(f"() => document.querySelector('h1').textContent === 'Job {finished_job(dash)}'")
    assert page.evaluate("localStorage.getItem('suanli.lang')") == "en"
    page.reload()
    page.wait_for_selector("#lifecycle tbody tr")
    assert page.locator("#lifecycle tbody tr td:nth-child(4)").all_inner_texts()[-1] == "SUCCEEDED"
    assert page.locator('#lang button[data-lang="en"]').get_attribute("aria-pressed") == "true"
    page.click('#lang button[data-lang="zh"]')
    page.wait_for_function("() => document.querySelector('h1').textContent.startsWith('作业')")
    _finish(ctx, page)


# ----------------------------------------------------------------------------- defects seen in the browser
def test_coming_back_to_the_network_view_draws_it_again(dash, page):
    """The poll's 304 (nothing new since the last poll of that URL) used to leave a view that had
    just been built anew blank."""
    login(page, dash, "acme")
    page.wait_for_selector(".site-card")
    page.click('#nav a[href="#/jobs"]')
    page.wait_for_selector("#jobs tbody tr")
    with page.expect_response(lambda r: r.url.endswith("/v1/dashboard/network")) as got:
        page.click('#nav a[href="#/network"]')
    assert got.value.status == 304              # what used to blank it
    page.wait_for_selector(".site-card", timeout=10_000)
    assert page.locator(".site-card").count() == 7
    page.wait_for_selector("#map canvas")
    assert page.locator("#map").get_attribute("role") == "img"
    assert "7 sites" in page.locator("#map + .chart-summary").inner_text()


def test_jobs_table_keeps_focus_sorts_searches_and_shows_the_whole_reason(dash, page):
    acme = api(dash, "acme")
    running = acme.post("/v1/jobs", json=job_body(name="focus-runner", origin="beijing", command="sleep 40",
                                                   work_h=0.02)).json()["id"]
    finished = finished_job(dash)
    login(page, dash, "acme", "#/jobs")
    page.wait_for_selector(f'#jobs tr[data-job="{running}"]')
    link = page.locator(f'#jobs tr[data-job="{finished}"] a')
    link.focus()
    for _ in range(2):                           # two polls, the running job's figures moving
        page.wait_for_event("response", lambda r: "/v1/jobs?" in r.url, timeout=20_000)
        page.wait_for_timeout(200)
    assert page.evaluate("document.activeElement.dataset.focus") == f"job-{finished}"
    # sort: by id, then descending
    page.click('#jobs th[data-col="id"] button')
    ids = [int(x) for x in page.locator("#jobs tbody td:first-child").all_inner_texts()]
    assert ids == sorted(ids, reverse=True)
    assert page.locator('#jobs th[data-col="id"]').get_attribute("aria-sort") == "descending"
    page.click('#jobs th[data-col="cost"] button')
    # search
    page.fill("#job-search", "FOCUS-run")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr[data-job]').length === 1")
    assert page.locator("#jobs tbody tr[data-job]").get_attribute("data-job") == str(running)
    assert "1 job" in page.locator("#jobs-count").inner_text()
    # the reason: cut to one line, opened in full
    page.fill("#job-search", "")
    why = page.locator(f'#jobs tr[data-job="{finished}"] td.why details')
    reason = acme.get(f"/v1/jobs/{finished}").json()["reason"]
    why.locator("summary").click()
    assert why.get_attribute("open") is not None
    assert why.inner_text().strip().endswith(reason[-10:])
    acme.delete(f"/v1/jobs/{running}")

    # the operator's tenant filter: any part of the name, any case
    page.click("#logout")
    login(page, dash, "admin", "#/jobs")
    page.wait_for_selector("#jobs tbody tr[data-job]")
    page.fill("#tenant-filter", "OLT")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs tbody td:nth-child(3)')].every((td) => td.textContent === 'bolt')")
    page.fill("#tenant-filter", "cm")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs tbody td:nth-child(3)')].every((td) => td.textContent === 'acme')")


def test_the_explanation_shows_each_pools_best_and_why_the_others_lost(dash, page):
    """A synthetic explanation (the API's answer rewritten in the browser): 9 weighed, 5 kept, all
    of one site; the best of each other pool (`others`) with how much more it costs and the parts
    that make the difference; the pools with no candidate (`unscored`) with why; then one weighed
    where only one site could host it ("1 candidate", not "1 candidates"). An explanation stored
    before it carried `weighed`, `others` and `unscored` still shows its count and its unnamed sites."""
    jid = finished_job(dash)
    real = api(dash, "acme").get(f"/v1/jobs/{jid}").json()
    c0 = real["explanation"]["candidates"][0]
    cand = lambda site, gpu, total, energy=0.2: {**c0, "site": site, "gpu_type": gpu, "total": total,   # noqa: E731
                                                 "parts": {"rental": total - energy, "energy": energy}}
    why = "cheapest: best of 9 candidates; 4 sites could host it"
    job = {**real, "reason": why,
           "explanation": {**real["explanation"], "reason": why, "weighed": 9,
                           "chosen": cand("hami-1", "910b", 1.0),
                           "candidates": [cand("hami-1", "910b", 1.0), cand("hami-1", "910b", 1.2),
                                          cand("hami-1", "910b", 1.3), cand("hami-1", "910b", 1.4),
                                          cand("hami-1", "910b", 1.9)],
                           "others": [cand("beijing-1", "a800", 1.5, energy=0.6), cand("zhongwei-1", "h100", 2.5),
                                      cand("zhengzhou-1", "a800", 1.0015), cand("guiyang-1", "910b", 1.0)],
                           "unscored": {"ulanqab-1/a800": "capacity: no free GPUs for the whole run in the hours "
                                                          "it looked at"},
                           "rejected": {"qingyang-1": "outage: site is down", "guangzhou-1": "latency: 60 ms > 50 ms"}}}
    body = {"job": job}
    page.route(f"**/v1/jobs/{jid}", lambda route: route.fulfill(status=200, content_type="application/json",
                                                              body=json.dumps(body["job"])))
    login(page, dash, "acme", f"#/jobs/{jid}")
    page.wait_for_selector("#per-site tbody tr")
    rows = page.locator("#per-site tbody tr")
    assert rows.all_inner_texts()[0].startswith("hami-1 ✔")
    pools = [(r.get_attribute("data-site"), r.get_attribute("data-gpu")) for r in rows.all()]
    assert pools == [("hami-1", "910b"), ("guiyang-1", "910b"), ("zhengzhou-1", "a800"), ("beijing-1", "a800"),
                     ("zhongwei-1", "h100"), ("ulanqab-1", "a800")]
    # a tenth of a fen more is still more (cheap jobs cost little), an equal total is a tie-break
    assert "¥0.0015 more: rental +¥0.0015" in page.locator('#per-site tr[data-site="zhengzhou-1"] .why').inner_text()
    assert "tie-break" in page.locator('#per-site tr[data-site="guiyang-1"] .why').inner_text()
    beijing = page.locator('#per-site tr[data-site="beijing-1"]').inner_text()
    # 0.5 more: energy +0.4, rental +0.1, largest first
    assert "+¥0.5" in beijing and "¥0.5 more: energy +¥0.4, rental +¥0.1" in beijing, beijing
    assert "chosen" in page.locator('#per-site tr[data-site="hami-1"] .why').inner_text()
    assert "capacity: no free GPUs" in page.locator('#per-site tr[data-site="ulanqab-1"]').inner_text()
    assert "weighed 9 candidates" in page.locator("#weighed").inner_text()
    assert "best of 9 candidates; 4 sites could host it" in page.locator("#job").inner_text()
    assert page.locator("#candidates tbody tr").count() == 5
    assert page.locator("#rejected tbody tr").count() == 2
    assert page.locator("#not-kept").count() == 0          # every site is accounted for
    assert page.locator("#parts").get_attribute("role") == "img"
    shot(page, "dashboard-job-explanation.png")

    one = json.loads(json.dumps(job))
    only = "fifo: best of 1 candidate; only hami-1 could host it"
    one["reason"] = one["explanation"]["reason"] = only
    one["explanation"].update(weighed=1, candidates=one["explanation"]["candidates"][:1], others=[], unscored={})
    body["job"] = one
    page.wait_for_function("() => document.getElementById('weighed').textContent.includes('1 candidate ')")
    text = page.locator("#job").inner_text()
    assert "1 candidates" not in text and "best of 1 candidate; only hami-1 could host it" in text
    old = json.loads(json.dumps(job))
    for k in ("weighed", "others", "unscored"):
        del old["explanation"][k]
    old["explanation"]["reason"] = "cheapest: best of 3 candidates"
    body["job"] = old
    page.wait_for_function("() => document.getElementById('weighed').textContent.includes('weighed 3 candidates')")
    not_kept = page.locator("#not-kept").inner_text()
    for site in ("zhongwei-1", "ulanqab-1", "zhengzhou-1"):
        assert site in not_kept, not_kept


def test_a_real_explanation_lists_every_pool_that_could_host_it(dash):
    """The `cheapest` policy on the live server: beyond the five kept, the best candidate of every
    other pool that passed the filters, or why it has none; the reason names how many sites."""
    job = api(dash, "acme").get(f"/v1/jobs/{finished_job(dash)}").json()
    e = job["explanation"]
    pools = {(c["site"], c["gpu_type"]) for c in e["candidates"] + e["others"]} | {
        tuple(k.split("/", 1)) for k in e["unscored"]}
    net = api(dash, "acme").get("/v1/dashboard/network").json()
    every = {(s["id"], p["gpu_type"]) for s in net["sites"] for p in s["pools"] if s["id"] not in e["rejected"]}
    assert pools == every, (pools, every)
    kept = {(c["site"], c["gpu_type"]) for c in e["candidates"]}
    assert not kept & {(c["site"], c["gpu_type"]) for c in e["others"]}
    assert all(c["total"] >= e["chosen"]["total"] - 1e-9 for c in e["others"])
    sites = {p[0] for p in pools}
    n = e["weighed"]
    assert e["reason"] == (f"cheapest: best of {n} candidate{'s' if n > 1 else ''}; " +
                           (f"{len(sites)} sites could host it" if len(sites) > 1
                            else f"only {next(iter(sites))} could host it"))


def test_a_down_site_is_drawn_down_with_no_free_gpus(dash, page):
    """qingyang-1 has no agent: down. Its card and the map's table say so, its GPUs are not
    counted free (the API's pools too), and the map draws it apart in the legend's grey."""
    net = api(dash, "acme").get("/v1/dashboard/network").json()
    q = next(s for s in net["sites"] if s["id"] == "qingyang-1")
    assert q["up"] is False and all(p["free"] == 0 for p in q["pools"])
    up = next(s for s in net["sites"] if s["id"] == "hami-1")
    assert sum(p["free"] for p in up["pools"]) > 0
    login(page, dash, "acme")
    card = page.locator('.site-card[data-site="qingyang-1"]')
    card.wait_for()
    assert card.get_attribute("data-up") == "down" and "site-down" in card.get_attribute("class")
    text = card.inner_text()
    assert "Down: its GPUs are not offered" in text
    for p in q["pools"]:
        assert f"0 free / {p['count']}" in text, text
    page.click("#map-data summary")
    row = page.locator("#map-data tr", has_text="qingyang-1").inner_text()
    assert "down" in row
    free = sum(p["free"] for s in net["sites"] for p in s["pools"])
    summary = page.locator("#map + .chart-summary").inner_text()
    assert f"{free:,} free" in summary, summary
    assert page.locator(".legend .swatch.down").count() == 1
    page.evaluate("localStorage.setItem('suanli.lang', 'zh')")
    page.reload()
    page.wait_for_selector('.site-card[data-site="qingyang-1"]')
    assert "离线" in page.locator('.site-card[data-site="qingyang-1"]').inner_text()


def test_battery_is_shown_apart_from_renewables(dash, page):
    """The site view's totals: renewables are solar and wind used directly; the battery's discharge
    is its own line (a synthetic series, since no battery discharges on the test network)."""
    real = api(dash, "acme").get("/v1/dashboard/sites/hami-1/series").json()
    n = len(real["hours"])
    d = {**real, "load_kwh": [10.0] * n, "renewable_used_kwh": [4.0] * n, "battery_discharge_kwh": [1.0] * n,
         "grid_kwh": [5.0] * n, "battery_capacity_kwh": 50.0, "battery_soc_kwh": [25.0] * n}
    page.route("**/v1/dashboard/sites/hami-1/series*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(d)))
    login(page, dash, "acme", "#/sites/hami-1")
    page.wait_for_selector("#total-battery")
    kwh = lambda sel: float(page.locator(sel).inner_text().split()[0].replace(",", ""))   # noqa: E731
    assert kwh("#total-renewables") == 4 * n and page.locator("#total-renewables").inner_text().endswith("(40%)")
    assert kwh("#total-battery") == n and page.locator("#total-battery").inner_text().endswith("(10%)")
    summary = page.locator("#energy + .chart-summary").inner_text()
    want = rf"{4 * n}[.0]* kWh from renewables \(solar and wind\), {n}[.0]* kWh from the battery"
    assert re.search(want, summary), summary
    net = api(dash, "acme").get("/v1/dashboard/network").json()
    for s in net["sites"]:                      # the map's share: renewables only, the battery beside it
        assert 0.0 <= s["renewable_share_now"] <= 1.0 and "battery_share_now" in s


def test_a_running_job_shows_its_energy_so_far_and_a_finished_one_its_battery_share(dash, page):
    acme = api(dash, "acme")
    jid = acme.post("/v1/jobs", json=job_body(name="so-far", origin="beijing", command="sleep 40",
                                              work_h=0.02)).json()["id"]
    wait_for(lambda: acme.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 60)
    login(page, dash, "acme", f"#/jobs/{jid}")
    page.wait_for_selector("#estimated")
    page.wait_for_function("() => !/^0 kWh/.test(document.getElementById('job-kwh').textContent)")
    u = wait_for(lambda: (u := acme.get(f"/v1/jobs/{jid}").json()["usage"])["energy_kwh"] > 0 and u, 30)
    assert u["estimated"] is True and (u["carbon_kg"] > 0) == (u["grid_kwh"] > 0)   # carbon is the grid's
    assert abs(u["energy_kwh"] - (u["grid_kwh"] + u["renewable_kwh"] + u["battery_kwh"])) < 1e-9
    assert "battery" in page.locator("#job-kwh").inner_text()
    listed = next(j for j in acme.get("/v1/jobs").json()["jobs"] if j["id"] == jid)
    assert listed["usage"]["estimated"] is True and listed["usage"]["gpu_seconds"] > 0
    acme.delete(f"/v1/jobs/{jid}")
    done = wait_for(lambda: (j := acme.get(f"/v1/jobs/{jid}").json())["state"] == "CANCELLED" and j, 30)
    u = done["usage"]
    assert u["estimated"] is False and u["energy_kwh"] > 0
    assert abs(u["energy_kwh"] - (u["grid_kwh"] + u["renewable_kwh"] + u["battery_kwh"])) < 1e-6


def test_cancel_asks_first(dash, page):
    acme = api(dash, "acme")
    jid = acme.post("/v1/jobs", json=job_body(name="cancel-me", origin="beijing", command="sleep 40",
                                              work_h=0.02)).json()["id"]
    login(page, dash, "acme", f"#/jobs/{jid}")
    page.click("#cancel")
    page.wait_for_selector("#cancel-confirm:not([hidden])")
    assert page.locator("#cancel").get_attribute("aria-expanded") == "true"
    page.wait_for_event("response", lambda r: f"/v1/jobs/{jid}" in r.url, timeout=20_000)    # a poll keeps it open
    assert page.locator("#cancel-confirm").is_visible()
    assert acme.get(f"/v1/jobs/{jid}").json()["state"] not in ("CANCELLED",)
    page.click("#cancel-no")
    assert page.locator("#cancel-confirm").is_hidden()
    page.click("#cancel")
    page.click("#cancel-yes")
    page.wait_for_selector("#job h2 .state-cancelled")
    assert acme.get(f"/v1/jobs/{jid}").json()["state"] == "CANCELLED"


def test_the_site_view_says_a_site_is_down_and_lists_its_jobs_and_window(dash, page):
    login(page, dash, "acme", "#/sites/qingyang-1")
    page.wait_for_selector('#site-agent .pill[data-up="down"]')
    assert "Down" in page.locator("#site-agent").inner_text()
    assert page.locator("#last-seen").inner_text() == "never"
    page.goto(f"{dash.url}/#/sites/hami-1")
    page.wait_for_selector('#site-agent .pill[data-up="up"]')
    seen = page.locator("#last-seen").inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", seen), seen
    acme = api(dash, "acme")
    at_hami = [j["id"] for j in acme.get("/v1/jobs", params={"site": "hami-1"}).json()["jobs"]]
    if at_hami:
        page.wait_for_selector(f'#site-jobs tr[data-job="{at_hami[0]}"]')
    # the window: 7 days back
    page.wait_for_selector("#energy canvas")
    with page.expect_response(lambda r: "/series?" in r.url and "past_h=168" in r.url) as got:
        page.select_option("#site-range", "168")
    d = got.value.json()
    assert len(d["hours"]) == d["slot"] - d["first_h"] + 48 and d["first_h"] == max(0, d["slot"] - 168)
    page.wait_for_selector("#energy canvas")
    assert "past_h=168" in page.url
    assert page.locator("#energy").get_attribute("role") == "img"
    assert "kWh" in page.locator("#energy + .chart-summary").inner_text()


def test_the_invoice_shows_a_job_once_with_its_run_count(dash, page):
    acme = api(dash, "acme")
    jid = acme.post("/v1/jobs", json=job_body(name="flaky", origin="beijing", command="exit 3",
                                              work_h=0.001)).json()["id"]
    wait_for(lambda: acme.get(f"/v1/jobs/{jid}").json()["state"] in ("FAILED", "SUCCEEDED"), 90)
    month = _month(dash)
    lines = [ln for ln in acme.get("/v1/invoices", params={"month": month}).json()[0]["lines"] if ln["job_id"] == jid]
    login(page, dash, "acme", "#/tenant")
    page.wait_for_selector('.invoice[data-tenant="acme"] table.lines tbody tr[data-job]')
    rows = page.locator(f'.invoice table.lines tbody tr[data-job="{jid}"]')
    assert len(lines) == 3                       # each try is billed: three lines in the API's invoice
    assert rows.count() == 1
    assert rows.get_attribute("data-runs") == "3"
    assert rows.locator("td:nth-child(3)").inner_text() == "3"


def test_the_built_assets_have_gzip_copies():
    """The build writes NAME.gz beside each text asset (web/scripts/compress.mjs), byte for byte the
    same once decompressed, for the server to send with Content-Encoding: gzip."""
    import gzip
    static = ROOT / "src" / "suanli" / "service" / "static"
    assets = [p for p in (static / "assets").iterdir() if p.suffix in (".js", ".css") and p.stat().st_size > 1024]
    assert assets
    for p in assets:
        gz = p.with_name(p.name + ".gz")
        assert gz.exists(), gz
        assert gzip.decompress(gz.read_bytes()) == p.read_bytes()
    total = sum(p.stat().st_size for p in assets)
    assert sum(p.with_name(p.name + ".gz").stat().st_size for p in assets) < total / 2


# ----------------------------------------------------------------------------- simulation reports
def _open_offline(browser, path: Path) -> tuple[object, list[str], list[str]]:
    """Open an HTML file from disk with every non-file request refused; (page, requests tried,
    console errors)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    tried: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            tried.append(route.request.url)
            route.abort()
    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_selector(".plotly-graph-div .main-svg", timeout=TIMEOUT_MS)
    return page, tried, errors


def test_the_simulation_report_opens_from_a_file_with_no_server_and_no_network(browser, tmp_path):
    page_file = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "suanli", "sim", str(ROOT / "tests" / "data" / "tiny-outage.yaml"),
                        "--out", str(tmp_path / "run"), "-q", "--report", str(page_file)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page, tried, errors = _open_offline(browser, page_file)
    assert tried == [] and errors == [], (tried, errors)
    assert page.locator(".plotly-graph-div").count() >= 4          # network, utilisation, sites, objective
    page.close()


def test_a_bench_comparison_report_shows_policies_side_by_side_offline(browser, tmp_path):
    from suanli.model.load import load_scenario
    from suanli.sim.report import render_comparison
    from suanli.sim.run import run
    scn = load_scenario(str(ROOT / "tests" / "data" / "tiny-outage.yaml"))
    runs = {p: (lambda r: (r.result.segments, r.accounts))(run(scn, p)) for p in ("fifo", "suanli")}
    page_file = tmp_path / "compare.html"
    page_file.write_text(render_comparison(scn, runs))
    page, tried, errors = _open_offline(browser, page_file)
    assert tried == [] and errors == [], (tried, errors)
    header = page.locator("table tr").first.inner_text().split()
    assert header == ["fifo", "suanli"]
    row = page.locator("table tr", has_text="objective, CNY").inner_text().split("\t")
    assert [float(x.replace(",", "")) for x in row[1:]] == [round(runs[p][1].metrics["objective_cny"]) for p in runs]
    page.close()


# ----------------------------------------------------------------------------- meters: measured vs forecast vs model
METERED_SITE = "hami-1"
MEASURED_KW = {"renewable_kw": 11.0, "grid_kw": 13.0}        # hami-1's model is 32 kW of wind: it varies


@pytest.fixture(scope="module")
def metered(tmp_path_factory) -> Iterator[Service]:
    """A service first served 30 h ago (its epoch; readings may not predate it) where hami-1's agent
    ran a job and then posted 30 h of readings through `POST /v1/agent/hami-1/meter` (11 kW of
    renewables, 13 kW from the grid, whatever its wind model says), so the job's invoice line is
    re-priced from the meters; then served again on the same database, whose first forecast issue
    reads those readings (the controller issues once an hour). No other site has readings."""
    from datetime import UTC, datetime, timedelta

    from suanli.service.db import open_db
    from suanli.service.models import Meta

    d = tmp_path_factory.mktemp("metered")
    url = f"sqlite:///{d / 'suanli.db'}"
    epoch = datetime.now(UTC) - timedelta(hours=30, minutes=17)     # not on the hour: slots straddle hours
    sessions = open_db(url)
    with sessions.begin() as s:
        s.merge(Meta(key="epoch", value=epoch.isoformat()))
    sessions.kw["bind"].dispose()
    app = build(NETWORK, url, policy="cheapest", tick_s=0.2, heartbeat_timeout_s=3.0)
    with ThreadServer(app) as base:
        s1 = Service(base, app, "sqlite")
        tokens = {"acme": s1.tenant("acme"), "admin": s1.admin_token()}
        try:
            s1.start_agent(METERED_SITE, d)
            admin, acme = s1.client(tokens["admin"]), s1.client(tokens["acme"])
            wait_for(lambda: any(x["up"] for x in admin.get("/v1/sites").json() if x["id"] == METERED_SITE), 60)
            jid = acme.post("/v1/jobs", json=job_body(name="metered-run", origin="hami", work_h=0.001)).json()["id"]
            job = wait_for(lambda: (j := acme.get(f"/v1/jobs/{jid}").json())["state"] == "SUCCEEDED" and j, 90)
            assert job["site"] == METERED_SITE
        finally:
            for p in s1.agents:
                p.terminate()
                p.wait(timeout=15)
        first, now = epoch + timedelta(minutes=20), datetime.now(UTC)
        at = [first + timedelta(minutes=10 * k) for k in range(int((now - first) / timedelta(minutes=10)) + 1)]
        at = [t for t in at if t < now] + [now]          # the last at the end: the run's last hold is final
        body = {"readings": [{"at": t.isoformat(), "it_kw": 20.0, "facility_kw": 24.0, "battery_soc_kwh": None,
                              **MEASURED_KW} for t in at]}
        r = s1.client(s1.site_token(METERED_SITE)).post(f"/v1/agent/{METERED_SITE}/meter", json=body)
        assert r.status_code == 202, r.text
        month = (epoch + timedelta(hours=app.state.controller.now_h())).strftime("%Y-%m")
        wait_for(lambda: [ln["energy_basis"] for ln in acme.get("/v1/invoices", params={"month": month}).json()[0]
                          ["lines"] if ln["job_id"] == jid] == ["metered"], 90,
                 dump=lambda: acme.get("/v1/invoices", params={"month": month}).json())
    app = build(NETWORK, url, policy="cheapest", tick_s=0.2, heartbeat_timeout_s=3.0)
    with ThreadServer(app) as base:
        s2 = Service(base, app, "sqlite")
        s2.tokens = tokens
        s2.metered_job = jid
        wait_for(lambda: app.state.controller.live.issue_h is not None, 60)
        yield s2


def _meters_table(page) -> dict[str, dict[str, float | None]]:
    """The site view's meters table (the charts' text alternative): UTC hour -> series -> kW."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#meters-table tbody tr')].map(
        (tr) => [tr.dataset.at, Object.fromEntries([...tr.querySelectorAll('td[data-k]')].map(
            (td) => [td.dataset.k, td.dataset.v === '' ? null : Number(td.dataset.v)]))]))""")


def _slot_weighted(series: dict, hour, epoch_iso: str) -> float | None:
    """The series endpoint's per-slot `renewable_kw` as the UTC hour's mean (slots start at the epoch)."""
    from datetime import datetime
    a = (hour - datetime.fromisoformat(epoch_iso)).total_seconds() / 3600.0
    k = int(a // 1)
    w = k + 1 - a
    by_slot = dict(zip(series["hours"], series["renewable_kw"], strict=True))
    if k not in by_slot or k + 1 not in by_slot:
        return None
    return w * by_slot[k] + (1 - w) * by_slot[k + 1]


def test_the_site_view_draws_measured_against_forecast_against_the_model(metered, browser):
    admin = api(metered, "admin")
    ctx, page = _context(browser)
    login(page, metered, "admin", f"#/sites/{METERED_SITE}")
    page.wait_for_selector("#meters-renewables canvas")
    page.wait_for_selector("#meters-grid canvas")
    assert page.locator("#meters").get_attribute("data-readings") == "yes"
    from datetime import datetime, timedelta
    table = {datetime.fromisoformat(h): v for h, v in _meters_table(page).items()}
    me = admin.get("/v1/dashboard/me").json()
    series = admin.get(f"/v1/dashboard/sites/{METERED_SITE}/series").json()
    hours = sorted(table)
    assert len(hours) == 24 + 48 and hours == [hours[0] + timedelta(hours=k) for k in range(72)]
    got = admin.get(f"/v1/sites/{METERED_SITE}/energy", params={
        "from": hours[0].isoformat(), "to": (hours[-1] + timedelta(hours=1)).isoformat()})
    assert got.status_code == 200, got.text
    rows = {datetime.fromisoformat(r["at"]): r for r in got.json()}
    # measured: every past hour the readings covered whole is 11 kW of renewables and 13 kW of grid
    full = [h for h in hours if rows.get(h) and rows[h]["measured"] and rows[h]["measured"]["covered_s"] == 3600]
    assert len(full) >= 20
    for h in full:
        assert table[h]["measured"] == pytest.approx(MEASURED_KW["renewable_kw"])
        assert table[h]["grid_measured"] == pytest.approx(MEASURED_KW["grid_kw"])
    # forecast: the energy endpoint's forecast rows (what the scheduler plans with), hours ahead only
    ahead = [h for h in hours if rows.get(h) and rows[h]["forecast"]]
    assert len(ahead) >= 47
    for h in hours:
        want = rows[h]["forecast"]["renewable_kw"] if rows.get(h) and rows[h]["forecast"] else None
        assert table[h]["forecast"] == (pytest.approx(want) if want is not None else None), h
    assert metered.app.state.controller.live.current.get(METERED_SITE) is not None    # issued from the readings
    # the model: the network file's, as the site view's energy chart has it per slot
    checked = 0
    for h in hours:
        want = _slot_weighted(series, h, me["epoch"])
        if want is not None:
            assert table[h]["model"] == pytest.approx(want, abs=1e-6), h
            checked += 1
    assert checked >= 40
    # the three differ: the meters read 11 kW where the model's wind does not; the forecast starts from them
    modelled = [h for h in hours if table[h]["model"] is not None]
    assert any(abs(table[h]["model"] - MEASURED_KW["renewable_kw"]) > 1.0 for h in full if h in modelled)
    assert any(abs(table[h]["forecast"] - table[h]["model"]) > 0.1 for h in ahead if h in modelled)
    summary = page.locator("#meters-renewables + .chart-summary").inner_text()
    assert "measured 11.00 kW on average" in summary, summary
    assert page.locator("#meters-renewables").get_attribute("role") == "img"
    assert "only the hours ahead are forecast" in page.locator("#meters-note").inner_text()
    page.wait_for_timeout(300)
    shot(page, "dashboard-site-meters.png")
    # no readings at beijing-1: said in words, no empty chart
    page.goto(f"{metered.url}/#/sites/beijing-1")
    page.wait_for_selector('#meters[data-readings="no"]')
    assert page.locator("#meters-note").inner_text() == "No meter readings: the model is used."
    assert page.locator("#meters-charts").is_hidden()
    _finish(ctx, page)


def test_a_tenant_sees_no_meters_and_asks_for_none(metered, browser):
    ctx, page = _context(browser)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/meters" in r.url else None)
    login(page, metered, "acme", f"#/sites/{METERED_SITE}")
    page.wait_for_selector("#energy canvas")
    page.wait_for_function("() => document.getElementById('status').textContent.length > 0")
    assert page.locator("#meters").count() == 0 and asked == []
    assert page.locator("#view-error").is_hidden()
    assert api(metered, "acme").get(f"/v1/dashboard/sites/{METERED_SITE}/meters").status_code == 403
    _finish(ctx, page)


@pytest.mark.parametrize("lang", ["en-US", "zh-CN"])
def test_the_meters_pass_axe_and_fit_a_phone(metered, browser, lang):
    zh = lang == "zh-CN"
    bad = {}
    for name, viewport in (("desktop", None), ("phone", PHONE)):
        ctx, page = _context(browser, lang, viewport)
        login(page, metered, "admin", f"#/sites/{METERED_SITE}")
        open_view(page, metered, f"#/sites/{METERED_SITE}", "#meters-renewables canvas")
        if zh:
            assert page.locator("#meters h2").inner_text() == "电表：实测、预测与模型对比"
            assert "实测" in page.locator("#meters-renewables + .chart-summary").inner_text()
            assert re.search(r"\d{2}-\d{2} \d{2}:00", page.locator("#meters-table tbody th").first.text_content())
        sw, iw = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        if sw > iw:
            bad[f"{name} width"] = sw - iw
        page.click("#meters-data summary")          # the table open too
        if found := axe(page, f"{lang} {name} site meters"):
            bad[name] = found
        page.click("#meters-data summary")
        if zh:
            page.wait_for_timeout(300)
            shot(page, "dashboard-zh-site-meters.png" if name == "desktop" else "dashboard-phone-site-meters.png")
        open_view(page, metered, "#/sites/beijing-1", '#meters[data-readings="no"]')
        if zh:
            assert page.locator("#meters-note").inner_text() == "没有电表读数：使用模型。"
        if found := axe(page, f"{lang} {name} site without readings"):
            bad[f"{name} no readings"] = found
        _finish(ctx, page)
    assert not bad, bad


def test_the_invoice_says_metered_or_modelled_and_shows_true_ups_apart(metered, browser):
    acme = api(metered, "acme")
    month = _month(metered)
    real = acme.get("/v1/dashboard/tenants", params={"month": month}).json()
    jid = metered.metered_job
    lines = real["tenants"][0]["invoice"]["lines"]
    assert [ln["energy_basis"] for ln in lines if ln["job_id"] == jid] == ["metered"]
    ctx, page = _context(browser)
    login(page, metered, "acme", "#/tenant")
    row = page.locator(f'.invoice table.lines tbody tr[data-job="{jid}"]')
    row.wait_for()
    assert row.locator("td.basis-cell").inner_text() == "metered"
    assert row.get_attribute("data-kind") == "run"
    shot(page, "dashboard-invoice-metered.png")
    # a true-up (a run of a closed month re-priced from the meters) is a row of its own, marked; and a
    # job whose runs differ says how many of each (a synthetic page: no month closes during a test)
    run = next(ln for ln in lines if ln["job_id"] == jid)
    extra = [{**run, "kind": "true-up", "energy_kwh": -0.01, "gpu_h": 0.0, "total_cny": -0.002},
             {**run, "job_id": jid + 1000, "energy_basis": "modelled"},
             {**run, "job_id": jid + 1000, "energy_basis": "metered"}]
    fake = json.loads(json.dumps(real))
    fake["tenants"][0]["invoice"]["lines"] = lines + extra
    page.route("**/v1/dashboard/tenants*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(fake)))
    page.evaluate("localStorage.setItem('suanli.lang', 'zh')")
    page.reload()
    page.wait_for_selector('.invoice table.lines tbody tr[data-kind="true-up"]')
    rows = page.locator(f'.invoice table.lines tbody tr[data-job="{jid}"]')
    assert rows.count() == 2                                  # the run and its true-up apart
    up = page.locator(f'.invoice table.lines tbody tr[data-job="{jid}"][data-kind="true-up"]')
    assert "true-up" in up.get_attribute("class") and "电表补差" in up.inner_text()
    assert up.locator("td.basis-cell").inner_text() == "计量"
    mixed = page.locator(f'.invoice table.lines tbody tr[data-job="{jid + 1000}"] td.basis-cell')
    assert mixed.get_attribute("data-basis") == "mixed" and mixed.inner_text() == "计量 ×1 模型 ×1"
    _finish(ctx, page)
