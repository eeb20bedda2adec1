"""suanli's room price: small or lax jobs keep off the only pool a big gang can use."""

from __future__ import annotations

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.scheduling.policies.suanli import Suanli
from suanli.sim.engine import simulate


def _scenario() -> dict:
    """A 16-GPU pool (the only one a 16-GPU gang fits) and a dearer 4-GPU one, in one city. An
    h100 job keeps part of the network busy; a small lax job arrives, then a tight 16-GPU gang."""
    return {
        "name": "room", "horizon_h": 24,
        "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}, "h100": {"power_kw": 0.7, "speed": 2.0}},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}},
        "links": [],
        "sites": [
            {"id": "big-1", "city": "east", "gpus": {"a800": {"count": 16, "cny_per_gpu_h": 5.0}},
             "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}},
            {"id": "small-1", "city": "east", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 5.2}},
             "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}},
            {"id": "other-1", "city": "east", "gpus": {"h100": {"count": 8, "cny_per_gpu_h": 15.0}},
             "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}},
        ],
        "jobs": [
            {"id": "busy", "submit_h": 0.0, "gpus": 8, "work_h": 20.0, "origin": "east", "gpu_types": ["h100"]},
            {"id": "small", "submit_h": 0.5, "gpus": 2, "work_h": 8.0, "origin": "east", "gpu_types": ["a800"]},
            {"id": "gang", "submit_h": 1.0, "gpus": 16, "work_h": 2.0, "origin": "east", "deadline_h": 3.5},
        ],
        "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                      "dr_cny_per_kwh": 10},
    }


def _run(policy: Suanli) -> tuple[dict, dict[str, tuple[str, float, float]]]:
    scn = parse_scenario(_scenario(), "room")
    res = simulate(scn, policy)
    assert validate(scn, res.segments)[0] == []
    return account(scn, res.segments).metrics, {s.job_id: (s.site, s.start_h, s.end_h) for s in res.segments}


def test_a_small_job_keeps_off_the_only_pool_a_big_gang_fits():
    metrics, runs = _run(Suanli())
    assert runs["small"][0] == "small-1"       # dearer, but it leaves big-1 whole
    assert runs["gang"][:2] == ("big-1", 1.0)
    assert metrics["late_gpu_h"] == 0.0


def test_without_the_room_price_the_small_job_blocks_the_gang():
    metrics, runs = _run(Suanli(room_cny_per_gpu_h=0.0, preempt=False))   # (stopping it would free the pool)
    assert runs["small"][0] == "big-1"         # the cheapest pool, committed at once
    assert runs["gang"][1] >= runs["small"][2]
    assert metrics["late_gpu_h"] > 0.0


def test_an_idle_network_pays_no_room():
    scn = _scenario()
    scn["jobs"] = [j for j in scn["jobs"] if j["id"] == "small"]
    policy = Suanli()
    res = simulate(parse_scenario(scn, "room"), policy)
    assert [s.site for s in res.segments] == ["big-1"]   # nothing busy: the cheapest pool
