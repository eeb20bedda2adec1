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


def _typed(small_gpus: int, bound_type_pool: int) -> dict:
    """A scenario written for uncertainty (jobs with `max_wait_h`): one cheaper l40s pool of
    `bound_type_pool` GPUs beside two a800 pools of 32, all as fast; a busy h100 job; a lax job of
    `small_gpus` GPUs that may use any type, then a tight gang bound to l40s that only the l40s
    pool fits."""
    grid = {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}
    gang = bound_type_pool
    return {
        "name": "room-types", "horizon_h": 24,
        "gpu_types": {t: {"power_kw": 0.4, "speed": 1.0} for t in ("l40s", "a800", "h100")},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}},
        "links": [],
        "sites": [
            {"id": "l40s-1", "city": "east", "gpus": {"l40s": {"count": bound_type_pool, "cny_per_gpu_h": 5.0}},
             "grid": grid},
            {"id": "a800-1", "city": "east", "gpus": {"a800": {"count": 32, "cny_per_gpu_h": 5.3}}, "grid": grid},
            {"id": "a800-2", "city": "east", "gpus": {"a800": {"count": 32, "cny_per_gpu_h": 5.3}}, "grid": grid},
            {"id": "other-1", "city": "east", "gpus": {"h100": {"count": 32, "cny_per_gpu_h": 15.0}}, "grid": grid},
        ],
        "jobs": [
            {"id": "busy", "submit_h": 0.0, "gpus": 32, "work_h": 20.0, "origin": "east", "gpu_types": ["h100"],
             "max_wait_h": 6},
            {"id": "lax", "submit_h": 0.5, "gpus": small_gpus, "work_h": 8.0, "origin": "east", "max_wait_h": 6},
            {"id": "gang", "submit_h": 1.0, "gpus": gang, "work_h": 2.0, "origin": "east", "deadline_h": 3.5,
             "gpu_types": ["l40s"], "max_wait_h": 1},
        ],
        "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                      "dr_cny_per_kwh": 10},
    }


def _run_typed(scn: dict) -> tuple[dict, dict[str, tuple[str, float, float]]]:
    s = parse_scenario(scn, "room-types")
    res = simulate(s, Suanli(preempt=False))      # (stopping the lax job would free the pool too)
    assert validate(s, res.segments)[0] == []
    return account(s, res.segments).metrics, {g.job_id: (g.site, g.start_h, g.end_h) for g in res.segments}


def test_room_counts_only_pools_of_the_types_a_gang_may_use():
    """Three pools of 32 GPUs, but only one of l40s: a 16-GPU job on it leaves a 32-GPU gang bound
    to l40s nowhere to go. Counting pools by size alone (a third of the room each), the lax job
    took the cheaper l40s pool and the gang ran late (issue #15's seed 12, docs/SCHEDULER.md)."""
    metrics, runs = _run_typed(_typed(16, 32))
    assert runs["lax"][0].startswith("a800-")
    assert runs["gang"][:2] == ("l40s-1", 1.0)
    assert metrics["late_gpu_h"] == 0.0


def test_room_counts_a_same_sized_gang_with_fewer_pools():
    """A 16-GPU job that may use any type keeps off the one 16-GPU l40s pool that a same-sized
    l40s-only gang is bound to: before, a gang no larger than the job was never counted."""
    metrics, runs = _run_typed(_typed(16, 16))
    assert runs["lax"][0].startswith("a800-")
    assert runs["gang"][:2] == ("l40s-1", 1.0)
    assert metrics["late_gpu_h"] == 0.0
