"""The command line: outputs, summaries, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.accounting import METRIC_KEYS

DATA = Path(__file__).parent / "data"


def suanli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suanli", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ | {"COLUMNS": "120"})


def test_sim_writes_the_three_outputs(tmp_path):
    out = tmp_path / "run"
    r = suanli("sim", str(DATA / "tiny-outage.yaml"), "--policy", "fifo", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "objective" in r.stdout and "b-1" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    assert metrics["policy"] == "fifo" and metrics["segments_cut_by_outages"] == 1
    rows = list(csv.DictReader((out / "schedule.csv").open()))
    assert [r["site"] for r in rows] == ["a-1", "b-1"]
    series = list(csv.DictReader((out / "series.csv").open()))
    assert {r["site"] for r in series} == {"a-1", "b-1"}
    last_end = max(float(r["end_h"]) for r in rows)
    assert len(series) == 2 * max(12, math.ceil(last_end))     # T slots at each site (horizon_h 12)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_bad_scenario_is_one_line_exit_2_and_leaves_old_outputs_alone(tmp_path):
    out = tmp_path / "run"
    assert suanli("sim", str(DATA / "tiny.yaml"), "--out", str(out), "-q").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "tiny.yaml").read_text().replace("work_h: 2", "work_h: -2", 1))
    r = suanli("sim", str(bad), "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "bad.yaml: jobs[0].work_h" in lines[0] and "-2" in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("args, needle", [
    (["sim", "missing.yaml"], "missing.yaml: cannot read"),
    (["sim", str(DATA / "tiny.yaml"), "--policy", "nope"], "--policy: unknown policy 'nope'"),
    (["validate", str(DATA / "tiny.yaml").replace("tiny", "tinyy")], "cannot read"),
])
def test_user_mistakes_exit_2_with_one_line(args, needle, tmp_path):
    r = suanli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_validate_prints_a_summary_line():
    r = suanli("validate", str(DATA / "tiny.yaml"))
    assert r.returncode == 0
    assert r.stdout.startswith("ok: ") and "2 sites" in r.stdout and "3 jobs" in r.stdout


def test_demo_runs_the_packaged_east_west_network(tmp_path):
    r = suanli("demo", "--out", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    for word in ("objective", "renewable", "carbon", "jobs finished", "qingyang-1", "utilisation"):
        assert word in r.stdout
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["jobs_total"] >= 200 and metrics["jobs_finished"] > 0


def test_energy_prints_a_sites_hourly_supply_and_plots_it(tmp_path):
    png = tmp_path / "qy.png"
    r = suanli("energy", "qy-1", "--scenario", str(DATA / "tiny.yaml"), "--days", "1", "--png", str(png))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 24                                  # one row per hour
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = suanli("energy", "nowhere", "--scenario", str(DATA / "tiny.yaml"))
    assert bad.returncode == 2 and "unknown site 'nowhere'" in bad.stderr


def test_sim_report_is_one_self_contained_html_file(tmp_path):
    page = tmp_path / "report.html"
    r = suanli("sim", str(DATA / "tiny-outage.yaml"), "--out", str(tmp_path / "run"), "-q", "--report", str(page))
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "plotly" in text.lower()
    assert "<script src=" not in text                    # nothing to fetch: plotly.js is embedded
    assert "a-1: load (kWh per hour)" in text and "b-1: load (kWh per hour)" in text


def test_bench_links_each_scenario_s_side_by_side_report(tmp_path):
    docs = tmp_path / "docs"
    r = suanli("bench", "-s", str(DATA / "tiny-outage.yaml"), "-p", "fifo", "-p", "suanli", "--no-bound",
               "--doc", str(docs / "B.md"), "--chart", str(docs / "b.png"), "--results", str(tmp_path / "r.json"),
               "--reports", str(docs / "reports"))
    assert r.returncode == 0, r.stderr
    assert "[tiny-outage.html](reports/tiny-outage.html)" in (docs / "B.md").read_text()
    page = (docs / "reports" / "tiny-outage.html").read_text()
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in page and "policies side by side" in page
    assert (docs / "reports" / "plotly.min.js").stat().st_size > 1_000_000     # Plotly itself, beside the pages


def test_bench_writes_the_side_by_side_report_in_chinese_too(tmp_path):
    """`--lang both`: each scenario's page in English and its zh-CN twin, in the sim report's words
    (Chinese metric and site names, ¥, Beijing times); a bad --lang is refused before any run."""
    text = (DATA / "tiny.yaml").read_text().replace("qy-1", "qingyang-1")
    scn = tmp_path / "tiny.yaml"
    scn.write_text(text)
    docs = tmp_path / "docs"
    args = ("bench", "-s", str(scn), "-p", "fifo", "-p", "suanli", "--no-bound", "--doc", str(docs / "B.md"),
            "--chart", str(docs / "b.png"), "--results", str(tmp_path / "r.json"), "--reports", str(docs / "reports"))
    r = suanli(*args, "--lang", "both")
    assert r.returncode == 0, r.stderr
    assert ("Policies side by side: [tiny.html](reports/tiny.html). 中文: [tiny.zh-CN.html](reports/tiny.zh-CN.html)."
            in (docs / "B.md").read_text(encoding="utf-8"))
    en = (docs / "reports" / "tiny.html").read_text(encoding="utf-8")
    zh = (docs / "reports" / "tiny.zh-CN.html").read_text(encoding="utf-8")
    assert "<html lang='en'>" in en and "policies side by side" in en and "<td>objective, CNY</td>" in en
    assert "庆阳" not in en and "¥" not in en and "Lower bound – (not solved)" in en       # --no-bound
    def shown(text: str) -> bool:            # in the page's HTML, or in a chart's JSON (\uXXXX escapes)
        return text in zh or json.dumps(text)[1:-1] in zh
    assert "<html lang='zh-CN'>" in zh and "<h1>suanli：tiny，各策略对比</h1>" in zh and "北京时间" in zh
    assert re.search(r"<td>目标函数</td><td>(<b>)?¥[\d,]+(</b>)?</td><td>(<b>)?¥[\d,]+", zh)
    assert "<td>GPU 利用率</td>" in zh and shown("庆阳-1") and shown("目标函数的组成（¥）") and shown("GPU 租金")
    assert shown("2026-06-01 00:00") and "objective, CNY" not in zh and "下界 –" in zh
    bad = suanli(*args, "--lang", "fr", "--doc", str(tmp_path / "bad" / "B.md"))
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: --lang: 'fr' is not en, zh-CN or both")
    assert not (tmp_path / "bad").exists()


def test_validate_warns_of_jobs_no_site_can_ever_host(tmp_path):
    text = (DATA / "tiny.yaml").read_text()
    text = text.replace("{id: j1, tenant: a, submit_h: 0, gpus: 2,", "{id: j1, tenant: a, submit_h: 0, gpus: 9,", 1)
    text = text.replace("gpu_types: [a800], origin: shanghai,",
                        "gpu_types: [a800], origin: shanghai, max_rtt_ms: 5,", 1)
    bad = tmp_path / "homeless.yaml"
    bad.write_text(text)
    r = suanli("validate", str(bad))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: ")
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("warning: job j1: no site can ever host it: no reachable pool has 9 GPUs")
    assert lines[1].startswith("warning: job j2: no site can ever host it: no reachable pool has 4 GPUs "
                               "of an allowed type (a800")
    ok = suanli("validate", str(DATA / "tiny.yaml"))
    assert ok.returncode == 0 and "warning" not in ok.stderr


def test_sim_lists_every_file_it_wrote(tmp_path):
    page = tmp_path / "report.html"
    r = suanli("sim", str(DATA / "tiny.yaml"), "--out", str(tmp_path / "run"), "--report", str(page))
    assert r.returncode == 0, r.stderr
    wrote = " ".join(ln for ln in r.stdout.splitlines() if ln.startswith("wrote") or "/run/" in ln)
    for name in ("schedule.csv", "metrics.json", "series.csv", "explain.jsonl", "report.html"):
        assert name in wrote, r.stdout
        assert (tmp_path / "run" / name).exists() or name == "report.html"
    assert page.exists()


def test_help_shows_no_value_for_flags_and_whole_help_texts():
    r = subprocess.run([sys.executable, "-m", "suanli", "serve", "--help"], capture_output=True, text=True,
                       env=os.environ | {"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "<bool>" not in r.stdout
    assert "<int>" in r.stdout                      # options that take a value still say what
    assert "twice (default: 30)" in r.stdout        # not eaten as Rich markup
    r = subprocess.run([sys.executable, "-m", "suanli", "jobs", "--help"], capture_output=True, text=True,
                       env=os.environ | {"COLUMNS": "200"})
    assert r.returncode == 0 and "--json" in r.stdout and "<bool>" not in r.stdout


def test_sim_writes_the_report_in_chinese_too(tmp_path):
    """`--lang both`: the English report and its zh-CN twin, with the dashboard's Chinese place names
    (its site qingyang-1 -> 庆阳-1), ¥ and 24-hour Beijing times."""
    text = (DATA / "tiny.yaml").read_text().replace("qy-1", "qingyang-1")
    assert "start: '2026-06-01T00:00:00+08:00'" in text
    text = text.replace("start: '2026-06-01T00:00:00+08:00'", "start: '2026-05-31T16:00:00+00:00'")   # the same, in UTC
    scn = tmp_path / "tiny.yaml"
    scn.write_text(text)
    r = suanli("sim", str(scn), "--policy", "fifo", "--out", str(tmp_path / "o"), "--report",
               str(tmp_path / "r.html"), "--lang", "both")
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "r.zh-CN.html") in r.stdout.replace("\n", "")
    en = (tmp_path / "r.html").read_text(encoding="utf-8")
    zh = (tmp_path / "r.zh-CN.html").read_text(encoding="utf-8")
    assert "<html lang='en'>" in en and "庆阳" not in en and "total_cost_cny" in en
    assert "<html lang='zh-CN'>" in zh and "指标" in zh and "总费用" in zh
    def shown(text: str) -> bool:            # in the page's HTML, or in a chart's JSON (\uXXXX escapes)
        return text in zh or json.dumps(text)[1:-1] in zh
    assert shown("庆阳-1") and shown("sh-1")           # a site of a city in the table, and one not in it
    assert re.search(r"<td>总费用</td><td>¥[\d,]+\.\d\d</td>", zh)
    assert "2026-06-01 00:00" in zh and "2026-06-01 03:00" in zh   # 16:00 UTC is midnight in Beijing
    assert "北京时间" in zh and shown("储能电池")
    bad = suanli("sim", str(scn), "--report", str(tmp_path / "x.html"), "--lang", "fr")
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: --lang: 'fr' is not en, zh-CN or both")
    assert not (tmp_path / "x.html").exists()
