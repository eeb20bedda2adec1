"""What the service counts as it works, for Prometheus (`service/metrics.py` exports it).

One `Telemetry` per controller (`Controller.telemetry`), never module-level metrics in
prometheus_client's global registry: two services in one process (the tests run several) each
count their own, and a replica counts what it did itself (process-local: Prometheus sums the
replicas). Everything here is updated in memory at the points the service already logs:

- `decided(outcome)`: a controller decision, where `Controller._decided` (and `Controller.fail`)
  write their log line: placed, placed earlier, deferred, rejected, preempted, failed. Counted as logged: a
  deferral is logged (and counted) when its reason changes, not at every tick; a step whose
  savepoint is then rolled back was still logged and counted.
- `ticked(seconds)`: the controller's scheduling tick (a pass over the sites and the pending jobs).
- `placed_after(seconds)`: a job's first placement, its wait from submit to PLACED.
- `request(method, route, status, seconds)`: an HTTP request, labelled by its route's template
  (`/v1/jobs/{job_id}`), never its raw path, whose values a caller chooses (one series each).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

OUTCOMES = ("placed", "placed earlier", "deferred", "rejected", "preempted", "suspended", "failed")

# seconds: a tick on a small network is milliseconds; one over a second is a problem worth seeing
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# seconds from submit to PLACED: a tick or two when there is room, hours when a job waits for cheap power
WAIT_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0,
                24 * 3600.0, 72 * 3600.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "(unmatched)"       # a request answered before routing (the door's 401/429/413) or by no route


class Telemetry:
    """The service's counters and histograms (prometheus_client objects in no registry)."""

    def __init__(self) -> None:
        self.decisions = Counter("suanli_decisions", "Controller decisions, as logged, by outcome",
                                 ["outcome"], registry=None)
        for o in OUTCOMES:              # every outcome from the start: rate() of a series that appears later is off
            self.decisions.labels(o)
        self.tick = Histogram("suanli_controller_tick_seconds",
                              "Wall time of one controller tick (sites, ledger, placement), seconds",
                              buckets=TICK_BUCKETS, registry=None)
        self.placement_wait = Histogram("suanli_placement_wait_seconds",
                                        "Wait from submit to a job's first placement (PLACED), seconds",
                                        buckets=WAIT_BUCKETS, registry=None)
        self.http_requests = Counter("suanli_http_requests", "HTTP requests by method, route template and status",
                                     ["method", "route", "status"], registry=None)
        self.http_seconds = Histogram("suanli_http_request_duration_seconds",
                                      "HTTP request latency by method and route template, seconds",
                                      ["method", "route"], buckets=HTTP_BUCKETS, registry=None)

    def decided(self, outcome: str) -> None:
        self.decisions.labels(outcome).inc()

    def ticked(self, seconds: float) -> None:
        self.tick.observe(seconds)

    def placed_after(self, seconds: float) -> None:
        self.placement_wait.observe(max(0.0, seconds))

    def request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        route = route or UNMATCHED
        method = method if method in METHODS else "OTHER"      # a client's made-up method: not a series each
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        for m in (self.decisions, self.tick, self.placement_wait, self.http_requests, self.http_seconds):
            for family in m.collect():
                # without the `_created` timestamps prometheus_client adds: a series each that no panel reads
                family.samples = [x for x in family.samples if not x.name.endswith("_created")]
                yield family


def route_of(scope: dict) -> str | None:
    """The template of the route that served an ASGI request (Starlette puts it in the scope)."""
    route = scope.get("route")
    return getattr(route, "path", None) if route is not None else None
