"""The validated scenario: the schema's parts, checked against each other, with lookups.

`Scenario.build` checks every reference MODEL.md §1 asks for (cities, sites, GPU types,
classes, backups), unique ids, `deadline_h > submit_h` and `end_h > start_h`, and raises a
ScenarioError naming the file, the field path and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime

from suanli.errors import ScenarioError
from suanli.model.network import Network, Path
from suanli.model.schema import Event, Forecast, GpuType, Job, Objective, ScenarioDoc, Site
from suanli.model.series import SeriesLike, Spec


def job_problem(doc: ScenarioDoc, j: Job) -> tuple[str, str, object] | None:
    """What is wrong with job `j` against the scenario's cities, GPU types and classes, as
    (field, message, value), or None: the checks of one job that need the rest of the scenario
    (`Scenario.build`, and `model.validate`, which streams a jobs file through them)."""
    if j.origin not in doc.cities:
        return "origin", "unknown city", j.origin
    for g in j.gpu_types or ():
        if g not in doc.gpu_types:
            return "gpu_types", "unknown GPU type", g
    if j.gpu_types is not None and not j.gpu_types:
        return "gpu_types", "must list at least one GPU type", j.gpu_types
    if j.class_ is not None and j.class_ not in doc.job_classes:
        return "class", "unknown job class", j.class_
    if j.deadline_h is not None and not j.deadline_h > j.submit_h:
        return "deadline_h", f"must be after submit_h={j.submit_h}", j.deadline_h
    return None


@dataclass
class Scenario:
    name: str
    start: datetime | None
    horizon_h: float
    gpu_types: dict[str, GpuType]
    job_classes: dict[str, dict[str, float]]
    cities: dict[str, tuple[float, float]]
    sites: dict[str, Site]                 # in file order
    jobs: list[Job]
    events: list[Event]
    objective: Objective
    network: Network
    file: str = "<scenario>"
    job_index: dict[str, int] = field(default_factory=dict)
    provinces: dict[str, str | None] = field(default_factory=dict)   # city -> province, if given
    specs: dict[str, Spec] = field(default_factory=dict)              # field path -> the spec it was
    forecast: Forecast | None = None       # what policies see of the series ahead (MODEL.md §7)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, doc: ScenarioDoc, jobs: list[Job], *, file: str, jobs_file: str | None = None,
              job_lines: list[int] | None = None) -> Scenario:
        def fail(path: str, message: str, value=..., where: str = file) -> ScenarioError:
            return ScenarioError(where, path, message, value)

        types = doc.gpu_types
        for cname, speeds in doc.job_classes.items():
            for g in speeds:
                if g not in types:
                    raise fail(f"job_classes.{cname}.{g}", "unknown GPU type", g)
        cities = doc.cities
        for i, link in enumerate(doc.links):
            for end in ("a", "b"):
                if getattr(link, end) not in cities:
                    raise fail(f"links[{i}].{end}", "unknown city", getattr(link, end))
            if link.a == link.b:
                raise fail(f"links[{i}].b", "a link must join two different cities", link.b)
        sites: dict[str, Site] = {}
        for i, s in enumerate(doc.sites):
            if s.id in sites:
                raise fail(f"sites[{i}].id", "duplicate site id", s.id)
            if s.city not in cities:
                raise fail(f"sites[{i}].city", "unknown city", s.city)
            for g in s.gpus:
                if g not in types:
                    raise fail(f"sites[{i}].gpus.{g}", "unknown GPU type", g)
            sites[s.id] = s
        for i, s in enumerate(doc.sites):
            if s.backup is not None and (s.backup not in sites or s.backup == s.id):
                raise fail(f"sites[{i}].backup", "backup must be another site of the scenario", s.backup)
        jfile = jobs_file or file
        index: dict[str, int] = {}
        for i, j in enumerate(jobs):
            where = f"{jfile}:{job_lines[i]}" if job_lines else jfile
            if j.id in index:
                raise fail(f"jobs[{i}].id", "duplicate job id", j.id, where)
            if (bad := job_problem(doc, j)) is not None:
                raise fail(f"jobs[{i}].{bad[0]}", bad[1], bad[2], where)
            index[j.id] = i
        for i, e in enumerate(doc.events):
            if e.site not in sites:
                raise fail(f"events[{i}].site", "unknown site", e.site)
            if not e.end_h > e.start_h:
                raise fail(f"events[{i}].end_h", f"must be after start_h={e.start_h}", e.end_h)
            if e.type == "grid_cap" and e.max_grid_kw is None:
                raise fail(f"events[{i}].max_grid_kw", "required for a grid_cap event")
        network = Network(list(cities),
                          [(lk.a, lk.b, lk.gbps, lk.latency_ms, lk.cny_per_gb) for lk in doc.links])
        return cls(name=doc.name, start=doc.start, horizon_h=doc.horizon_h, gpu_types=dict(types),
                   job_classes={k: dict(v) for k, v in doc.job_classes.items()},
                   cities={k: (c.lat, c.lon) for k, c in cities.items()}, sites=sites, jobs=list(jobs),
                   events=list(doc.events), objective=doc.objective, network=network, file=file,
                   job_index=index, provinces={k: c.province for k, c in cities.items()},
                   forecast=doc.forecast)

    # ------------------------------------------------------------------ jobs and speeds (§3.7)
    def with_true_work(self) -> Scenario:
        """This scenario as perfect information sees it: each job's `work_h` is its true work
        (`actual_work_h` if given) and there is no `forecast` (the offline reference, the lower
        bound). The scenario itself if no job has an `actual_work_h` and there is no forecast."""
        if self.forecast is None and all(j.actual_work_h is None for j in self.jobs):
            return self
        jobs = [j if j.actual_work_h is None
                else j.model_copy(update={"work_h": j.actual_work_h, "actual_work_h": None}) for j in self.jobs]
        return replace(self, jobs=jobs, forecast=None)

    def allowed_types(self, job: Job) -> list[str]:
        return list(job.gpu_types) if job.gpu_types else list(self.gpu_types)

    def speed(self, job: Job, gpu_type: str) -> float:
        """Work per hour of `job` on one GPU of `gpu_type`: its class's speed, else the type's."""
        if job.class_ is not None:
            s = self.job_classes[job.class_].get(gpu_type)
            if s is not None:
                return s
        return self.gpu_types[gpu_type].speed

    # ------------------------------------------------------------------ network (§5)
    def path(self, job: Job, site: str) -> Path | None:
        return self.network.path(job.origin, self.sites[site].city)

    def rtt_ms(self, job: Job, site: str) -> float:
        p = self.path(job, site)
        return math.inf if p is None else p.rtt_ms

    def transfer_h(self, job: Job, site: str) -> float:
        p = self.path(job, site)
        return math.inf if p is None else p.transfer_h(job.data_gb)

    def transfer_cny(self, job: Job, site: str) -> float:
        p = self.path(job, site)
        return math.inf if p is None else p.transfer_cny(job.data_gb)

    def latency_ok(self, job: Job, site: str) -> bool:
        return job.max_rtt_ms is None or self.rtt_ms(job, site) <= job.max_rtt_ms + 1e-9

    # ------------------------------------------------------------------ events
    def outages(self, site: str) -> list[tuple[float, float]]:
        return sorted((e.start_h, e.end_h) for e in self.events if e.type == "outage" and e.site == site)

    def grid_caps(self, site: str) -> list[Event]:
        return [e for e in self.events if e.type == "grid_cap" and e.site == site]

    # ------------------------------------------------------------------ series (§2)
    def explicit(self, series: SeriesLike | Spec, where: str) -> SeriesLike:
        """The series a field holds, as an object with `at(t)` and `array(slots)`.

        `model.load` resolves every spec when it loads a scenario (`suanli.energy.resolve`);
        a spec still here means the scenario was built without it.
        """
        if isinstance(series, Spec):
            raise ScenarioError(self.file, where, "this spec was not resolved; load the scenario with "
                                "suanli.model.load to resolve it", series.model_dump())
        return series
