"""Several sources, one reading per poll.

The rule, field by field, over the latest sample of every source:
- a field several sources measure is their sum (the DCGM exporters of several nodes, several
  inverters, several battery banks): each source must measure different equipment;
- `it_kw` and `facility_kw` must be measured by some source (facility as a metric, or as a source's
  IT power times its `pue=`): checked at start-up;
- `renewable_kw` no source measures is 0 (a site without on-site generation); `battery_soc_kwh`
  no source measures is null;
- `grid_kw`, where no source measures it, is computed: facility - renewable - battery power
  (battery power > 0 discharging, 0 where no source measures it; model 124 batteries give none),
  i.e. the renewables and the battery feed the facility behind the grid meter. It may come out
  negative (export), which the controller takes only from a site that may export.
A reading is made only when every source has a sample no older than `stale_s` (metering.py): a
source that cannot be read stops the readings rather than have its share read as 0, and the
controller then plans that time on its models.

A replay (csv) carries whole readings with their own times; it is given alone.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from suanli.agent.meters.base import MeterError, MeterSource, Reading, Sample
from suanli.errors import UserError


class Composite:
    def __init__(self, sources: list[MeterSource]):
        if not sources:
            raise UserError("--meter: no source")
        if any(s.replay for s in sources) and len(sources) > 1:
            replay = next(s for s in sources if s.replay)
            raise UserError(f"--meter {replay.name}: a replay carries whole readings: give it alone")
        names = [s.name for s in sources]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise UserError(f"--meter {dup}: given twice (its power would be counted twice)")
        self.sources = sources
        may = frozenset().union(*(s.measures for s in sources))
        if "it_kw" not in may:
            raise UserError("--meter: no source measures it_kw, the IT power (give prometheus:URL of a DCGM "
                            "exporter, nvml, or csv:PATH)")
        if "facility_kw" not in may:
            raise UserError("--meter: no source measures facility_kw, the facility's power (give a prometheus "
                            "source a facility=METRIC, or pue=F to an IT source)")
        self.may = may
        self.replay = sources[0].replay

    def notes(self) -> list[str]:
        """What the operator should know about the readings these sources make (logged at start)."""
        out = []
        if "renewable_kw" not in self.may:
            out.append("no source measures renewable_kw: sent as 0 (a site without on-site generation)")
        if "grid_kw" not in self.may and not self.replay:
            out.append("grid_kw is computed: facility - renewable - battery discharge")
        return out

    @staticmethod
    def merge(at: datetime, samples: list[Sample]) -> Reading:
        """One reading at `at` from the latest sample of every source (see the module's rule)."""
        total: dict[str, float] = {}
        for s in samples:
            for k, v in s.measured().items():
                total[k] = total.get(k, 0.0) + v
        for need in ("it_kw", "facility_kw"):
            if need not in total:
                raise MeterError(f"no sample measured {need}")
        renewable = total.get("renewable_kw", 0.0)
        grid = total.get("grid_kw")
        if grid is None:
            grid = total["facility_kw"] - renewable - total.get("battery_kw", 0.0)
        try:
            return Reading(at=at, it_kw=total["it_kw"], facility_kw=total["facility_kw"], renewable_kw=renewable,
                           grid_kw=grid, battery_soc_kwh=total.get("battery_soc_kwh"))
        except ValidationError as e:
            err = e.errors()[0]
            raise MeterError(f"{err['loc'][0] if err['loc'] else 'reading'}: {err['msg']}") from None

    @staticmethod
    def whole(s: Sample) -> Reading:
        """A replayed sample, which is a whole reading."""
        return Composite.merge(s.at, [s])

    def close(self) -> None:
        for s in self.sources:
            try:
                s.close()
            except Exception:            # closing one must not keep the others open
                pass
