"""bench/results.json names each scenario as the docs do: relative to the repository when it is in it."""

from suanli.bench import ScenarioResult, results_json


def test_a_scenario_below_the_working_directory_is_named_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    inside = str(tmp_path / "src" / "east-west.yaml")
    got = results_json([ScenarioResult("east-west-demo", inside, 300, 7),
                        ScenarioResult("elsewhere", "/nonexistent-dir/x.yaml", 1, 1)])
    assert [r["path"] for r in got] == ["src/east-west.yaml", "/nonexistent-dir/x.yaml"]
    assert got[0]["jobs"] == 300 and got[0]["cells"] == {}


def test_older_scenarios_keep_the_objectives_docs_benchmarks_shows():
    # Scenarios without the uncertainty fields (no `forecast:`, no `max_wait_h`, no
    # `actual_work_h`) have no hourly re-planning event (`replans_hourly`): their schedules, and
    # the numbers docs/BENCHMARKS.md shows for them, stay exactly as they were.
    import re
    from pathlib import Path

    from suanli.model.load import load_scenario
    from suanli.sim.engine import replans_hourly
    from suanli.sim.run import run

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "BENCHMARKS.md").read_text()
    for name in ("outage-backup", "gridcap-battery", "west-does-not-pay"):
        section = doc.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        shown = re.search(r"^\| suanli \| ([\d,]+) \|", section, re.M).group(1)
        scn = load_scenario(str(root / "bench" / "scenarios" / f"{name}.yaml"))
        assert not replans_hourly(scn)
        r = run(scn, "suanli")
        assert r.violations == []
        assert f"{r.accounts.metrics['objective_cny']:,.0f}" == shown, name
