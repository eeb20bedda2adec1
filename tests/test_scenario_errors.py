"""Bad scenarios are refused with one-line ScenarioErrors naming file, field path and value (MODEL.md §1)."""

from __future__ import annotations

import json

import pytest

from conftest import build, make_job, make_scenario, make_site
from suanli.errors import ScenarioError, UserError
from suanli.model.load import load_scenario, parse_scenario


def refused(raw=None, file="test.yaml", **overrides) -> str:
    """The message of the ScenarioError that parsing raises; checks it is one line naming the file."""
    with pytest.raises(ScenarioError) as info:
        build(raw, file=file, **overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(file)
    return message


def test_scenario_error_is_a_user_error():
    assert issubclass(ScenarioError, UserError)


# ----------------------------------------------------------------------------- field values
def test_job_gpus_zero_is_refused_naming_the_job_index_and_value():
    message = refused(jobs=[make_job("j1"), make_job("j2", gpus=0)])
    assert "test.yaml: jobs[1].gpus:" in message
    assert "(got 0)" in message


def test_negative_pool_count_is_refused():
    message = refused(sites=[make_site(gpus={"h100": {"count": -1}})])
    assert "sites[0].gpus.h100.count" in message and "(got -1)" in message


@pytest.mark.parametrize(("job", "path", "value"), [
    ({"work_h": 0}, "jobs[0].work_h", "0"),
    ({"data_gb": -1}, "jobs[0].data_gb", "-1"),
    ({"gpus": 1.5}, "jobs[0].gpus", "1.5"),
    ({"gpus": "two"}, "jobs[0].gpus", "'two'"),
], ids=["work_h-zero", "data_gb-negative", "gpus-fraction", "gpus-text"])
def test_out_of_range_or_mistyped_job_fields_are_refused(job, path, value):
    message = refused(jobs=[make_job(**job)])
    assert f": {path}:" in message and f"(got {value})" in message


def test_series_with_a_string_item_is_refused_naming_the_item():
    message = refused(sites=[make_site(grid={"cny_per_kwh": [0.3, "cheap"]})])
    assert "sites[0].grid.cny_per_kwh" in message
    assert "'cheap'" in message


def test_negative_renewable_series_item_is_refused():
    message = refused(sites=[make_site(renewables={"kw": [1, -2]})])
    assert "sites[0].renewables.kw" in message and "-2" in message


def test_misspelt_field_is_refused_as_unknown():
    message = refused(jobs=[make_job(deadlin_h=5)])
    assert "jobs[0].deadlin_h" in message and "unknown field" in message and "(got 5)" in message


def test_misspelt_top_level_field_is_refused_as_unknown():
    message = refused(make_scenario(horizon=4))
    assert "test.yaml: horizon:" in message and "unknown field" in message


def test_missing_required_field_is_refused():
    raw = make_scenario()
    del raw["jobs"][0]["origin"]
    message = refused(raw)
    assert "jobs[0].origin" in message and "missing" in message


# ----------------------------------------------------------------------------- references
def test_unknown_origin_city_is_refused():
    message = refused(jobs=[make_job(origin="mars")])
    assert "jobs[0].origin" in message and "unknown city" in message and "'mars'" in message


def test_unknown_site_city_is_refused():
    assert "sites[0].city" in refused(sites=[make_site(city="mars")])


def test_unknown_link_city_is_refused():
    message = refused(links=[{"a": "east", "b": "mars", "gbps": 1, "latency_ms": 1}])
    assert "links[0].b" in message and "'mars'" in message


def test_unknown_gpu_type_in_a_pool_is_refused():
    message = refused(sites=[make_site(gpus={"v100": {"count": 1}})])
    assert "sites[0].gpus.v100" in message and "unknown GPU type" in message and "'v100'" in message


def test_unknown_gpu_type_in_a_job_gpu_types_is_refused():
    message = refused(jobs=[make_job(gpu_types=["h100", "v100"])])
    assert "jobs[0].gpu_types" in message and "'v100'" in message


def test_unknown_gpu_type_in_a_job_class_is_refused():
    message = refused(job_classes={"llm": {"v100": 1.0}})
    assert "job_classes.llm.v100" in message


def test_unknown_job_class_is_refused():
    message = refused(jobs=[make_job(**{"class": "nope"})])
    assert "jobs[0].class" in message and "'nope'" in message


@pytest.mark.parametrize("deadline", [3.0, 2.0])
def test_deadline_not_after_submit_is_refused(deadline):
    message = refused(jobs=[make_job(submit_h=3, deadline_h=deadline)])
    assert "jobs[0].deadline_h" in message and f"(got {deadline})" in message


def test_duplicate_job_id_is_refused():
    message = refused(jobs=[make_job("j1"), make_job("j1")])
    assert "jobs[1].id" in message and "duplicate" in message and "'j1'" in message


def test_duplicate_site_id_is_refused():
    message = refused(sites=[make_site("w1"), make_site("w1")])
    assert "sites[1].id" in message and "duplicate" in message and "'w1'" in message


@pytest.mark.parametrize("backup", ["nowhere", "w1"], ids=["unknown", "itself"])
def test_bad_backup_site_is_refused(backup):
    message = refused(sites=[make_site(backup=backup), make_site("e1", "east")])
    assert "sites[0].backup" in message and f"'{backup}'" in message


def test_event_on_unknown_site_is_refused():
    message = refused(events=[{"type": "outage", "site": "nowhere", "start_h": 1, "end_h": 2}])
    assert "events[0].site" in message and "'nowhere'" in message


@pytest.mark.parametrize("end", [2.0, 1.0])
def test_event_ending_at_or_before_its_start_is_refused(end):
    message = refused(events=[{"type": "outage", "site": "w1", "start_h": 2, "end_h": end}])
    assert "events[0].end_h" in message and f"(got {end})" in message


def test_grid_cap_without_max_grid_kw_is_refused():
    message = refused(events=[{"type": "outage", "site": "w1", "start_h": 1, "end_h": 2},
                              {"type": "grid_cap", "site": "w1", "start_h": 1, "end_h": 2}])
    assert "events[1].max_grid_kw" in message


def test_renewable_model_spec_missing_a_field_is_refused_naming_it():
    message = refused(start="2026-06-01T00:00:00+08:00",
                      sites=[make_site(renewables={"kw": {"model": "solar", "capacity_kw": 100, "seed": 1}})])
    assert "sites[0].renewables.kw.cloud_cover: required field is missing" in message


# ----------------------------------------------------------------------------- files
def write_scenario_with_jobs_csv(tmp_path, csv_text: str):
    raw = make_scenario(jobs_file="jobs.csv")
    del raw["jobs"]
    (tmp_path / "s.json").write_text(json.dumps(raw))
    (tmp_path / "jobs.csv").write_text(csv_text)
    return str(tmp_path / "s.json")


CSV_HEADER = "id,submit_h,gpus,work_h,origin,gpu_types,deadline_h\n"


def test_jobs_csv_bad_cell_is_refused_naming_the_csv_file_and_line(tmp_path):
    path = write_scenario_with_jobs_csv(tmp_path, CSV_HEADER + "j1,0,2,4,west,,\nj2,0,2,abc,west,,\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert "jobs.csv:3: jobs[1].work_h" in message and "'abc'" in message


def test_jobs_csv_bad_reference_is_refused_naming_the_csv_file_and_line(tmp_path):
    path = write_scenario_with_jobs_csv(tmp_path, CSV_HEADER + "j1,0,2,4,west,,\nj2,0,2,4,mars,,\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert "jobs.csv:3: jobs[1].origin" in str(info.value) and "'mars'" in str(info.value)


def test_jobs_csv_gpu_types_cells_split_on_semicolons_and_empty_cells_take_defaults(tmp_path):
    path = write_scenario_with_jobs_csv(tmp_path, CSV_HEADER + "j1,0,2,4,west,h100;a800,6\nj2,1.5,1,2,east,,\n")
    scn = load_scenario(path)
    j1, j2 = scn.jobs
    assert j1.gpu_types == ["h100", "a800"] and j1.deadline_h == 6.0 and j1.gpus == 2
    assert j2.gpu_types is None and j2.deadline_h is None and j2.submit_h == 1.5
    assert scn.allowed_types(j2) == ["h100", "a800"]


def test_yaml_syntax_error_is_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nhorizon_h: 4\ncities: {a: {lat: 1, lon: 2}\nsites: []\n")   # unclosed '{'
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4:") and "invalid YAML" in message


def test_json_syntax_error_is_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "horizon_h": 4,\n}')
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(info.value).startswith(f"{path}:3:")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(tmp_path / "absent.yaml"))
    assert "absent.yaml" in str(info.value)


YAML_TEXT = """\
name: same
start: 2026-06-01T00:00:00+08:00
horizon_h: 24
gpu_types:
  h100: {power_kw: 0.7, speed: 2.0}
  a800: {power_kw: 0.4}
job_classes:
  llm: {h100: 2.6}
cities:
  east: {lat: 31.2, lon: 121.5}
  west: {lat: 35.7, lon: 107.6}
links:
  - {a: east, b: west, gbps: 40, latency_ms: 9, cny_per_gb: 0.02}
sites:
  - id: w1
    city: west
    pue: 1.2
    gpus:
      h100: {count: 8, cny_per_gpu_h: 16}
      a800: {count: 16, cny_per_gpu_h: 7}
    grid: {carbon_kg_per_kwh: 0.55, cny_per_kwh: [0.3, 0.6]}
    renewables: {kw: [0, 10, 20], cny_per_kwh: 0.15}
    battery: {capacity_kwh: 100, power_kw: 20, efficiency: 0.9, initial_soc: 0.5}
    backup: e1
  - id: e1
    city: east
    gpus:
      a800: {count: 4, cny_per_gpu_h: 9}
jobs:
  - {id: j1, submit_h: 0, gpus: 2, work_h: 3, gpu_types: [h100], class: llm, deadline_h: 12,
     origin: east, data_gb: 100, max_rtt_ms: 30, checkpoint_h: 1}
  - {id: j2, tenant: acme, submit_h: 1.5, gpus: 1, work_h: 2, origin: west}
events:
  - {type: outage, site: w1, start_h: 5, end_h: 6}
  - {type: grid_cap, site: w1, start_h: 7, end_h: 9, max_grid_kw: 3, notice_h: 4}
objective: {carbon_cny_per_kg: 0.1, late_cny_per_gpu_h: 50, unfinished_cny: 1000, dr_cny_per_kwh: 10}
"""

JSON_DOC = {
    "name": "same", "start": "2026-06-01T00:00:00+08:00", "horizon_h": 24,
    "gpu_types": {"h100": {"power_kw": 0.7, "speed": 2.0}, "a800": {"power_kw": 0.4}},
    "job_classes": {"llm": {"h100": 2.6}},
    "cities": {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6}},
    "links": [{"a": "east", "b": "west", "gbps": 40, "latency_ms": 9, "cny_per_gb": 0.02}],
    "sites": [
        {"id": "w1", "city": "west", "pue": 1.2,
         "gpus": {"h100": {"count": 8, "cny_per_gpu_h": 16}, "a800": {"count": 16, "cny_per_gpu_h": 7}},
         "grid": {"carbon_kg_per_kwh": 0.55, "cny_per_kwh": [0.3, 0.6]},
         "renewables": {"kw": [0, 10, 20], "cny_per_kwh": 0.15},
         "battery": {"capacity_kwh": 100, "power_kw": 20, "efficiency": 0.9, "initial_soc": 0.5},
         "backup": "e1"},
        {"id": "e1", "city": "east", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 9}}},
    ],
    "jobs": [
        {"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 3, "gpu_types": ["h100"], "class": "llm",
         "deadline_h": 12, "origin": "east", "data_gb": 100, "max_rtt_ms": 30, "checkpoint_h": 1},
        {"id": "j2", "tenant": "acme", "submit_h": 1.5, "gpus": 1, "work_h": 2, "origin": "west"},
    ],
    "events": [
        {"type": "outage", "site": "w1", "start_h": 5, "end_h": 6},
        {"type": "grid_cap", "site": "w1", "start_h": 7, "end_h": 9, "max_grid_kw": 3, "notice_h": 4},
    ],
    "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 1000,
                  "dr_cny_per_kwh": 10},
}


def test_yaml_and_json_versions_of_a_scenario_load_the_same(tmp_path):
    (tmp_path / "s.yaml").write_text(YAML_TEXT)
    (tmp_path / "s.json").write_text(json.dumps(JSON_DOC, indent=1))
    a = load_scenario(str(tmp_path / "s.yaml"))
    b = load_scenario(str(tmp_path / "s.json"))
    for name in ("name", "start", "horizon_h", "gpu_types", "job_classes", "cities", "sites", "jobs",
                 "events", "objective", "job_index"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.start is not None and a.start.utcoffset().total_seconds() == 8 * 3600
    assert a.network.path("east", "west") == b.network.path("east", "west")
    assert a.sites["w1"].grid.cny_per_kwh.values == (0.3, 0.6)


def test_a_boolean_is_not_a_number_of_gpus():
    with pytest.raises(ScenarioError, match=r"jobs\[0\]\.gpus.*boolean.*\(got True\)"):
        build(make_scenario(jobs=[make_job(gpus=True)]))


def test_jobs_csv_with_a_byte_order_mark_loads(tmp_path):
    raw = make_scenario()
    raw.pop("jobs")
    raw["jobs_file"] = "jobs.csv"
    (tmp_path / "jobs.csv").write_text("\ufeffid,submit_h,gpus,work_h,origin\nj1,0,1,1,east\n", encoding="utf-8")
    scn = parse_scenario(raw, str(tmp_path / "s.yaml"))
    assert [j.id for j in scn.jobs] == ["j1"]


# ----------------------------------------------------------------------------- uncertainty (MODEL.md §1, §7)
@pytest.mark.parametrize(("overrides", "path", "value"), [
    ({"jobs": [make_job(actual_work_h=0)]}, "jobs[0].actual_work_h", "0"),
    ({"jobs": [make_job(actual_work_h=float("nan"))]}, "jobs[0].actual_work_h", "nan"),
    ({"jobs": [make_job(max_wait_h=-1)]}, "jobs[0].max_wait_h", "-1"),
    ({"objective": {"wait_cny_per_gpu_h": -2}}, "objective.wait_cny_per_gpu_h", "-2"),
    ({"forecast": {"renewables": {"error": -0.1, "seed": 1}}}, "forecast.renewables.error", "-0.1"),
    ({"forecast": {"carbon": {"error": float("inf"), "seed": 1}}}, "forecast.carbon.error", "inf"),
    ({"forecast": {"carbon": {"error": 0.1, "seed": 1.5}}}, "forecast.carbon.seed", "1.5"),
    ({"forecast": {"carbon": {"error": 0.1, "seed": "x"}}}, "forecast.carbon.seed", "'x'"),
    ({"forecast": {"wind": {"error": 0.1}}}, "forecast.wind", "{'error': 0.1}"),
], ids=["actual-zero", "actual-nan", "max-wait-negative", "wait-price-negative", "forecast-error-negative",
        "forecast-error-inf", "forecast-seed-fraction", "forecast-seed-text", "forecast-unknown-series"])
def test_uncertainty_fields_out_of_range_are_refused_naming_path_and_value(overrides, path, value):
    message = refused(**overrides)
    assert f": {path}:" in message and f"(got {value})" in message


def test_wait_price_defaults_to_the_lateness_price_and_zero_is_kept():
    assert build(objective={"late_cny_per_gpu_h": 3}).objective.wait_cny_per_gpu_h == 3.0
    assert build(objective={"late_cny_per_gpu_h": 3, "wait_cny_per_gpu_h": 0}).objective.wait_cny_per_gpu_h == 0.0


def test_jobs_csv_reads_actual_work_and_max_wait_and_refuses_a_bad_cell_naming_its_line(tmp_path):
    header = "id,submit_h,gpus,work_h,origin,actual_work_h,max_wait_h\n"
    scn = load_scenario(write_scenario_with_jobs_csv(tmp_path, header + "j1,0,2,4,west,5.5,2\nj2,0,2,4,west,,\n"))
    j1, j2 = scn.jobs
    assert (j1.actual_work_h, j1.max_wait_h, j1.true_work_h) == (5.5, 2.0, 5.5)
    assert (j2.actual_work_h, j2.max_wait_h, j2.true_work_h) == (None, None, 4.0)
    path = write_scenario_with_jobs_csv(tmp_path, header + "j1,0,2,4,west,5.5,2\nj2,0,2,4,west,-1,\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    # a CSV cell is text
    assert "jobs.csv:3: jobs[1].actual_work_h" in str(info.value) and "(got '-1')" in str(info.value)
