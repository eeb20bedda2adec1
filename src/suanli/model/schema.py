"""The scenario schema (MODEL.md §1), as pydantic v2 models.

Units: time in hours from the scenario's `start`; power kW; energy kWh; money CNY;
carbon kg CO2e; data GB (1e9 bytes); bandwidth Gbit/s; latency ms.

The models check types and ranges field by field; references between parts (a site's city,
a job's GPU types, ...) are checked by `model.load`, which knows the whole scenario.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from suanli.model.series import (
    ProvinceCarbonSpec,
    SolarSpec,
    Spec,
    TariffSpec,
    WindSpec,
    parse_series,
)

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True, coerce_numbers_to_str=True,
                     arbitrary_types_allowed=True, populate_by_name=True)


def _series(minimum: float | None, specs: tuple[type[Spec], ...] = ()):
    return AfterValidator(lambda raw: parse_series(raw, specs=specs, minimum=minimum))


def _split_types(raw: Any) -> Any:
    """gpu_types as a list, or in a CSV cell as 'h100;a800' (also '|' or ',' separated)."""
    if raw is None or isinstance(raw, list):
        return raw
    if isinstance(raw, str):
        text = raw.strip().strip("[]")
        for sep in ";|,":
            text = text.replace(sep, " ")
        parts = [p.strip("'\"") for p in text.split()]
        return [p for p in parts if p] or None
    return raw


NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
TariffSeries = Annotated[Any, _series(None, (TariffSpec,))]         # CNY/kWh, or a named tariff
CarbonSeries = Annotated[Any, _series(0.0, (ProvinceCarbonSpec,))]  # kg/kWh, or a province's factor
RenewableSeries = Annotated[Any, _series(0.0, (SolarSpec, WindSpec))]  # kW, or a solar/wind model


class Model(BaseModel):
    model_config = _CONFIG

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        # No field of a scenario is a boolean: `gpus: yes` is a typo, not 1.
        if isinstance(v, bool):
            raise ValueError("expected a number or text, not a boolean")
        return v


class GpuType(Model):
    power_kw: NonNegative            # board power per GPU, kW
    speed: Positive = 1.0            # work per hour relative to the reference GPU


class City(Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    province: str | None = None      # for the origin-grid carbon metrics (suanli/energy/carbon.py)


class Link(Model):
    a: str
    b: str
    gbps: Positive                   # Gbit/s
    latency_ms: NonNegative          # one way, ms
    cny_per_gb: NonNegative = 0.0


class Pool(Model):
    count: int = Field(ge=0)
    cny_per_gpu_h: NonNegative = 0.0  # rental, electricity excluded


class Grid(Model):
    carbon_kg_per_kwh: CarbonSeries = 0.0
    cny_per_kwh: TariffSeries = 0.0    # tariff for grid energy
    # the most power the site may feed into the grid, kW; 0 (the default): it cannot export, so
    # a meter reading of negative grid import is impossible (service/meters.py). Not a boolean
    # (no field of a scenario is one): the export limit of the connection, which bounds it too.
    export_kw: NonNegative = 0.0


class Renewables(Model):
    kw: RenewableSeries = 0.0          # power available, kW
    cny_per_kwh: NonNegative = 0.0     # levelised cost of renewable use


class Battery(Model):
    capacity_kwh: NonNegative = 0.0
    power_kw: NonNegative = 0.0      # charge and discharge limit, kWh per 1-h slot
    efficiency: float = Field(default=1.0, gt=0, le=1)
    initial_soc: float = Field(default=0.0, ge=0, le=1)  # fraction of capacity


class Site(Model):
    id: str
    city: str
    pue: float = Field(default=1.0, ge=1.0)
    gpus: dict[str, Pool] = Field(default_factory=dict)
    grid: Grid = Field(default_factory=Grid)
    renewables: Renewables = Field(default_factory=Renewables)
    battery: Battery | None = None
    backup: str | None = None


class Job(Model):
    id: str
    tenant: str | None = None
    submit_h: NonNegative
    gpus: int = Field(ge=1)
    work_h: Positive                 # run time on a speed-1.0 GPU
    gpu_types: Annotated[list[str] | None, BeforeValidator(_split_types)] = None
    class_: str | None = Field(default=None, alias="class")
    deadline_h: float | None = None
    origin: str
    data_gb: NonNegative = 0.0
    max_rtt_ms: NonNegative | None = None
    checkpoint_h: Positive | None = None
    max_wait_h: NonNegative | None = None       # first start by submit_h + max_wait_h (MODEL.md §3)
    actual_work_h: Positive | None = None    # the work the job really needs; work_h is then the
                                             # user's estimate, all a policy sees (MODEL.md §7)

    @property
    def true_work_h(self) -> float:
        """W_j of MODEL.md §3.7: the work the accounting holds the job to."""
        return self.work_h if self.actual_work_h is None else self.actual_work_h


class Event(Model):
    type: Literal["outage", "grid_cap"]
    site: str
    start_h: float
    end_h: float
    max_grid_kw: NonNegative | None = None   # grid_cap only
    notice_h: NonNegative | None = None      # grid_cap only: how early the policy learns of it


class Objective(Model):
    carbon_cny_per_kg: NonNegative = 0.0
    late_cny_per_gpu_h: NonNegative = 0.0
    unfinished_cny: NonNegative = 0.0
    dr_cny_per_kwh: NonNegative = 0.0
    wait_cny_per_gpu_h: NonNegative | None = None   # default: late_cny_per_gpu_h

    @model_validator(mode="after")
    def _wait_priced_like_lateness(self) -> Objective:
        if self.wait_cny_per_gpu_h is None:
            self.wait_cny_per_gpu_h = self.late_cny_per_gpu_h
        return self


class ForecastError(Model):
    """How far off a policy's view of one series is (MODEL.md §7, docs/MODEL.md §7)."""

    error: NonNegative               # relative error (standard deviation) at a 24-hour lead
    seed: int = 0


class Forecast(Model):
    """What policies see of the series ahead; a series not named here is forecast perfectly."""

    renewables: ForecastError | None = None    # sites' renewables.kw
    carbon: ForecastError | None = None        # sites' grid.carbon_kg_per_kwh


class ScenarioDoc(Model):
    """The scenario file as written (jobs may still be in `jobs_file`)."""

    name: str = "scenario"
    description: str | None = None
    start: datetime | None = None
    horizon_h: Positive
    gpu_types: dict[str, GpuType] = Field(min_length=1)
    job_classes: dict[str, dict[str, Positive]] = Field(default_factory=dict)
    cities: dict[str, City] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    sites: list[Site] = Field(min_length=1)
    jobs: list[Job] | None = None
    jobs_file: str | None = None
    events: list[Event] = Field(default_factory=list)
    objective: Objective = Field(default_factory=Objective)
    forecast: Forecast | None = None
