"""Request and response bodies of the REST API (pydantic v2): one declaration gives the
validation, the OpenAPI schema and the docs. Units: hours, GB, ms, CNY, kWh, kg CO2e."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from suanli.service.meters import MAX_KW, MAX_READINGS

STATES = ("PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED")
ACTIVE = ("PLACED", "TRANSFERRING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
State = Literal["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED"]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# A wall time out: the database stores UTC, but SQLite hands it back without an offset, and a
# time without one is not the RFC 3339 `date-time` the schema promises (schemathesis found it).
UtcTime = Annotated[datetime, AfterValidator(_utc)]

# Bounds on numbers that reach the database or the arithmetic: without them a huge integer
# overflows a column (SQLite: OverflowError, PostgreSQL `integer` is 32-bit: DataError) and a
# huge float turns into inf in a sum, which JSON cannot carry; each answered 500 (schemathesis).
INT32_MAX = 2**31 - 1          # ids, fences and GPU counts are `integer` columns
INT64_MAX = 2**63 - 1          # checkpoint sizes are `bigint`
MAX_HOURS = 1e5                # hours of work, deadlines, checkpoints: 11 years, beyond any job
MAX_GPUS = 1_000_000           # GPUs of one job or pool: beyond any site
MAX_GPU_KW = 5.0               # one GPU board's power, kW: beyond any (an H100 SXM draws 0.7)
Id = Annotated[int, Field(ge=1, le=INT32_MAX)]
Fence = Annotated[int, Field(ge=0, le=INT32_MAX)]
JobIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="a job id")]
CursorQuery = Annotated[int | None, Query(ge=0, le=INT32_MAX, description="the `next_cursor` of the last page")]


MIN_CHECKPOINT_H = 1 / 60      # a checkpoint at most once a minute: 5e-324 h stalled the controller
MAX_NAME = 256                 # a job's name, class, origin, a GPU type: short text, no control characters
MAX_COMMAND = 65536            # a shell command line (a script belongs in the job's files)
MAX_BATCH = 1000               # jobs in one POST /v1/jobs/batch
IDEMPOTENCY_KEY = r"^[\x20-\x7e]{1,256}$"     # printable ASCII: a header value, logged as it is


def control_chars(text: str, allowed: str = "") -> str | None:
    """The first control character (Unicode category Cc, NUL included) in `text` that is not in
    `allowed`, as its repr; None if there is none."""
    for ch in text:
        if (ch < " " or "\x7f" <= ch <= "\x9f") and ch not in allowed:
            return repr(ch)
    return None


def _plain(text: str, allowed: str = "") -> str:
    bad = control_chars(text, allowed)
    if bad is not None:
        raise PydanticCustomError("control_character", "a control character {char} is not allowed here",
                                  {"char": bad})
    return text


PlainText = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_plain)]


class JobIn(BaseModel):
    """A job as submitted: MODEL.md §1's fields but `id`, `submit_h` and `tenant` (the server
    gives the id, the clock the submit time, the token the tenant), plus `name` and `command`.

    Checked here with the scenario loader's rules (model/schema.py: finite numbers, ranges) and
    what a real job needs: bounded sizes, no control characters in a name, class, origin or GPU
    type (a command may hold a newline or a tab, never a NUL), a checkpoint interval of at least
    a minute."""

    model_config = _STRICT
    name: PlainText
    command: str = Field(min_length=1, max_length=MAX_COMMAND,
                         description="a shell command line the site's executor runs")
    gpus: int = Field(ge=1, le=MAX_GPUS, description="a gang: one site, one type, at once")
    work_h: float = Field(gt=0, le=MAX_HOURS, description="hours on a speed-1.0 GPU")
    gpu_types: list[PlainText] | None = Field(default=None, min_length=1, max_length=256,
                                              description="allowed GPU types; default all")
    class_: PlainText | None = Field(default=None, alias="class")
    deadline_h: float | None = Field(default=None, gt=0, le=MAX_HOURS, description="hours after submission")
    origin: PlainText = Field(description="the city of the job's data and users")
    data_gb: float = Field(default=0.0, ge=0, le=1e9)
    max_rtt_ms: float | None = Field(default=None, ge=0, le=1e6)
    checkpoint_h: float | None = Field(default=None, ge=MIN_CHECKPOINT_H, le=MAX_HOURS,
                                       description="hours between checkpoints; at least one minute")
    max_wait_h: float | None = Field(default=None, ge=0, le=MAX_HOURS,
                                     description="hours the job may wait for a cheaper or cleaner start after "
                                                 "submission (MODEL.md §3; waiting past it is priced at the "
                                                 "network's wait_cny_per_gpu_h); default: the tenant's default, "
                                                 "else 0: start as soon as it can")

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        return _plain(v, allowed="\t\n\r")

    @field_validator("gpus", "work_h", "deadline_h", "data_gb", "max_rtt_ms", "checkpoint_h", "max_wait_h",
                     mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        # as in the scenario loader: `gpus: true` is a typo, not 1
        if isinstance(v, bool):
            raise PydanticCustomError("bool_number", "expected a number, not a boolean")
        return v


MAX_QUOTES = 4                 # windows in one quote: each is a run of the policy over the ledger
DEFAULT_WINDOWS = (0.0, 6.0, 24.0)


class QuoteIn(JobIn):
    """A job to price, not to submit: a `JobIn` whose `name` and `command` may be left out, and
    the `windows` (values of `max_wait_h`, hours) to price it under; default 0, 6 and 24 h. The
    job's own `max_wait_h`, if given, is one of them."""
    name: PlainText = "quote"
    command: str = Field(default="true", min_length=1, max_length=MAX_COMMAND)
    windows: list[Annotated[float, Field(ge=0, le=MAX_HOURS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_QUOTES, description="max_wait_h values to price, hours")


class QuoteOption(BaseModel):
    max_wait_h: float
    placed: bool                     # False: the policy would not place it now (see `reason`)
    reason: str = ""
    site: str | None = None
    gpu_type: str | None = None
    start: UtcTime | None = None
    start_h: float | None = None
    end_h: float | None = None
    cost_cny: float | None = None    # what the run would be billed (GPU, energy, transfer), alone on its site
    carbon_kg: float | None = None   # its grid carbon, alone on its site
    policy_cny: float | None = None  # the policy's price of the run: the sum of `parts` (delay, room... included)
    parts: dict[str, float] = Field(default_factory=dict)


class QuoteOut(BaseModel):
    now_h: float
    policy: str
    refused: str | None = None       # why a submit of this job would be refused now (quota, budget)
    options: list[QuoteOption]


class BatchItem(JobIn):
    """A job of a batch, with its own idempotency key (the `Idempotency-Key` header of a single submit)."""
    key: str | None = Field(default=None, pattern=IDEMPOTENCY_KEY, description="idempotency key of this job")


class BatchIn(BaseModel):
    model_config = _STRICT
    jobs: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class Transition(BaseModel):
    from_state: str | None
    to_state: str
    at: UtcTime
    at_h: float
    reason: str


LEDGER_FIELDS = ("gpu_seconds", "energy_kwh", "grid_kwh", "renewable_kwh", "carbon_kg", "gpu_cny", "energy_cny",
                 "transfer_cny", "total_cny")     # summed from the usage ledger's columns of the same names


class UsageOut(BaseModel):
    """A job's metered usage (the ledger's runs), plus, while it runs, the run so far (`estimated`).
    Energy is the site's load, PUE included: `grid_kwh + renewable_kwh + battery_kwh` (MODEL.md §4;
    renewables are solar and wind used directly, the battery's discharge is counted apart)."""
    gpu_seconds: float = 0.0
    energy_kwh: float = 0.0
    grid_kwh: float = 0.0
    renewable_kwh: float = 0.0
    battery_kwh: float = 0.0
    carbon_kg: float = 0.0
    gpu_cny: float = 0.0
    energy_cny: float = 0.0
    transfer_cny: float = 0.0
    total_cny: float = 0.0
    estimated: bool = Field(default=False, description="true: it holds the running run so far, priced as it would "
                                                       "be metered now (metering.price_segment); not billed yet")


OUTPUT_TAIL_BYTES = 1024 * 1024   # the most of a run's output the service keeps: its last MiB


class RunOutputOut(BaseModel):
    """Where a run's output lies on its site, and how much of it the service holds."""
    fence: int
    site: str
    path: str                        # the file on the site (the agent's job directory)
    size_bytes: int                  # the file's size when the agent last uploaded it
    kept_bytes: int                  # the bytes the service holds: the file's last ones
    uploaded_at: UtcTime | None = None


class JobLogs(BaseModel):
    """A run's output (`GET /v1/jobs/{id}/logs`): the last `OUTPUT_TAIL_BYTES` of it as text."""
    job_id: int
    fence: int | None                # the run shown (None: no run has reported its output yet)
    runs: list[RunOutputOut]         # every run of the job, oldest first
    truncated: bool = False          # True: the text is the file's end only
    text: str = ""                   # UTF-8, undecodable bytes replaced


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
    pieces: list[list[float]] | None = Field(
        default=None, description="a plan in pieces being followed: its later pieces [start_h, end_h) on the same "
                                  "pool; the run [start_h, end_h) is its first, and stops at end_h (suspended)")
    pieces_done: list[list[float]] = Field(
        default_factory=list, description="the pieces of plans in pieces it ran, each stopped at its end (suspended): "
                                          "[start_h, end_h) of each run, oldest first (one job's view only)")
    suspended: bool = Field(default=False, description="true: suspended at its piece's end, it waits (PENDING or "
                                                       "PLACED) to resume from its checkpoint")
    stops: bool = Field(default=False, description="its run ends in a planned stop: not done by end_h, it stops "
                                                   "there keeping its checkpoints and its rest is planned again")
    transitions: list[Transition] = []
    outputs: list[RunOutputOut] = Field(default_factory=list, description="where each run's output lies (one job's "
                                                                          "view only; `suanli logs` prints it)")
    created_at: UtcTime


class BatchOut(BaseModel):
    jobs: list[JobOut] = Field(description="in the order submitted")
    created: int = Field(description="how many of them are new (the others: an earlier submit with the same key)")


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
    last_seen_at: UtcTime | None
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
    energy_basis: Literal["metered", "modelled"] = Field(
        default="modelled", description="where the line's energy and carbon come from: the site's meters, or the "
                                        "network file's models (the site has no readings covering the run, or not yet)")
    kind: Literal["run", "true-up"] = Field(
        default="run", description="a run, or the true-up of a run of a closed month: its energy re-priced from "
                                   "the meters, less what that month billed")


class Invoice(BaseModel):
    """A tenant's month: the totals of all its lines, and one page of the lines (`line_count` in
    all; `next_cursor`, when more follow, is the `cursor` of the next page)."""
    tenant: str
    month: str
    lines: list[InvoiceLine]
    line_count: int = 0
    next_cursor: int | None = None
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
    gpu_type: str = Field(max_length=256)
    count: int = Field(ge=0, le=MAX_GPUS)
    busy: int = Field(ge=0, le=MAX_GPUS)


class RunningRef(BaseModel):
    model_config = _STRICT
    job_id: Id
    fence: Fence


class RunningIn(RunningRef):
    """A run the agent holds, with its last checkpoint (files in SUANLI_CHECKPOINT_DIR)."""
    checkpoint_at: datetime | None = Field(default=None, description="the newest file in SUANLI_CHECKPOINT_DIR")
    checkpoint_bytes: int | None = Field(default=None, ge=0, le=INT64_MAX,
                                         description="the checkpoint directory's size")
    gpu_kw: float | None = Field(default=None, ge=0, le=MAX_GPUS * MAX_GPU_KW,
                                 description="the run's GPUs' mean power so far, as measured (kW): bills of the runs "
                                             "beside it share the site's meter by it while it runs")


class Heartbeat(BaseModel):
    model_config = _STRICT
    executor: str = Field(default="local", max_length=256)
    instance: str | None = Field(default=None, max_length=64,
                                 description="the agent process's id, new at each start: a new one means the agent "
                                             "restarted, and runs it does not list are lost")
    pools: list[PoolState] = []
    running: list[RunningIn] = []


class HeartbeatReply(BaseModel):
    site: str
    now_h: float
    cancel: list[RunningRef] = Field(description="runs the agent must stop: cancelled or dispatched elsewhere")


class Assignment(BaseModel):
    job_id: int
    fence: int
    tenant_id: int = Field(description="the job's tenant: a root agent runs the job under a uid of this tenant")
    name: str
    command: str
    gpus: int
    gpu_type: str
    start_h: float
    end_h: float
    checkpoint_h: float | None
    resume_bytes: int | None = Field(default=None, description="size of the stored checkpoint to download "
                                     "(GET .../checkpoint) before starting; None: start afresh")
    resume_from: str | None = Field(default=None, description="the site that made that checkpoint")


class Report(BaseModel):
    model_config = _STRICT
    fence: Fence
    state: Literal["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    exit_code: int | None = Field(default=None, ge=-(2**31), le=INT32_MAX)
    reason: str = Field(default="", max_length=4096)
    gpu_seconds: float | None = Field(default=None, ge=0, le=MAX_HOURS * 3600 * MAX_GPUS)
    gpu_kwh: float | None = Field(default=None, ge=0, le=MAX_HOURS * MAX_GPUS * MAX_GPU_KW,
                                  description="the run's GPU energy as measured (NVML), kWh: bills share the "
                                              "site's meter by it")
    log_tail: str = Field(default="", max_length=4096, description="the end of a failed run's log")
    output_path: str = Field(default="", max_length=4096,
                             description="where the run's output (stdout and stderr) is written on the site")


class RunEnergy(BaseModel):
    """A run's GPUs' mean power as the agent measured it, sent after it stopped the run (cancelled,
    preempted, moved): the run's ledger row, made when the controller stopped it, is shared from
    the meters by it (service/bills.py)."""
    model_config = _STRICT
    fence: Fence
    gpu_kw: float = Field(ge=0, le=MAX_GPUS * MAX_GPU_KW,
                          description="the run's GPUs' mean power from its start until the agent stopped it, kW")


class RunEnergyOut(BaseModel):
    job_id: int
    fence: int
    gpu_kwh: float = Field(description="the run's GPU energy on the ledger: the mean power times its length there")
    energy_basis: str = Field(description="the run's ledger row: modelled until the meters cover it")


# ----------------------------------------------------------------------------- errors
class Problem(BaseModel):
    """Every refusal: one line naming the field and the value (`gpus: ... (got 0)`)."""
    detail: str


# Declared for every operation, so the published schema says what a refusal looks like (without
# it FastAPI documents its own list-shaped 422, which this service never sends).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": what} for code, what in (
        (400, "bad input"), (401, "missing or unknown token"), (403, "not allowed for this token"),
        (404, "not found (or another tenant's)"), (409, "conflict with the job's state"),
        (413, "request body too large"), (415, "unsupported Content-Type"),
        (422, "invalid field (one line naming it and the value)"),
        (429, "rate limit: retry after the Retry-After header's seconds"),
        (503, "overloaded or the database is away: retry after the Retry-After header's seconds"))}


# ----------------------------------------------------------------------------- demand response
class GridCapIn(BaseModel):
    """A demand-response notice: the site draws at most `max_grid_kw` from the grid over
    [start, end); the scheduler prices any excess at the objective's `dr_cny_per_kwh`."""
    model_config = _STRICT
    site: str = Field(max_length=128)
    start: datetime | None = Field(default=None, description="default: now")
    end: datetime
    max_grid_kw: float = Field(ge=0, le=1e9)
    reason: str = Field(default="", max_length=1024)


class GridCapOut(BaseModel):
    id: int
    site: str
    start_h: float
    end_h: float
    start: UtcTime
    end: UtcTime
    max_grid_kw: float
    reason: str
    source: Literal["operator", "network", "utility"]
    signal_id: str | None = Field(default=None, description="a utility signal's own id")
    sender: str | None = Field(default=None, description="who sent a utility signal")


SIGNAL_ID = r"^[A-Za-z0-9._:/-]{1,128}$"       # a utility's own event id: logged and shown as it is


class GridSignalIn(BaseModel):
    """A utility's demand-response signal relayed over the API (`POST /v1/sites/{site}/grid-signals`):
    the site draws at most `max_grid_kw` from the grid from `start` (default now) until `end`, its
    expiry. Sent again with the same `signal_id`, it is renewed or changed: the new `end` and
    `max_grid_kw` replace the old (an `end` now or past ends it early)."""
    model_config = _STRICT
    signal_id: str = Field(pattern=SIGNAL_ID, description="the signal's id at its sender (letters, digits, ._:/-)")
    sender: PlainText = Field(max_length=128, description="who sent it, e.g. the grid company's dispatch centre")
    max_grid_kw: float = Field(ge=0, le=MAX_KW)
    start: AwareDatetime | None = Field(default=None, description="default: now")
    end: AwareDatetime = Field(description="the signal's expiry; at most 7 days ahead")
    reason: str = Field(default="", max_length=1024)


class DemandStop(BaseModel):
    job_id: int
    fence: int
    kw: float = Field(description="the run's GPUs x board power x PUE, kW")
    at: UtcTime


class DemandEventOut(BaseModel):
    """A demand-response event (docs/ENERGY.md "Demand response"): the site's metered grid import
    over its cap from `start` (the first reading over) to `end` (null while open)."""
    id: int
    site: str
    open: bool
    cap_source: Literal["operator", "network", "utility"]
    cap_id: int | None
    max_grid_kw: float
    start: UtcTime
    detected_at: UtcTime
    end: UtcTime | None
    end_reason: str
    duration_s: float | None
    peak_grid_kw: float
    peak_over_kw: float
    kwh_above: float = Field(description="metered grid import above the cap over the event, kWh")
    stopped: list[DemandStop]
    note: str


# ----------------------------------------------------------------------------- metered energy
Kw = Annotated[float, Field(ge=-MAX_KW, le=MAX_KW)]     # 10 GW, beyond any site


class MeterReadingIn(BaseModel):
    """One meter reading (service/meters.py; docs/ENERGY.md "Meter readings"): powers in kW at `at`
    (ISO 8601 with its UTC offset); `grid_kw` is import, negative for export; `battery_soc_kwh`
    the battery's charge (kWh) or null. What is physically impossible is refused by meters.check."""

    model_config = _STRICT
    at: AwareDatetime
    it_kw: Kw
    facility_kw: Kw
    renewable_kw: Kw
    grid_kw: Kw
    battery_soc_kwh: Kw | None = None


class MeterBatchIn(BaseModel):
    model_config = _STRICT
    readings: list[MeterReadingIn] = Field(min_length=1, max_length=MAX_READINGS)


class MeterBatchOut(BaseModel):
    accepted: int          # readings stored
    duplicates: int        # readings already stored (or twice in the batch) with the same values: ignored
    hours: int             # hourly roll-ups recomputed


class MeasuredHour(BaseModel):
    it_kwh: float
    facility_kwh: float
    renewable_kwh: float
    grid_kwh: float        # imported
    export_kwh: float      # fed into the grid
    carbon_kg: float       # grid import × the slot's carbon factor
    covered_s: float       # seconds of the hour some reading's power held for
    readings: int          # readings taken in the hour


class BilledHour(BaseModel):
    """What a metered hour's facility energy and carbon went to (service/bills.py): the site's runs,
    billed from the meter, and the idle share, the rest (the two add up to `measured`)."""
    runs_kwh: float
    idle_kwh: float
    runs_carbon_kg: float
    idle_carbon_kg: float
    settled: bool = Field(description="no run in the hour still waits to be billed from the meters (running, or "
                                      "modelled until they cover it): until then its share shows as idle")


class ForecastHour(BaseModel):
    renewable_kw: float
    carbon_kg_per_kwh: float


class EnergyHour(BaseModel):
    at: UtcTime            # the hour's start (UTC)
    measured: MeasuredHour | None
    forecast: ForecastHour | None
    billed: BilledHour | None = None     # where the hour is measured
