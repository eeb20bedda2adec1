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
    assert "CNY" in page.locator(".panels").inner_text()
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
    assert "kg CO₂e avoided" in text and "CNY" in text
    ids = page.locator('.invoice[data-tenant="acme"] table.lines tbody td:first-child').all_inner_texts()
    assert sorted(map(int, ids)) == sorted(ln["job_id"] for ln in inv["lines"])
    assert page.locator(".invoice").count() == 1               # not bolt's
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
