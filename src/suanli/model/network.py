"""The network (MODEL.md §5): least-latency paths between cities, rtt, transfer time and cost.

Cities and links form an undirected graph. The path from o to c is the one with least total
latency; ties go to the greater bottleneck bandwidth, then to the lower cost. That
lexicographic order is not monotone under path extension (a wider path can cost more), so
one Dijkstra over (latency, -width, cost) labels can pick wrong. Instead, per origin:
1. least latencies with networkx's Dijkstra;
2. the "tight" subgraph of directed edges u->v with d(u) + latency = d(v): its paths from
   the origin are exactly the least-latency paths;
3. the widest bottleneck to each city within it: the largest bandwidth w such that the city
   is still reachable using tight edges of at least w;
4. the cheapest path within the tight edges of at least that width (its bottleneck is then w).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

_REL = 1e-9   # float noise allowed when comparing sums of latencies


@dataclass(frozen=True)
class Path:
    latency_ms: float          # one way
    bottleneck_gbps: float     # inf within one city
    cny_per_gb: float          # summed along the path
    cities: tuple[str, ...]

    @property
    def rtt_ms(self) -> float:
        return 2.0 * self.latency_ms

    def transfer_h(self, data_gb: float) -> float:
        """Hours to move `data_gb` GB over the path's bottleneck (0 within one city)."""
        if len(self.cities) == 1 or data_gb <= 0:
            return 0.0
        return data_gb * 8.0 / self.bottleneck_gbps / 3600.0

    def transfer_cny(self, data_gb: float) -> float:
        return data_gb * self.cny_per_gb


class Network:
    """Best paths between cities, computed lazily per origin and cached."""

    def __init__(self, cities: list[str], links: list[tuple[str, str, float, float, float]]):
        """links: (a, b, gbps, latency_ms, cny_per_gb). Parallel links: the best one by the tie rule."""
        self.graph = nx.Graph()
        self.graph.add_nodes_from(cities)
        for a, b, gbps, lat, cost in links:
            new = {"gbps": gbps, "latency_ms": lat, "cny_per_gb": cost}
            old = self.graph.get_edge_data(a, b)
            if old is None or (lat, -gbps, cost) < (old["latency_ms"], -old["gbps"], old["cny_per_gb"]):
                self.graph.add_edge(a, b, **new)
        self._cache: dict[str, dict[str, Path]] = {}

    def paths_from(self, origin: str) -> dict[str, Path]:
        """Best path from `origin` to every reachable city (unreachable cities are absent)."""
        cached = self._cache.get(origin)
        if cached is not None:
            return cached
        g = self.graph
        dist = nx.single_source_dijkstra_path_length(g, origin, weight="latency_ms")
        tight = nx.DiGraph()
        tight.add_nodes_from(dist)
        for u, v, data in g.edges(data=True):
            for x, y in ((u, v), (v, u)):
                if x in dist and y in dist and abs(dist[x] + data["latency_ms"] - dist[y]) <= _REL * max(
                        1.0, dist[y]) and dist[x] <= dist[y]:
                    tight.add_edge(x, y, **data)
        widths = sorted({d["gbps"] for _, _, d in tight.edges(data=True)}, reverse=True)
        width: dict[str, float] = {origin: math.inf}
        for w in widths:               # widest bottleneck: first width at which a city is reachable
            sub = tight.edge_subgraph([(x, y) for x, y, d in tight.edges(data=True) if d["gbps"] >= w])
            if origin in sub:
                for city in nx.descendants(sub, origin):
                    width.setdefault(city, w)
        out: dict[str, Path] = {origin: Path(0.0, math.inf, 0.0, (origin,))}
        for w in widths:
            targets = [c for c, cw in width.items() if cw == w]
            if not targets:
                continue
            sub = tight.edge_subgraph([(x, y) for x, y, d in tight.edges(data=True) if d["gbps"] >= w])
            costs, hops = nx.single_source_dijkstra(sub, origin, weight="cny_per_gb")
            for city in targets:
                out[city] = Path(dist[city], w, costs[city], tuple(hops[city]))
        self._cache[origin] = out
        return out

    def path(self, origin: str, city: str) -> Path | None:
        return self.paths_from(origin).get(city)
