#!/usr/bin/env python3
"""Seeded generator of MODEL.md scenarios for tests and benchmarks.

Writes a scenario in the format of ``design/MODEL.md`` §1 (explicit hourly series, no model
specs), shaped like the public example scenarios:

* cities from a fixed list of real Chinese cities (the 12 of the public scenarios always,
  more when ``--sites`` exceeds 12; once those run out, sites repeat cities as ``qingyang-2``);
* a connected link graph: a geographic minimum spanning tree plus some short extra edges,
  ``gbps`` from {10, 25, 40, 100, 200, 400}, ``latency_ms`` 3-15 (from distance), ``cny_per_gb``
  0-0.04 (0 between eastern cities);
* GPU types h100 / a800 / 910b / l40s and job classes llm-train / inference as in the public
  scenarios;
* sites with 1-3 pools (8-256 GPUs), PUE 1.1-1.35, an hourly carbon list, a Gansu-style
  time-of-use tariff (24 or H long; eastern sites pay ~1.25-1.32x), renewables (solar + wind)
  sized to a fraction of the site's full load, batteries on about half the sites, a backup site;
* jobs: submit uniform in [0, 0.8 H], gang sizes from {1,1,1,1,2,4,8,16,32,64} capped by the
  largest pool of an allowed type, log-normal work (median ~2 h, 0.05-48 h), optional type
  subset and class, deadlines for ~70 %, consumer-city origins, data 0-2000 GB, checkpoints for
  ~70 %, and latency bounds (10-40 ms) on some inference jobs, always satisfiable;
* ``--outages K`` outage events (2-8 h) and ``--grid-caps K`` grid_cap events (integer hours,
  notice 2-24 h);
* decisions under uncertainty (MODEL.md §7; `suanli.traces.uncertainty`), all off by default so
  that a scenario is the same as before without them: ``--work-noise S`` (and
  ``--estimate-bias M``) make each job's drawn work its ``actual_work_h`` and its ``work_h`` the
  user's estimate, true x exp(M + S Z); ``--max-wait RULE`` gives every job a ``max_wait_h`` by
  GAIA's rule (``gaia``: under 2 h estimated, 6 h, else 24 h) or LWA's (``next-workday``,
  ``mon-thu``: started by 09:00 of the next workday / Monday or Thursday less the estimate);
  ``--forecast-error R,C`` adds a ``forecast:`` block (relative 24-hour errors of renewables
  and carbon). These draw from their own seeded stream.

Every job is placeable: some pool of an allowed type with count >= gpus sits at a site whose
rtt to the origin (2 x least-latency path) is within ``max_rtt_ms``. The output is a pure
function of the arguments (numpy ``default_rng(seed)``).

Usage::

    python bench/gen_scenario.py --sites 8 --jobs 1500 --hours 168 --seed 9 \\
        --outages 3 --grid-caps 3 --jobs-csv --out bench/scenarios/mixed-week.yaml
"""
from __future__ import annotations

import argparse
import csv
import heapq
import math
import os
import sys
import time

import numpy as np
import yaml

from suanli.traces.uncertainty import RULES, make_uncertain, parse_start

# --------------------------------------------------------------------------- fixed tables
# name: (lat, lon, region, carbon_kg_per_kwh base)
BASE_CITIES = {
    "beijing": (39.90, 116.40, "east", 0.54),
    "shanghai": (31.23, 121.47, "east", 0.52),
    "shenzhen": (22.54, 114.06, "east", 0.46),
    "guangzhou": (23.13, 113.26, "east", 0.47),
    "zhengzhou": (34.75, 113.62, "central", 0.62),
    "hangzhou": (30.27, 120.15, "east", 0.50),
    "chengdu": (30.57, 104.07, "central", 0.30),
    "qingyang": (35.71, 107.64, "west", 0.60),
    "hami": (42.83, 93.51, "west", 0.70),
    "zhongwei": (37.51, 105.19, "west", 0.62),
    "ulanqab": (41.03, 113.13, "west", 0.68),
    "guiyang": (26.65, 106.63, "west", 0.385),
}
EXTRA_CITIES = {
    "chongqing": (29.56, 106.55, "central", 0.40),
    "xian": (34.34, 108.94, "central", 0.62),
    "wuhu": (31.35, 118.43, "east", 0.58),
    "hohhot": (40.84, 111.75, "west", 0.68),
    "lanzhou": (36.06, 103.83, "west", 0.50),
    "shaoguan": (24.81, 113.60, "east", 0.48),
    "wuhan": (30.59, 114.31, "central", 0.45),
    "tianjin": (39.13, 117.20, "east", 0.60),
    "nanjing": (32.06, 118.80, "east", 0.56),
    "yinchuan": (38.49, 106.23, "west", 0.66),
}
# weight of a base city when choosing where the sites go (hubs of "east data, west compute")
SITE_WEIGHT = {"west": 2.0, "east": 1.2, "central": 0.8}
# consumer cities (job origins) and their weights
ORIGINS = {"beijing": 0.22, "shanghai": 0.22, "shenzhen": 0.14, "guangzhou": 0.12,
           "hangzhou": 0.12, "chengdu": 0.09, "zhengzhou": 0.09}

GPU_TYPES = {
    "h100": {"power_kw": 0.7, "speed": 2.0},
    "a800": {"power_kw": 0.4, "speed": 1.0},
    "910b": {"power_kw": 0.4, "speed": 0.9},
    "l40s": {"power_kw": 0.35, "speed": 0.8},
}
JOB_CLASSES = {
    "llm-train": {"h100": 2.6, "a800": 1.0, "910b": 0.8, "l40s": 0.5},
    "inference": {"h100": 1.6, "a800": 1.0, "910b": 0.9, "l40s": 1.1},
}
# rental price range per GPU-hour (electricity excluded)
PRICE = {"h100": (13.5, 19.0), "a800": (5.8, 8.5), "910b": (4.4, 5.2), "l40s": (3.5, 4.3)}
# which GPU types a site of a region tends to have (first is the most common)
REGION_TYPES = {"west": ["a800", "910b", "h100"], "central": ["a800", "910b", "h100", "l40s"],
                "east": ["h100", "l40s", "a800"]}
GBPS = [10, 25, 40, 100, 200, 400]
# Gansu-style time-of-use tariff (CNY/kWh) by hour of day: valley 23-07, peak 08-10 and 17-20
TOU = [0.2] * 7 + [0.4] + [0.68] * 3 + [0.4] * 6 + [0.68] * 4 + [0.4] * 2 + [0.2]
OBJECTIVE = {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50.0, "unfinished_cny": 100000.0,
             "dr_cny_per_kwh": 10.0}
GANG = [1, 1, 1, 1, 2, 4, 8, 16, 32, 64]
CSV_COLUMNS = ["id", "tenant", "submit_h", "gpus", "work_h", "gpu_types", "class", "deadline_h",
               "origin", "data_gb", "max_rtt_ms", "checkpoint_h"]


def r(x: float, nd: int) -> float:
    """A plain Python float rounded to nd decimals (YAML-safe)."""
    return float(round(float(x), nd))


def km(a: tuple, b: tuple) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


# --------------------------------------------------------------------------- pieces
def choose_site_cities(rng, n_sites: int) -> list[str]:
    """Cities of the sites, in site order; a city appears again only once all are used."""
    names = list(BASE_CITIES)
    w = np.array([SITE_WEIGHT[BASE_CITIES[c][2]] for c in names])
    k = min(n_sites, len(names))
    first = [names[i] for i in rng.choice(len(names), size=k, replace=False, p=w / w.sum())]
    out = list(first)
    extras = list(EXTRA_CITIES)
    out += extras[: max(0, min(len(extras), n_sites - len(out)))]
    pool = list(out)
    i = 0
    while len(out) < n_sites:          # cities ran out: second, third ... site in a city
        out.append(pool[i % len(pool)])
        i += 1
    return out


def build_links(rng, cities: dict[str, tuple]) -> list[dict]:
    names = list(cities)
    n = len(names)
    d = [[km(cities[a], cities[b]) for b in names] for a in names]
    # Prim's minimum spanning tree on distance
    in_tree = {0}
    edges: set[tuple[int, int]] = set()
    best = {j: (d[0][j], 0) for j in range(1, n)}
    while best:
        j = min(best, key=lambda k: (best[k][0], k))
        _, i = best.pop(j)
        edges.add((min(i, j), max(i, j)))
        in_tree.add(j)
        for k in best:
            if d[j][k] < best[k][0]:
                best[k] = (d[j][k], j)
    # extra edges among near neighbours
    cand = set()
    for i in range(n):
        for j in sorted(range(n), key=lambda k: d[i][k])[1:4]:
            e = (min(i, j), max(i, j))
            if e not in edges:
                cand.add(e)
    cand = sorted(cand)
    n_extra = min(len(cand), int(round(0.6 * n)))
    for idx in sorted(rng.choice(len(cand), size=n_extra, replace=False)) if n_extra else []:
        edges.add(cand[idx])
    links = []
    for a, b, i, j in sorted((*sorted((names[i], names[j])), i, j) for i, j in edges):
        east = cities[a][2] == "east" and cities[b][2] == "east"
        lat = int(np.clip(round(3 + d[i][j] / 130.0 + rng.normal(0, 1.0)), 3, 15))
        if east:
            gbps = float(rng.choice([100, 200, 400]))
            cost = 0.0
        else:
            gbps = float(rng.choice(GBPS, p=[0.15, 0.2, 0.2, 0.25, 0.15, 0.05]))
            cost = r(rng.uniform(0.0, 0.04), 4)
        links.append({"a": a, "b": b, "gbps": gbps, "latency_ms": lat, "cny_per_gb": cost})
    return links


def latencies(cities: list[str], links: list[dict]) -> dict[str, dict[str, float]]:
    """Least total latency between every pair of cities (Dijkstra from each)."""
    adj: dict[str, list] = {c: [] for c in cities}
    for ln in links:
        adj[ln["a"]].append((ln["b"], ln["latency_ms"]))
        adj[ln["b"]].append((ln["a"], ln["latency_ms"]))
    out = {}
    for o in cities:
        dist = {o: 0.0}
        pq = [(0.0, o)]
        while pq:
            dd, u = heapq.heappop(pq)
            if dd > dist[u]:
                continue
            for v, lat in adj[u]:
                if dd + lat < dist.get(v, math.inf):
                    dist[v] = dd + lat
                    heapq.heappush(pq, (dd + lat, v))
        out[o] = dist
    return out


def solar_profile(T: int, lon: float, rng) -> np.ndarray:
    """0..1 hourly solar shape (June, UTC+8 clock) with a random cloudiness per day."""
    h = np.arange(T) + 0.5
    noon = 12.0 + (120.0 - lon) / 15.0          # local solar noon on the Beijing clock
    x = (h % 24 - noon) / 7.0                    # ~14 h of daylight
    shape = np.clip(np.cos(np.clip(x, -1.0, 1.0) * math.pi / 2), 0.0, None) ** 1.5
    days = int(math.ceil(T / 24)) + 1
    cloud = rng.uniform(0.35, 1.0, size=days)[(np.arange(T) // 24)]
    return shape * cloud * rng.uniform(0.9, 1.0, size=T)


def wind_profile(T: int, rng) -> np.ndarray:
    """0..1 hourly wind shape: an AR(1) process with a slight night bias."""
    w = np.empty(T)
    x = rng.uniform(0.2, 0.6)
    eps = rng.normal(0, 0.12, size=T)
    for t in range(T):
        x = 0.85 * x + 0.15 * 0.4 + eps[t]
        x = min(1.0, max(0.0, x))
        w[t] = x
    night = 1.0 + 0.15 * np.cos((np.arange(T) % 24) / 24.0 * 2 * math.pi)
    return np.clip(w * night, 0.0, 1.0)


def draw_pools(rng, region: str) -> tuple[float, dict[str, list[float]]]:
    """A site's PUE and pools as {type: [relative size, price]}; sizes are fixed later."""
    kinds = REGION_TYPES[region]
    n_pools = int(rng.integers(1, 4))
    p = np.array([3.0] + [1.0] * (len(kinds) - 1))
    types = [kinds[i] for i in rng.choice(len(kinds), size=min(n_pools, len(kinds)), replace=False,
                                          p=p / p.sum())]
    east = region == "east"
    pue = r(rng.uniform(1.22, 1.35) if east else rng.uniform(1.1, 1.25), 3)
    pools = {}
    for g in types:
        lo, hi = PRICE[g]
        price = rng.uniform(lo, hi) * (1.06 if east else 1.0)
        pools[g] = [math.exp(rng.uniform(0.0, math.log(12.0))), r(price, 2)]   # log-uniform 1..12
    return pue, pools


def pool_counts(raw: list[float], scale: float) -> list[int]:
    return [int(8 * min(32, max(1, round(w * scale)))) for w in raw]


def fit_scale(raw: list[float], target_gpus: float) -> float:
    """Scale for the relative pool sizes so the total count is near target (8..256 each)."""
    lo, hi = 1e-3, 1e3
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if sum(pool_counts(raw, mid)) < target_gpus:
            lo = mid
        else:
            hi = mid
    return hi


def build_site(rng, sid: str, city: str, cinfo: tuple, T: int, battery: bool, pue: float,
               gpus: dict) -> dict:
    lat, lon, region, carbon0 = cinfo
    east = region == "east"
    it_kw = sum(GPU_TYPES[g]["power_kw"] * p_["count"] for g, p_ in gpus.items())
    load = pue * it_kw
    # carbon: base, a midday dip, noise
    hours = np.arange(T)
    dip = np.clip(np.cos(((hours % 24) - 13.0) / 24.0 * 2 * math.pi), 0, None)
    carbon = carbon0 * (1.0 - 0.13 * dip) + rng.normal(0, 0.03, size=T)
    carbon = np.clip(carbon, max(0.1, 0.75 * carbon0), None)
    # tariff: Gansu TOU, scaled in the east; 24-long (daily) or H-long
    scale = r(rng.uniform(1.25, 1.32), 4) if east else 1.0
    day = [r(v * scale, 4) for v in TOU]
    tariff = day if rng.random() < 0.5 else [day[t % 24] for t in range(T)]
    # renewables sized to a fraction of the full load
    frac = rng.uniform(0.15, 0.5) if east else rng.uniform(0.6, 1.6)
    sol = solar_profile(T, lon, rng)
    wind = wind_profile(T, rng)
    ws = 0.85 if east else rng.uniform(0.45, 0.8)
    kw = frac * load * (ws * sol + (1 - ws) * wind)
    site = {
        "id": sid,
        "city": city,
        "pue": pue,
        "gpus": gpus,
        "grid": {"carbon_kg_per_kwh": [r(v, 4) for v in carbon], "cny_per_kwh": tariff},
        "renewables": {"kw": [r(v, 3) for v in kw], "cny_per_kwh": r(rng.uniform(0.1, 0.2), 3)},
    }
    if battery:
        cap = load * rng.uniform(0.45, 1.1)
        site["battery"] = {"capacity_kwh": r(cap, 1), "power_kw": r(cap * rng.uniform(0.25, 0.45), 1),
                           "efficiency": r(rng.uniform(0.85, 0.93), 3),
                           "initial_soc": r(rng.uniform(0.2, 0.8), 2)}
    site["_load_kw"] = load
    return site


def assign_backups(rng, sites: list[dict]) -> None:
    """Each site's backup: another site sharing the most GPU types, spread out (a site already
    backing up others counts 0.6 type less), random among the best."""
    if len(sites) < 2:
        return
    used = {s["id"]: 0 for s in sites}
    for s in sites:
        others = [o for o in sites if o is not s]
        score = np.array([len(set(s["gpus"]) & set(o["gpus"])) - 0.6 * used[o["id"]] for o in others])
        best = [o for o, sc in zip(others, score, strict=True) if sc >= score.max() - 1e-9]
        s["backup"] = best[int(rng.integers(len(best)))]["id"]
        used[s["backup"]] += 1


# --------------------------------------------------------------------------- jobs
class Placer:
    """For each (origin, type): the sites with that pool, as (rtt_ms, count)."""

    def __init__(self, sites: list[dict], lat: dict[str, dict[str, float]]):
        self.by = {}
        for o in lat:
            for g in GPU_TYPES:
                self.by[(o, g)] = sorted((2.0 * lat[o][s["city"]], s["gpus"][g]["count"])
                                         for s in sites if g in s["gpus"] and s["city"] in lat[o])
        self.largest = {g: max([s["gpus"][g]["count"] for s in sites if g in s["gpus"]], default=0)
                        for g in GPU_TYPES}

    def max_gpus(self, types) -> int:
        return max(self.largest[g] for g in types)

    def min_rtt(self, origin: str, types, gpus: int) -> float:
        return min((rtt for g in types for rtt, c in self.by[(origin, g)] if c >= gpus), default=math.inf)


def draw_jobs(rng, M: int, H: float, n_present: int, n_origins: int, ow: np.ndarray) -> dict:
    """Every random attribute of the jobs, as arrays (vectorised: fast, and stable per seed)."""
    d = {
        "submit": rng.uniform(0.0, 0.8 * H, size=M),
        "cls_u": rng.random(M),
        "sub_u": rng.random(M),
        "sub_k": rng.integers(1, 3, size=M),
        "sub_perm": rng.random((M, max(1, n_present))).argsort(axis=1),
        "gang": np.array(GANG)[rng.integers(0, len(GANG), size=M)],
        "train_g": rng.choice([4, 8, 16, 32, 64], size=M),
        "infer_g": rng.choice([1, 1, 1, 2], size=M),
        "work": np.clip(np.exp(rng.normal(math.log(2.0), 1.1, size=M)), 0.05, 48.0),
        "dl_u": rng.random(M),
        "slack": rng.uniform(1.5, 5.0, size=M),
        "org": rng.choice(n_origins, size=M, p=ow / ow.sum()),
        "data": np.clip(np.exp(rng.normal(math.log(60.0), 1.4, size=M)), 0.0, 2000.0),
        "data_small": rng.uniform(0.0, 10.0, size=M),
        "ck_u": rng.random(M),
        "ck_v": rng.choice([0.5, 1.0, 2.0], size=M),
        "rtt_u": rng.random(M),
        "rtt_v": rng.uniform(10.0, 40.0, size=M),
        "tenant": rng.integers(1, 6, size=M),
    }
    cls = np.where(d["cls_u"] < 0.12, 1, np.where(d["cls_u"] < 0.32, 2, 0))   # 1 train, 2 inference
    d["cls"] = cls
    d["gpus0"] = np.where(cls == 1, d["train_g"], np.where(cls == 2, d["infer_g"], d["gang"]))
    d["work"] = np.where(cls == 2, np.minimum(d["work"], 12.0), d["work"])
    return d


def build_jobs(d: dict, M: int, present: list[str], placer: Placer, origins: list[str]) -> list[dict]:
    submit, cls_a, sub_u, sub_k, sub_perm = d["submit"], d["cls"], d["sub_u"], d["sub_k"], d["sub_perm"]
    gpus0, work, dl_u, slack, org = d["gpus0"], d["work"], d["dl_u"], d["slack"], d["org"]
    data, data_small, ck_u, ck_v = d["data"], d["data_small"], d["ck_u"], d["ck_v"]
    rtt_u, rtt_v, tenant = d["rtt_u"], d["rtt_v"], d["tenant"]
    jobs = []
    for i in range(M):
        cls = (None, "llm-train", "inference")[int(cls_a[i])]
        types = None
        if sub_u[i] < 0.3 and len(present) > 1:
            k = min(int(sub_k[i]), len(present) - 1)
            types = [present[j] for j in sorted(sub_perm[i, :k])]
        allowed = types or present
        g = max(1, min(int(gpus0[i]), placer.max_gpus(allowed)))
        origin = origins[int(org[i])]
        w = float(work[i])
        s = r(submit[i], 3)
        job = {"id": f"j-{i + 1:05d}", "tenant": f"t{int(tenant[i])}", "submit_h": s, "origin": origin,
               "gpus": g, "work_h": r(max(w, 0.05), 3)}
        if cls == "inference":
            job["data_gb"] = r(data_small[i], 1)
        else:
            job["data_gb"] = r(data[i], 1)
        # checkpoints: always for training, never for inference, 85 % of the rest (~70 % overall)
        if cls == "llm-train" or (cls is None and ck_u[i] < 0.85):
            job["checkpoint_h"] = float(ck_v[i])
        if cls is not None:
            job["class"] = cls
        if types is not None:
            job["gpu_types"] = types
        if cls == "inference" and rtt_u[i] < 0.6:
            need = placer.min_rtt(origin, allowed, g)
            if need <= 40.0:
                job["max_rtt_ms"] = float(max(math.ceil(need), math.ceil(rtt_v[i])))
        if dl_u[i] < 0.7:
            job["deadline_h"] = r(s + slack[i] * job["work_h"], 3)
        jobs.append(job)
    return jobs


def outage_crossing_jobs(rng, jobs: list[dict], outages: list[dict], per: int, sites: dict,
                         lat: dict, origins: list[str]) -> None:
    """Turn `per` jobs per outage into long checkpointed jobs likely running when it starts.

    Each is restricted to one GPU type of the outage site (the one it holds the largest share
    of first), sized to fit its pool there, submitted 1-4 h before the outage (origin: the
    nearest consumer city), with 10-30 h of work. They replace the last jobs of the list.
    """
    if not per or not outages:
        return
    slots = list(range(max(0, len(jobs) - per * len(outages)), len(jobs)))
    total: dict[str, int] = {}
    for st in sites.values():
        for g, p in st["gpus"].items():
            total[g] = total.get(g, 0) + p["count"]
    k = 0
    for ev in outages:
        site = sites[ev["site"]]
        origin = min(origins, key=lambda o: (lat[o].get(site["city"], math.inf), o))
        # the site's types, those it holds the largest share of first (so it is the natural host)
        share = {g: site["gpus"][g]["count"] / total[g] for g in site["gpus"]}
        types = sorted(site["gpus"], key=lambda g: (-share[g], g))
        for n in range(per):
            if k >= len(slots):
                return
            j = jobs[slots[k]]
            k += 1
            g = types[n % len(types)]
            cnt = site["gpus"][g]["count"]
            gpus = int(min(cnt, rng.choice([2, 4, 8, 16])))
            s = r(max(0.0, ev["start_h"] - rng.uniform(1.0, 4.0)), 3)
            work = r(rng.uniform(10.0, 30.0), 3)
            for key in ("class", "max_rtt_ms", "deadline_h"):
                j.pop(key, None)
            j.update({"submit_h": s, "origin": origin, "gpus": gpus, "work_h": work,
                      "data_gb": r(rng.uniform(5.0, 200.0), 1), "gpu_types": [g],
                      "checkpoint_h": float(rng.choice([0.5, 1.0, 2.0]))})
            if rng.random() < 0.5:
                j["deadline_h"] = r(s + rng.uniform(2.0, 4.0) * work, 3)


# --------------------------------------------------------------------------- events
def pick_sites(rng, ids: list[str], k: int, prefer: list[str] | None = None) -> list[str]:
    """k site ids, distinct while possible; the first from `prefer` when it is non-empty."""
    out: list[str] = []
    if k <= 0 or not ids:
        return out
    if prefer:
        out.append(prefer[int(rng.integers(len(prefer)))])
    while len(out) < k:
        rest = [s for s in ids if s not in out] or ids
        out.append(rest[int(rng.integers(len(rest)))])
    return out


def build_outages(rng, k: int, H: float, sites: list[dict], min_start: float) -> list[dict]:
    ids = [s["id"] for s in sites if s.get("backup")] or [s["id"] for s in sites]
    evs = []
    for sid in pick_sites(rng, ids, k):
        dur = rng.uniform(2.0, 8.0)
        dur = min(dur, max(0.5, H - min_start - 0.01))
        lo = min(min_start, max(0.0, H - dur))
        a = r(rng.uniform(lo, max(lo, H - dur)), 2)
        b = r(min(H, a + dur), 2)
        evs.append({"type": "outage", "site": sid, "start_h": a, "end_h": b})
    return sorted(evs, key=lambda e: (e["start_h"], e["site"]))


def build_grid_caps(rng, k: int, H: float, sites: list[dict]) -> list[dict]:
    ids = [s["id"] for s in sites]
    prefer = [s["id"] for s in sites if "battery" in s]
    load = {s["id"]: s["_load_kw"] for s in sites}
    evs = []
    Hi = int(math.floor(H))
    for sid in pick_sites(rng, ids, k, prefer):
        dur = int(min(rng.integers(2, 7), max(1, Hi - 1)))
        notice = int(rng.integers(2, 25))
        # start no earlier than its notice (the announcement falls inside the run) where possible
        a = int(rng.integers(min(max(2, notice), Hi - dur), Hi - dur + 1))
        evs.append({"type": "grid_cap", "site": sid, "start_h": float(a), "end_h": float(a + dur),
                    "max_grid_kw": r(load[sid] * rng.uniform(0.15, 0.5), 1), "notice_h": float(notice)})
    return sorted(evs, key=lambda e: (e["start_h"], e["site"]))


# --------------------------------------------------------------------------- main
def generate(args) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(args.seed)
    H = float(args.hours)
    T = int(math.ceil(H))
    site_cities = choose_site_cities(rng, args.sites)
    city_names = list(BASE_CITIES) + [c for c in EXTRA_CITIES if c in site_cities]
    cinfo = {**BASE_CITIES, **EXTRA_CITIES}
    cities = {c: cinfo[c] for c in city_names}
    links = build_links(rng, cities)
    lat = latencies(city_names, links)

    n_bat = int(math.ceil(args.sites / 2)) if args.batteries else 0
    bat_idx = set(int(i) for i in rng.choice(args.sites, size=n_bat, replace=False)) if n_bat else set()
    drawn = [draw_pools(rng, cinfo[c][2]) for c in site_cities]
    present = [g for g in GPU_TYPES if any(g in pools for _, pools in drawn)]
    origins = [o for o in ORIGINS if o in cities]
    ow = np.array([ORIGINS[o] for o in origins])
    d = draw_jobs(rng, args.jobs, H, len(present), len(origins), ow)
    # pool sizes: offered GPU-hours (speed-1 work) over capacity * H near --load
    demand = float(np.sum(d["gpus0"] * d["work"]))
    raw = [w for _, pools in drawn for w, _ in pools.values()]
    counts = iter(pool_counts(raw, fit_scale(raw, demand / (args.load * H))))
    seen: dict[str, int] = {}
    sites = []
    for i, (c, (pue, pools)) in enumerate(zip(site_cities, drawn, strict=True)):
        seen[c] = seen.get(c, 0) + 1
        gpus = {g: {"count": next(counts), "cny_per_gpu_h": price} for g, (_, price) in pools.items()}
        sites.append(build_site(rng, f"{c}-{seen[c]}", c, cinfo[c], T, i in bat_idx, pue, gpus))
    assign_backups(rng, sites)

    placer = Placer(sites, lat)
    jobs = build_jobs(d, args.jobs, present, placer, origins)
    min_start = 5.0 if args.outage_jobs else 0.1 * H
    outages = build_outages(rng, args.outages, H, sites, min_start)
    caps = build_grid_caps(rng, args.grid_caps, H, sites)
    outage_crossing_jobs(rng, jobs, outages, args.outage_jobs, {s["id"]: s for s in sites}, lat, origins)

    # every job placeable (pool type, size, latency); the generator guarantees it
    for j in jobs:
        allowed = j.get("gpu_types") or list(GPU_TYPES)
        bound = j.get("max_rtt_ms", math.inf)
        assert placer.min_rtt(j["origin"], allowed, j["gpus"]) <= bound, j

    for s in sites:
        s.pop("_load_kw")
    name = args.name or f"gen-s{args.seed}-{args.sites}x{args.jobs}x{args.hours:g}"
    scen = {
        "name": name,
        "start": args.start,
        "horizon_h": H,
        "gpu_types": {g: dict(v) for g, v in GPU_TYPES.items()},
        "job_classes": {c: dict(v) for c, v in JOB_CLASSES.items()},
        "cities": {c: {"lat": v[0], "lon": v[1]} for c, v in cities.items()},
        "links": links,
        "sites": sites,
        "objective": dict(OBJECTIVE),
    }
    events = outages + caps
    if events:
        scen["events"] = events
    return scen, jobs


def write(scen: dict, jobs: list[dict], out: str, jobs_csv: bool) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    written = [out]
    if jobs_csv:
        stem = os.path.splitext(os.path.basename(out))[0]
        csv_name = f"{stem}.jobs.csv"
        csv_path = os.path.join(os.path.dirname(os.path.abspath(out)), csv_name)
        columns = CSV_COLUMNS + [c for c in ("max_wait_h", "actual_work_h") if any(c in j for j in jobs)]
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            for j in jobs:
                row = []
                for c in columns:
                    v = j.get(c)
                    if v is None:
                        row.append("")
                    elif c == "gpu_types":
                        row.append(";".join(v))
                    else:
                        row.append(v)
                w.writerow(row)
        scen = dict(scen)
        scen["jobs_file"] = csv_name
        written.append(csv_path)
    else:
        scen = dict(scen)
        # jobs before objective/events, as in MODEL.md
        tail = {k: scen.pop(k) for k in ("objective", "events") if k in scen}
        scen["jobs"] = jobs
        scen.update(tail)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(out, "w") as f:
        yaml.dump(scen, f, Dumper=dumper, sort_keys=False, default_flow_style=None, width=200)
    return written


def uncertain(scen: dict, jobs: list[dict], args) -> tuple[dict, list[dict]]:
    """Estimates, windows and forecasts as the options ask (none: the same scenario)."""
    if args.work_noise > 0 or args.estimate_bias != 0 or args.max_wait:
        jobs = make_uncertain(jobs, sigma=args.work_noise, bias=args.estimate_bias, rule=args.max_wait,
                              start=parse_start(args.start), seed=args.seed + 1_000_003)
    if args.forecast_error:
        r, c = (float(x) for x in args.forecast_error.split(","))
        scen = dict(scen)
        tail = {k: scen.pop(k) for k in ("objective", "events") if k in scen}
        scen["forecast"] = {"renewables": {"error": r, "seed": args.seed},
                            "carbon": {"error": c, "seed": args.seed + 1}}
        scen.update(tail)
    return scen, jobs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--outages", type=int, default=0, help="number of outage events")
    ap.add_argument("--grid-caps", type=int, default=0, help="number of grid_cap events")
    ap.add_argument("--batteries", action=argparse.BooleanOptionalAction, default=True,
                    help="batteries on about half the sites (default on)")
    ap.add_argument("--outage-jobs", type=int, default=0,
                    help="per outage, make this many of the jobs long checkpointed ones submitted "
                         "1-4 h before it on a GPU type of the outage site")
    ap.add_argument("--load", type=float, default=0.5,
                    help="target offered load: sum(gpus * work_h) / (all GPUs * hours), sizes the "
                         "pools (each 8..256, so the target may not be reached; default 0.5)")
    ap.add_argument("--jobs-csv", action="store_true",
                    help="write jobs to NAME.jobs.csv next to the YAML (jobs_file)")
    ap.add_argument("--name", default=None, help="scenario name (default gen-sSEED-NxMxH)")
    ap.add_argument("--start", default="2026-06-01T00:00:00+08:00")
    ap.add_argument("--work-noise", type=float, default=0.0,
                    help="sigma of ln(estimate / true work): work_h becomes the estimate, actual_work_h the truth")
    ap.add_argument("--estimate-bias", type=float, default=0.0, help="mean of ln(estimate / true work)")
    ap.add_argument("--max-wait", choices=RULES, default=None, help="give every job a max_wait_h by this rule")
    ap.add_argument("--forecast-error", default=None, metavar="R,C",
                    help="add a forecast: block, relative 24-hour errors of renewables and carbon")
    ap.add_argument("--out", required=True, help="output YAML path")
    args = ap.parse_args(argv)
    if args.sites < 1 or args.jobs < 0 or args.hours < 4:
        ap.error("need --sites >= 1, --jobs >= 0, --hours >= 4")
    if args.outages < 0 or args.grid_caps < 0 or args.outage_jobs < 0 or args.load <= 0:
        ap.error("event counts must be >= 0")
    t0 = time.perf_counter()
    scen, jobs = generate(args)
    scen, jobs = uncertain(scen, jobs, args)
    files = write(scen, jobs, args.out, args.jobs_csv)
    print(f"wrote {', '.join(files)} ({args.sites} sites, {len(jobs)} jobs, {args.hours:g} h) "
          f"in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
