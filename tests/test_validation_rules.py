"""Schedule validity, MODEL.md §3: one invalid schedule per rule, and the valid edge cases.

Defaults (tests/conftest.py): site w1 in west (h100 x8 speed 2, a800 x8 speed 1), site e1 in
east (a800 x4); link east-west 8 Gbit/s, 10 ms (rtt 20 ms), so 3600 GB take
3600 * 8 / 8 / 3600 = 1 h; job j1: 2 GPUs, work_h 4, from west, submitted at 0, no data.
"""

from __future__ import annotations

import pytest

from conftest import build, make_job, make_scenario, make_site, seg
from suanli.accounting import validate


def rules(scn, segments):
    """(rule, job_id) of every violation."""
    return [(v.rule, v.job_id) for v in validate(scn, segments)[0]]


def outcome(scn, segments, job_id="j1"):
    return validate(scn, segments)[1][job_id]


# ----------------------------------------------------------------------------- 3.1
def test_rule_3_1_segment_gpus_must_equal_the_job_gpus():
    assert rules(build(), [seg("j1", "w1", "a800", 3, 0, 4)]) == [("3.1", "j1")]


def test_rule_3_1_gpu_type_must_be_allowed_for_the_job():
    scn = build(jobs=[make_job(gpu_types=["a800"])])
    # h100 at speed 2 would finish work 4 in 2 h, but the job only allows a800
    assert rules(scn, [seg("j1", "w1", "h100", 2, 0, 2)]) == [("3.1", "j1")]


def test_rule_3_1_site_must_have_a_pool_of_the_gpu_type():
    assert rules(build(), [seg("j1", "e1", "h100", 2, 0, 2)]) == [("3.1", "j1")]


def test_rule_3_1_unknown_site_is_refused():
    assert rules(build(), [seg("j1", "nowhere", "a800", 2, 0, 4)]) == [("3.1", "j1")]


# ----------------------------------------------------------------------------- 3.2
def test_rule_3_2_segments_of_one_job_must_not_overlap():
    scn = build(jobs=[make_job(checkpoint_h=1)])
    # [0, 2) on a800 keeps 2; [1.5, 2.5) on h100 keeps 2 -> work 4 done, but they overlap
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 2), seg("j1", "w1", "h100", 2, 1.5, 2.5)]) == [("3.2", "j1")]


def test_rule_3_2_segments_touching_at_an_instant_do_not_overlap():
    scn = build(jobs=[make_job(checkpoint_h=1)])
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 2), seg("j1", "w1", "h100", 2, 2, 3)]) == []


# ----------------------------------------------------------------------------- 3.3
def test_rule_3_3_first_segment_must_wait_for_submit_plus_transfer():
    scn = build(jobs=[make_job(origin="east", data_gb=3600, submit_h=0.5)])
    # data arrives at 0.5 + 1 = 1.5
    assert rules(scn, [seg("j1", "w1", "a800", 2, 1.0, 5.0)]) == [("3.3", "j1")]
    assert rules(scn, [seg("j1", "w1", "a800", 2, 1.5, 5.5)]) == []


def test_rule_3_3_a_job_cannot_start_before_its_submit_time_even_without_data():
    scn = build(jobs=[make_job(submit_h=2)])
    assert rules(scn, [seg("j1", "w1", "a800", 2, 1, 5)]) == [("3.3", "j1")]


def test_rule_3_3_later_segment_on_a_new_site_waits_for_previous_end_plus_transfer():
    scn = build(jobs=[make_job(origin="east", data_gb=3600, submit_h=0.5, checkpoint_h=1)])
    # e1 is in the origin city (no transfer): [0.5, 2.5) keeps 2; to w1 the data leaves at 2.5,
    # arrives at 3.5
    first = seg("j1", "e1", "a800", 2, 0.5, 2.5)
    assert rules(scn, [first, seg("j1", "w1", "a800", 2, 3.0, 5.0)]) == [("3.3", "j1")]
    assert rules(scn, [first, seg("j1", "w1", "a800", 2, 3.5, 5.5)]) == []


def test_rule_3_3_a_site_that_hosted_the_job_before_needs_no_new_transfer():
    scn = build(jobs=[make_job(origin="east", data_gb=3600, submit_h=0.5, checkpoint_h=1)])
    # w1 [1.5, 2.5) keeps 1; e1 [2.5, 3.5) keeps 1 (origin city); back on w1 at 3.5 (not 4.5)
    # keeps the last 2: work 4, finished at 5.5
    segments = [seg("j1", "w1", "a800", 2, 1.5, 2.5), seg("j1", "e1", "a800", 2, 2.5, 3.5),
                seg("j1", "w1", "a800", 2, 3.5, 5.5)]
    assert rules(scn, segments) == []
    assert outcome(scn, segments).completion_h == pytest.approx(5.5)


def test_rule_3_3_an_unreachable_site_is_refused():
    raw = make_scenario()
    raw["cities"]["island"] = {"lat": 20.0, "lon": 110.0}
    raw["sites"].append(make_site("i1", "island"))
    assert rules(build(raw), [seg("j1", "i1", "a800", 2, 0, 4)]) == [("3.3", "j1")]


# ----------------------------------------------------------------------------- 3.4
def three_jobs():
    return build(jobs=[make_job(f"j{i}", gpus=4, work_h=2) for i in (1, 2, 3)])


def test_rule_3_4_pool_capacity_exceeded_is_a_violation():
    # a800 pool of w1 holds 8: over [1, 2) three 4-GPU jobs need 12
    segments = [seg("j1", "w1", "a800", 4, 0, 2), seg("j2", "w1", "a800", 4, 0, 2),
                seg("j3", "w1", "a800", 4, 1, 3)]
    found = rules(three_jobs(), segments)
    assert len(found) == 1
    assert found[0][0] == "3.4" and found[0][1] in {"j1", "j2", "j3"}


def test_rule_3_4_exactly_full_pool_is_fine():
    assert rules(three_jobs(), [seg("j1", "w1", "a800", 4, 0, 2), seg("j2", "w1", "a800", 4, 0, 2)]) == []


def test_rule_3_4_back_to_back_segments_touching_at_an_instant_are_fine():
    segments = [seg("j1", "w1", "a800", 4, 0, 2), seg("j2", "w1", "a800", 4, 0, 2),
                seg("j3", "w1", "a800", 4, 2, 4)]
    assert rules(three_jobs(), segments) == []


def test_rule_3_4_touching_within_the_time_tolerance_is_fine():
    segments = [seg("j1", "w1", "a800", 4, 0, 2), seg("j2", "w1", "a800", 4, 0, 2),
                seg("j3", "w1", "a800", 4, 2 - 5e-7, 4 - 5e-7)]
    assert rules(three_jobs(), segments) == []


def test_rule_3_4_pools_of_different_gpu_types_do_not_share_capacity():
    segments = [seg("j1", "w1", "a800", 4, 0, 2), seg("j2", "w1", "a800", 4, 0, 2),
                seg("j3", "w1", "h100", 4, 0, 1)]
    assert rules(three_jobs(), segments) == []


# ----------------------------------------------------------------------------- 3.5
def test_rule_3_5_round_trip_latency_above_max_rtt_is_a_violation():
    scn = build(jobs=[make_job(origin="east", max_rtt_ms=15)])
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 4)]) == [("3.5", "j1")]    # rtt 2 * 10 = 20


def test_rule_3_5_round_trip_latency_equal_to_max_rtt_is_fine():
    scn = build(jobs=[make_job(origin="east", max_rtt_ms=20)])
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 4)]) == []


def test_rule_3_5_site_in_the_origin_city_has_zero_rtt():
    scn = build(jobs=[make_job(origin="east", max_rtt_ms=0)])
    assert rules(scn, [seg("j1", "e1", "a800", 2, 0, 4)]) == []


# ----------------------------------------------------------------------------- 3.6
def outage_scn():
    # outage of w1 over [2, 3); j1 needs 2 h on a800, so every segment below completes it
    return build(events=[{"type": "outage", "site": "w1", "start_h": 2, "end_h": 3}],
                 jobs=[make_job(work_h=2)])


@pytest.mark.parametrize(("start", "end"), [(1, 3), (1.5, 3.5), (2, 4), (2.5, 4.5)],
                         ids=["ends-inside", "spans", "starts-at-start", "starts-inside"])
def test_rule_3_6_segment_overlapping_an_outage_is_a_violation(start, end):
    assert rules(outage_scn(), [seg("j1", "w1", "a800", 2, start, end)]) == [("3.6", "j1")]


@pytest.mark.parametrize(("start", "end"), [(0, 2), (3, 5), (5e-7, 2 + 5e-7)],
                         ids=["ends-at-start", "starts-at-end", "within-tolerance"])
def test_rule_3_6_segment_touching_the_outage_boundary_is_fine(start, end):
    assert rules(outage_scn(), [seg("j1", "w1", "a800", 2, start, end)]) == []


def test_rule_3_6_an_outage_elsewhere_does_not_matter():
    scn = build(events=[{"type": "outage", "site": "e1", "start_h": 0, "end_h": 4}])
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 4)]) == []


# ----------------------------------------------------------------------------- 3.7
def test_rule_3_7_last_segment_running_past_completion_is_a_violation():
    # work 4 on a800 (speed 1) needs 4 h, the segment runs 5
    assert rules(build(), [seg("j1", "w1", "a800", 2, 0, 5)]) == [("3.7", "j1")]


def test_rule_3_7_last_segment_ending_within_tolerance_of_completion_is_fine():
    segments = [seg("j1", "w1", "a800", 2, 0, 4 + 5e-7)]
    assert rules(build(), segments) == []
    assert outcome(build(), segments).finished


def test_rule_3_7_too_short_is_unfinished_not_a_violation():
    scn = build()
    segments = [seg("j1", "w1", "a800", 2, 0, 3)]
    assert rules(scn, segments) == []
    o = outcome(scn, segments)
    assert not o.finished and o.completion_h is None
    assert o.kept_work == pytest.approx(3.0)


def test_rule_3_7_checkpointed_non_last_segment_keeps_whole_checkpoints_only():
    scn = build(jobs=[make_job(checkpoint_h=1.5)])
    first = seg("j1", "w1", "a800", 2, 0, 2.9)        # keeps floor(2.9 / 1.5) * 1.5 * 1 = 1.5
    exact = [first, seg("j1", "w1", "a800", 2, 3, 5.5)]     # the last 2.5 of work
    assert rules(scn, exact) == []
    assert outcome(scn, exact).completion_h == pytest.approx(5.5)
    assert rules(scn, [first, seg("j1", "w1", "a800", 2, 3, 5.6)]) == [("3.7", "j1")]
    short = [first, seg("j1", "w1", "a800", 2, 3, 5.4)]
    assert rules(scn, short) == []
    assert not outcome(scn, short).finished
    assert outcome(scn, short).kept_work == pytest.approx(3.9)          # 1.5 + 2.4


def test_rule_3_7_non_last_segment_within_tolerance_of_a_checkpoint_keeps_it():
    scn = build(jobs=[make_job(checkpoint_h=1)])
    # floor((2.9999995 + 1e-6) / 1) = 3 checkpoints kept; the last 1 h completes work 4
    segments = [seg("j1", "w1", "a800", 2, 0, 2.9999995), seg("j1", "w1", "a800", 2, 3, 4)]
    assert rules(scn, segments) == []
    assert outcome(scn, segments).finished


def test_rule_3_7_non_last_segment_without_checkpoint_keeps_nothing():
    scn = build()
    cut = seg("j1", "w1", "a800", 2, 0, 2)
    assert rules(scn, [cut, seg("j1", "w1", "a800", 2, 2, 6)]) == []       # all 4 h again
    assert not outcome(scn, [cut, seg("j1", "w1", "a800", 2, 2, 4)]).finished


def test_rule_3_7_kept_work_uses_the_gpu_type_speed():
    scn = build(jobs=[make_job(checkpoint_h=1)])
    # h100 [0, 1.5): floor(1.5 / 1) * 1 * speed 2 = 2; a800 [1.5, 3.5) does the other 2
    segments = [seg("j1", "w1", "h100", 2, 0, 1.5), seg("j1", "w1", "a800", 2, 1.5, 3.5)]
    assert rules(scn, segments) == []
    assert outcome(scn, segments).completion_h == pytest.approx(3.5)


def test_rule_3_7_job_class_speed_overrides_the_gpu_type_speed():
    scn = build(job_classes={"llm": {"h100": 4.0}}, jobs=[make_job(**{"class": "llm"})])
    # class speed 4 on h100: work 4 takes 1 h, so 2 h (right at type speed 2) is too long
    assert rules(scn, [seg("j1", "w1", "h100", 2, 0, 1)]) == []
    assert rules(scn, [seg("j1", "w1", "h100", 2, 0, 2)]) == [("3.7", "j1")]
    # the class says nothing about a800: its type speed 1 applies, 4 h
    assert rules(scn, [seg("j1", "w1", "a800", 2, 0, 4)]) == []


# ----------------------------------------------------------------------------- all rules
def test_a_valid_multi_segment_schedule_has_no_violations():
    scn = build(
        horizon_h=8,
        events=[{"type": "outage", "site": "w1", "start_h": 3, "end_h": 4}],
        jobs=[make_job("j1", origin="east", data_gb=3600, work_h=8, checkpoint_h=1, deadline_h=10,
                       max_rtt_ms=20),
              make_job("j2", gpus=8, work_h=3, max_rtt_ms=0),
              make_job("j3", gpus=4, work_h=2, gpu_types=["a800"])])
    segments = [
        # j1: data reaches w1 at 0 + 1 h; h100 [1, 3) keeps 2 * 2 = 4 and is cut by the outage
        seg("j1", "w1", "h100", 2, 1, 3),
        # e1 is in j1's origin city: no transfer; a800 [3, 5) keeps 2
        seg("j1", "e1", "a800", 2, 3, 5),
        # back on w1 (already hosted, no transfer) after the outage: 1 h * 2 = the last 2
        seg("j1", "w1", "h100", 2, 5, 6),
        # j2 fills the a800 pool (8 of 8) up to the outage start
        seg("j2", "w1", "a800", 8, 0, 3),
        # j3 starts at the outage end
        seg("j3", "w1", "a800", 4, 4, 6),
    ]
    violations, outcomes = validate(scn, segments)
    assert violations == []
    assert {j: o.completion_h for j, o in outcomes.items()} == {"j1": 6, "j2": 3, "j3": 6}
    assert outcomes["j1"].kept_work == pytest.approx(8.0)


def test_overlap_with_any_earlier_segment_is_reported_not_only_the_previous():
    # A [0, 10) holds B [1, 2) and C [3, 4): both overlap A.
    scn = build(make_scenario(jobs=[make_job(work_h=20, checkpoint_h=1)]))
    v, _ = validate(scn, [seg("j1", "w1", "a800", 1, 0, 10), seg("j1", "w1", "a800", 1, 1, 2),
                          seg("j1", "w1", "a800", 1, 3, 4)])
    assert [x.rule for x in v if x.rule == "3.2"] == ["3.2", "3.2"]
