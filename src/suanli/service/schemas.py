"""Request and response bodies of the REST API (pydantic v2): one declaration gives the
validation, the OpenAPI schema and the docs. Units: hours, GB, ms, CNY, kWh, kg CO2e."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATES = ("PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED")
ACTIVE = ("PLACED", "TRANSFERRING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
State = Literal["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED"]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


class JobIn(BaseModel):
    """A job as submitted: MODEL.md §1's fields but `id`, `submit_h` and `tenant` (the server
    gives the id, the clock the submit time, the token the tenant), plus `name` and `command`."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=256)
    command: str = Field(min_length=1, description="a shell command line the site's executor runs")
    gpus: int = Field(ge=1, description="a gang: one site, one type, at once")
    work_h: float = Field(gt=0, description="hours on a speed-1.0 GPU")
    gpu_types: list[str] | None = Field(default=None, min_length=1, description="allowed GPU types; default all")
    class_: str | None = Field(default=None, alias="class")
    deadline_h: float | None = Field(default=None, gt=0, description="hours after submission")
    origin: str = Field(description="the city of the job's data and users")
    data_gb: float = Field(default=0.0, ge=0)
    max_rtt_ms: float | None = Field(default=None, ge=0)
    checkpoint_h: float | None = Field(default=None, gt=0)


class Transition(BaseModel):
    from_state: str | None
    to_state: str
    at: datetime
    at_h: float
    reason: str


class UsageOut(BaseModel):
    gpu_seconds: float = 0.0
    energy_kwh: float = 0.0
    grid_kwh: float = 0.0
    renewable_kwh: float = 0.0
    carbon_kg: float = 0.0
    gpu_cny: float = 0.0
    energy_cny: float = 0.0
    transfer_cny: float = 0.0
    total_cny: float = 0.0


class JobOut(BaseModel):
    id: int
    name: str
    tenant: str
    state: State
    reason: str
    command: str
    gpus: int
    spec: dict[str, Any]
    submit_h: float
    site: str | None
    gpu_type: str | None
    start_h: float | None
    end_h: float | None
    explanation: dict[str, Any] | None
    usage: UsageOut
    checkpoint_h: float | None = Field(default=None, description="controller hour of the last checkpoint file")
    checkpoint_bytes: int | None = Field(default=None, description="the checkpoint directory's size then")
    transitions: list[Transition] = []
    created_at: datetime


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null on the last page")


class PoolOut(BaseModel):
    gpu_type: str
    count: int
    free: int
    cny_per_gpu_h: float


class SiteOut(BaseModel):
    id: str
    city: str
    up: bool
    drained: bool = False
    last_seen_at: datetime | None
    pools: list[PoolOut]
    renewables_kw_now: float
    carbon_kg_per_kwh_now: float
    cny_per_kwh_now: float


class InvoiceLine(BaseModel):
    job_id: int
    name: str
    site: str
    gpu_type: str
    gpus: int
    gpu_h: float
    energy_kwh: float
    carbon_kg: float
    gpu_cny: float
    energy_cny: float
    transfer_cny: float
    total_cny: float


class Invoice(BaseModel):
    tenant: str
    month: str
    lines: list[InvoiceLine]
    gpu_h: float
    energy_kwh: float
    carbon_kg: float
    gpu_cny: float
    energy_cny: float
    transfer_cny: float
    total_cny: float


# ----------------------------------------------------------------------------- agent protocol
class PoolState(BaseModel):
    model_config = _STRICT
    gpu_type: str
    count: int = Field(ge=0)
    busy: int = Field(ge=0)


class RunningRef(BaseModel):
    model_config = _STRICT
    job_id: int
    fence: int


class RunningIn(RunningRef):
    """A run the agent holds, with its last checkpoint (files in SUANLI_CHECKPOINT_DIR)."""
    checkpoint_at: datetime | None = Field(default=None, description="the newest file in SUANLI_CHECKPOINT_DIR")
    checkpoint_bytes: int | None = Field(default=None, ge=0, description="the checkpoint directory's size")


class Heartbeat(BaseModel):
    model_config = _STRICT
    executor: str = "local"
    pools: list[PoolState] = []
    running: list[RunningIn] = []


class HeartbeatReply(BaseModel):
    site: str
    now_h: float
    cancel: list[RunningRef] = Field(description="runs the agent must stop: cancelled or dispatched elsewhere")


class Assignment(BaseModel):
    job_id: int
    fence: int
    name: str
    command: str
    gpus: int
    gpu_type: str
    start_h: float
    end_h: float
    checkpoint_h: float | None


class Report(BaseModel):
    model_config = _STRICT
    fence: int
    state: Literal["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    exit_code: int | None = None
    reason: str = ""
    gpu_seconds: float | None = Field(default=None, ge=0)
