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
