"""A plan in pieces on the dashboard (docs/DASHBOARD.md, "Plans in pieces"), in a real browser
against a real server and agent: the job view lists each piece in Beijing time with which is done,
running and next, and says in a line why; a job suspended at its piece's end reads "suspended
(waits to resume)" (已暂停（等待恢复）) in its view and is marked in the jobs list; in English and
Chinese, at 390 px, axe clean.

The network and job are tests/service/test_suspend_resume.py's: east-1 alone, hour 0 cheap, hour 1
dear, hour 2 in between; a checkpointing job submitted 65 s before hour 1 is planned as the last
minute of hour 0 and then hour 2. Hours pass in a moment: the controller's clock is moved on
(its epoch moved back) to hour 1, where the run is suspended, and to hour 2, where it resumes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))   # svc.py, as tests/service imports it

from svc import Service, job_body, pieces_network, set_clock, stop_all, wait_for  # noqa: E402
from test_dashboard import PHONE, _context, _finish, axe, browser, login, shot  # noqa: E402, F401 (browser: a fixture)

from suanli.service.server import ThreadServer, build  # noqa: E402

WORK_H = 140 * 0.5 / 3600 * 2.0        # 70 s on an H100 (speed 2)
HEAD_S = 65.0                          # submitted this long before hour 1
WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> Iterator[Service]:
    d = tmp_path_factory.mktemp("pieces")
    app = build(pieces_network(d), f"sqlite:///{d / 'suanli.db'}", policy="suanli", tick_s=0.2,
                heartbeat_timeout_s=10.0, checkpoint_store=d / "store")
    with ThreadServer(app) as url:
        s = Service(url, app, "sqlite")
        s.tokens = {"acme": s.tenant("acme")}
        try:
            s.start_agent("east-1", d / "work")
            c = s.client(s.tokens["acme"])
            wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json()), 30)
            set_clock(app, 1.0 - HEAD_S / 3600)
            yield s
        finally:
            stop_all(s.agents, 10)


def beijing(c, h: float) -> str:
    """Controller hour `h` as the dashboard shows it: Beijing time, from the service's epoch now."""
    epoch = datetime.fromisoformat(c.get("/v1/dashboard/me").json()["epoch"])
    return (epoch + timedelta(hours=h)).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


def plan_rows(page) -> list[tuple[str, str, str, str]]:
    """(status key, start, end, status text) of each row of the job view's plan, in order."""
    rows = page.locator("#pieces tbody tr")
    return [(r.get_attribute("data-piece"), *[td.inner_text() for td in r.locator("td").all()[1:]])
            for r in rows.all()]


def open_job(page, url: str, jid: int, want: str) -> None:
    """The job view, once its plan shows the statuses `want` (comma-separated, in order); loaded
    anew, so the page reads the service epoch the test's clock moves have set."""
    page.goto(f"{url}/#/jobs/{jid}")
    page.reload()
    page.wait_for_function("""(want) => [...document.querySelectorAll('#pieces tbody tr')]
        .map((r) => r.dataset.piece).join(',') === want""", arg=want)


def test_a_plan_in_pieces_and_a_suspended_job_in_both_languages_on_a_phone(pieces, browser):  # noqa: F811
    app = pieces.app
    c = pieces.client(pieces.tokens["acme"])
    body = job_body(name="pieces", command="sleep 600", work_h=WORK_H, gpu_types=["h100"],
                    deadline_h=3.0 - app.state.controller.now_h(), max_wait_h=2.0)
    body["checkpoint_h"] = 1 / 60
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    first = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING" and j, 30,
                     dump=lambda: c.get(f"/v1/jobs/{jid}").json())
    [(a, b)] = first["pieces"]
    bad: dict[str, list] = {}

    # running its first piece: piece 1 running, piece 2 next, each in Beijing time; in English
    ctx, page = _context(browser, "en-US", PHONE)
    login(page, pieces, "acme", f"#/jobs/{jid}")
    open_job(page, pieces.url, jid, "running,next")
    assert plan_rows(page) == [("running", beijing(c, first["start_h"]), beijing(c, first["end_h"]), "running"),
                               ("next", beijing(c, a), beijing(c, b), "next")]
    assert page.locator("#plan-line").inner_text() == ("Runs in 2 pieces to use cheaper, cleaner hours; stops at "
                                                       "each piece's end keeping its checkpoint.")
    assert page.locator("#job h2 .state").inner_text() == "RUNNING" and page.locator("#plan-suspended").count() == 0
    if found := axe(page, "en phone job running its first piece"):
        bad["running"] = found

    # hour 1: stopped at its piece's end, it waits (PLACED at hour 2) to resume: suspended
    set_clock(app, 1.0 + 1 / 3600)
    waiting = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["suspended"] and j["state"] == "PLACED" and j,
                       30, dump=lambda: c.get(f"/v1/jobs/{jid}").json())
    [(ran_a, ran_b)] = waiting["pieces_done"]
    open_job(page, pieces.url, jid, "done,next")
    assert plan_rows(page) == [("done", beijing(c, ran_a), beijing(c, ran_b), "done"),
                               ("next", beijing(c, waiting["start_h"]), beijing(c, waiting["end_h"]), "next")]
    badge = page.locator("#job h2 .state")
    assert badge.inner_text() == "suspended (waits to resume)" and badge.get_attribute("data-state") == "PLACED"
    assert page.locator("#plan-suspended").inner_text().startswith("Suspended at the end of its piece")
    sw, iw = page.evaluate(WIDTH)
    assert sw <= iw, ("job", sw, iw)
    if found := axe(page, "en phone job suspended"):
        bad["suspended"] = found
    page.goto(f"{pieces.url}/#/jobs")
    row = page.locator(f'#jobs tbody tr[data-job="{jid}"]')
    row.wait_for()
    assert row.get_attribute("data-suspended") == "yes"
    assert row.locator(".state").inner_text() == "suspended (waits to resume)"
    if found := axe(page, "en phone jobs with a suspended job"):
        bad["jobs"] = found
    _finish(ctx, page)

    # the same in Chinese
    ctx, page = _context(browser, "zh-CN", PHONE)
    login(page, pieces, "acme", f"#/jobs/{jid}")
    open_job(page, pieces.url, jid, "done,next")
    assert page.locator("#job h2 .state").inner_text() == "已暂停（等待恢复）"
    assert page.locator("#plan h3").inner_text() == "分段运行计划"
    assert page.locator("#plan-line").inner_text() == ("分 2 段运行，以利用更便宜、更清洁的时段；"
                                                       "每段结束时停止并保留检查点。")
    assert [r[3] for r in plan_rows(page)] == ["已完成", "下一段"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", plan_rows(page)[1][1])
    # the lifecycle's reasons of the stop and the wait read in Chinese, the numbers kept
    reasons = page.locator("#lifecycle tbody tr td:nth-child(5)").all_inner_texts()
    stop = next(r for r in reasons if r.startswith("为电价与碳排放暂停"))
    assert "east-1/h100" in stop and "保留" in stop, stop
    assert any(r.startswith("已暂停：等待从检查点恢复") for r in reasons), reasons
    assert not any(r.startswith("suspended") for r in reasons), reasons
    sw, iw = page.evaluate(WIDTH)
    assert sw <= iw, ("zh job", sw, iw)
    if found := axe(page, "zh-CN phone job suspended"):
        bad["zh suspended"] = found
    page.wait_for_timeout(300)
    shot(page, "dashboard-phone-job-pieces.png")
    page.goto(f"{pieces.url}/#/jobs")
    row = page.locator(f'#jobs tbody tr[data-job="{jid}"]')
    row.wait_for()
    assert row.locator(".state").inner_text() == "已暂停（等待恢复）"
    if found := axe(page, "zh-CN phone jobs with a suspended job"):
        bad["zh jobs"] = found

    # hour 2: it resumes; piece 1 done, piece 2 running, and it no longer reads as suspended
    set_clock(app, 2.0 + 1 / 3600)
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 30,
             dump=lambda: c.get(f"/v1/jobs/{jid}").json())
    open_job(page, pieces.url, jid, "done,running")
    assert [r[3] for r in plan_rows(page)] == ["已完成", "运行中"]
    assert page.locator("#job h2 .state").inner_text() == "运行中" and page.locator("#plan-suspended").count() == 0
    _finish(ctx, page)
    assert c.delete(f"/v1/jobs/{jid}").status_code in (200, 202)
    assert not bad, bad


def test_a_job_never_planned_in_pieces_shows_no_plan(pieces, browser):  # noqa: F811
    c = pieces.client(pieces.tokens["acme"])
    r = c.post("/v1/jobs", json=job_body(name="whole", command="true", work_h=0.0005, gpu_types=["h100"]))
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "SUCCEEDED" and j, 30,
                    dump=lambda: c.get(f"/v1/jobs/{jid}").json())
    assert done["pieces_done"] == [] and not done["suspended"]
    ctx, page = _context(browser)
    login(page, pieces, "acme", f"#/jobs/{jid}")
    page.wait_for_selector("#job h2 .state")
    page.wait_for_selector("#explanation")
    assert page.locator("#plan").count() == 0
    assert page.locator("#job h2 .state").inner_text() == "SUCCEEDED"
    _finish(ctx, page)
