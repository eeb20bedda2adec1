"""The network of MODEL.md §5: least-latency paths, tie rules, rtt, transfer time and cost."""

from __future__ import annotations

import math

import pytest

from conftest import build, make_job, make_scenario, make_site
from suanli.model.network import Network


def net(*links, cities=None):
    """links: (a, b, gbps, latency_ms, cny_per_gb)."""
    names = cities or sorted({c for lk in links for c in lk[:2]})
    return Network(list(names), list(links))


# ----------------------------------------------------------------------------- least latency
def test_path_with_least_total_latency_is_chosen_over_a_direct_link():
    n = net(("A", "B", 10, 10, 0.1), ("B", "C", 10, 10, 0.1), ("A", "C", 10, 25, 0.0))
    p = n.path("A", "C")
    assert p.cities == ("A", "B", "C")
    assert p.latency_ms == pytest.approx(20.0)         # 10 + 10 < 25
    assert p.cny_per_gb == pytest.approx(0.2)


def test_lower_latency_wins_over_a_wider_path():
    n = net(("A", "B", 1, 10, 0.0), ("A", "C", 100, 6, 0.0), ("C", "B", 100, 6, 0.0))
    p = n.path("A", "B")
    assert p.cities == ("A", "B")                      # 10 < 6 + 6
    assert p.bottleneck_gbps == 1


def test_rtt_is_twice_the_one_way_path_latency():
    n = net(("A", "B", 10, 7, 0.0), ("B", "C", 10, 4.5, 0.0))
    assert n.path("A", "C").rtt_ms == pytest.approx(23.0)    # 2 * (7 + 4.5)


def test_paths_are_undirected():
    n = net(("A", "B", 10, 7, 0.1), ("B", "C", 20, 4, 0.2))
    there, back = n.path("A", "C"), n.path("C", "A")
    assert back.cities == ("C", "B", "A")
    assert (back.latency_ms, back.bottleneck_gbps, back.cny_per_gb) == pytest.approx(
        (there.latency_ms, there.bottleneck_gbps, there.cny_per_gb))


# ----------------------------------------------------------------------------- tie rules
def test_equal_latency_tie_goes_to_the_greater_bottleneck_bandwidth():
    n = net(("A", "B", 10, 5, 0.1), ("B", "D", 10, 5, 0.1),
            ("A", "C", 40, 5, 0.1), ("C", "D", 40, 5, 0.1))
    p = n.path("A", "D")
    assert p.cities == ("A", "C", "D")
    assert p.bottleneck_gbps == 40


def test_equal_latency_and_bandwidth_tie_goes_to_the_lower_cost():
    n = net(("A", "B", 10, 5, 0.1), ("B", "D", 10, 5, 0.1),
            ("A", "C", 10, 5, 0.05), ("C", "D", 10, 5, 0.05))
    p = n.path("A", "D")
    assert p.cities == ("A", "C", "D")
    assert p.cny_per_gb == pytest.approx(0.1)          # 0.05 + 0.05 < 0.1 + 0.1


def test_widest_path_wins_even_when_it_is_not_the_cheapest():
    n = net(("A", "B", 10, 5, 0.0), ("B", "D", 10, 5, 0.0),
            ("A", "C", 40, 5, 0.5), ("C", "D", 40, 5, 0.5))
    p = n.path("A", "D")
    assert p.cities == ("A", "C", "D")
    assert p.bottleneck_gbps == 40
    assert p.cny_per_gb == pytest.approx(1.0)


def test_tie_rules_hold_per_destination_when_a_narrow_shared_hop_equalises_widths():
    # O->X: via P (100 Gbit/s, 1.0 CNY/GB) beats via Q (10 Gbit/s, free): equal latency, wider.
    # O->D = O->X + X->D (5 Gbit/s): both ways now have bottleneck 5, so the cheaper (via Q) wins,
    # even though the best path to X goes via P.
    n = net(("O", "P", 100, 1, 1.0), ("P", "X", 100, 1, 0.0), ("O", "Q", 10, 1, 0.0), ("Q", "X", 10, 1, 0.0),
            ("X", "D", 5, 1, 0.25))
    assert n.path("O", "X").cities == ("O", "P", "X")
    p = n.path("O", "D")
    assert p.cities == ("O", "Q", "X", "D")
    assert p.bottleneck_gbps == 5
    assert p.cny_per_gb == pytest.approx(0.25)
    assert p.latency_ms == pytest.approx(3.0)


def test_latency_tie_survives_floating_point_sums():
    # 0.1 + 0.2 != 0.3 in floating point, yet the two paths have the same latency: the wider wins
    n = net(("A", "B", 100, 0.1, 0.0), ("B", "D", 100, 0.2, 0.0), ("A", "D", 10, 0.3, 0.0))
    p = n.path("A", "D")
    assert p.cities == ("A", "B", "D")
    assert p.bottleneck_gbps == 100
    assert p.latency_ms == pytest.approx(0.3)


def test_parallel_links_keep_the_best_by_the_tie_rule():
    n = net(("A", "B", 10, 10, 0.0), ("A", "B", 40, 10, 0.3), ("A", "B", 40, 10, 0.2))
    p = n.path("A", "B")
    assert (p.latency_ms, p.bottleneck_gbps, p.cny_per_gb) == pytest.approx((10, 40, 0.2))
    n2 = net(("A", "B", 40, 10, 0.0), ("A", "B", 1, 5, 0.9))
    assert n2.path("A", "B").latency_ms == pytest.approx(5)


# ----------------------------------------------------------------------------- transfer
def test_bottleneck_is_the_narrowest_link_on_the_path():
    n = net(("A", "B", 100, 1, 0.0), ("B", "C", 10, 1, 0.0))
    assert n.path("A", "C").bottleneck_gbps == 10


def test_transfer_hours_are_data_times_8_over_bottleneck_over_3600():
    n = net(("A", "B", 100, 1, 0.0), ("B", "C", 40, 1, 0.0))
    # 900 GB * 8 / 40 Gbit/s / 3600 = 0.05 h
    assert n.path("A", "C").transfer_h(900) == pytest.approx(0.05)
    assert n.path("A", "C").transfer_h(0) == 0.0


def test_transfer_cost_is_data_times_cny_per_gb_summed_along_the_path():
    n = net(("A", "B", 10, 1, 0.5), ("B", "C", 10, 1, 0.25))
    assert n.path("A", "C").transfer_cny(100) == pytest.approx(75.0)    # 100 * (0.5 + 0.25)


def test_same_city_has_zero_latency_transfer_time_and_cost():
    n = net(("A", "B", 10, 5, 0.5))
    p = n.path("A", "A")
    assert p.latency_ms == 0 and p.rtt_ms == 0
    assert p.transfer_h(1000) == 0 and p.transfer_cny(1000) == 0


def test_scenario_job_to_site_rtt_transfer_hours_and_cost():
    scn = build(jobs=[make_job(origin="east", data_gb=3600)])
    job = scn.jobs[0]
    # link east-west: 8 Gbit/s, 10 ms, 0.5 CNY/GB
    assert scn.rtt_ms(job, "w1") == pytest.approx(20.0)
    assert scn.transfer_h(job, "w1") == pytest.approx(1.0)      # 3600 * 8 / 8 / 3600
    assert scn.transfer_cny(job, "w1") == pytest.approx(1800.0)  # 3600 * 0.5
    # e1 is in the origin city
    assert (scn.rtt_ms(job, "e1"), scn.transfer_h(job, "e1"), scn.transfer_cny(job, "e1")) == (0, 0, 0)


# ----------------------------------------------------------------------------- unreachable
def test_unreachable_city_has_no_path():
    n = net(("A", "B", 10, 5, 0.5), cities=["A", "B", "Z"])
    assert n.path("A", "Z") is None
    assert n.path("Z", "A") is None
    assert n.path("Z", "Z").latency_ms == 0


def test_unreachable_site_is_not_reachable_for_the_job():
    raw = make_scenario(jobs=[make_job(origin="east", data_gb=10, max_rtt_ms=1000)])
    raw["cities"]["island"] = {"lat": 20.0, "lon": 110.0}
    raw["sites"].append(make_site("i1", "island"))
    scn = build(raw)
    job = scn.jobs[0]
    assert scn.path(job, "i1") is None
    assert math.isinf(scn.rtt_ms(job, "i1"))
    assert math.isinf(scn.transfer_h(job, "i1"))
    assert not scn.latency_ok(job, "i1")
    assert scn.latency_ok(job, "w1")
