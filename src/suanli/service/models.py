"""The database tables (SQLAlchemy 2 typed models). Migrations: `migrations/versions/`.

Times: `*_at` columns are UTC wall-clock datetimes; `*_h` columns are controller hours (hours
since the service epoch, `meta.epoch`, which plays the role of the network's hour 0).
Money CNY, energy kWh, carbon kg CO2e.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the database: `epoch` (ISO UTC time of controller hour 0)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    quota: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)     # GPU type -> GPUs; {} = unlimited
    budget_cny: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    """An API token, stored as its SHA-256 (the token itself is shown once, at creation)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))                      # admin | tenant | site
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    site: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    command: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)           # MODEL.md §1 fields, deadline_h absolute
    gpus: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    submit_h: Mapped[float] = mapped_column(Float)
    remaining_work: Mapped[float] = mapped_column(Float)       # reference-GPU hours still to do
    hosted: Mapped[list[str]] = mapped_column(JSON, default=list)  # sites that hold its data
    site: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    gpu_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_h: Mapped[float | None] = mapped_column(Float, nullable=True)    # planned (PLACED) or actual
    end_h: Mapped[float | None] = mapped_column(Float, nullable=True)      # planned, then actual
    fence: Mapped[int] = mapped_column(Integer, default=0)    # dispatch number: stale reports are refused
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # the stored checkpoint (service/checkpoints.py): the hour it was made, its archive's bytes, its site
    checkpoint_h: Mapped[float | None] = mapped_column(Float, nullable=True)
    checkpoint_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checkpoint_site: Mapped[str | None] = mapped_column(String(128), nullable=True)
    move_cny: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # checkpoint moves not yet billed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")    # runs that failed so far
    preempted_from: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the site an outage cut it from
    # a suspend-resume plan being followed (controller.py, "Suspend and resume"): the later pieces
    # [start_h, end_h) on the same pool after the run [start_h, end_h) above, which then stops at
    # its end_h keeping its checkpoints; None for a run that goes on to its end
    pieces: Mapped[list[list[float]] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # the run [start_h, end_h) ends in a planned stop (controller.py, "Planned stops"): a job not done
    # by end_h stops there keeping its checkpoints, and its rest is planned again (no overrun review)
    stops: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # reference-GPU hours its earlier runs kept (whole checkpoints), all of them: `remaining_work`
    # is the estimate less that, which says nothing once a run outlives its estimate
    done_work: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Transition(Base):
    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    at_h: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")


class SiteAgent(Base):
    """A site's agent as last heard of; a site is up while its agent heartbeats."""

    __tablename__ = "site_agents"
    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)     # executor, pools as it reports them


class Usage(Base):
    """The usage ledger: one row per finished run segment (`kind` "run"), and one per true-up of a
    run whose month had closed (`kind` "true-up", `adjusts` the run's row: the energy figures are
    the difference the meters made; service/bills.py).

    Quantities come from the agent's report and the controller's clock; prices from
    `suanli.accounting` (service/metering.py) when the run ends (`energy_basis` "modelled"), and
    from the site's meters once they cover the run (`energy_basis` "metered": the row is re-priced
    once, in place while its month is open). `gpu_kwh`: the run's GPU energy as the agent measured
    it (NVML), or None."""

    __tablename__ = "usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    fence: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(128))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer)
    start_h: Mapped[float] = mapped_column(Float)
    end_h: Mapped[float] = mapped_column(Float)
    month: Mapped[str] = mapped_column(String(7), index=True)          # YYYY-MM (UTC) of the end
    gpu_seconds: Mapped[float] = mapped_column(Float)
    energy_kwh: Mapped[float] = mapped_column(Float)                   # site load, PUE applied
    grid_kwh: Mapped[float] = mapped_column(Float)
    renewable_kwh: Mapped[float] = mapped_column(Float)
    carbon_kg: Mapped[float] = mapped_column(Float)
    gpu_cny: Mapped[float] = mapped_column(Float)
    energy_cny: Mapped[float] = mapped_column(Float)
    transfer_cny: Mapped[float] = mapped_column(Float)
    total_cny: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(8), default="run", server_default="run")        # run | true-up
    energy_basis: Mapped[str] = mapped_column(String(8), default="modelled", server_default="modelled")
    adjusts: Mapped[int | None] = mapped_column(ForeignKey("usage.id", name="fk_usage_adjusts"), nullable=True)
    gpu_kwh: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (UniqueConstraint("job_id", "fence", "kind", name="uq_usage_job_fence_kind"),
                      UniqueConstraint("adjusts", name="uq_usage_adjusts"))


class UsageHour(Base):
    """What a run's ledger row took from one UTC hour of its site's meter (service/bills.py): the
    facility energy (kWh), the grid import within it (kWh), its carbon (kg CO2e) and its price
    (CNY). Written once, when the row is trued up; the site's idle share of the hour is the
    meter's roll-up less the sum of these."""

    __tablename__ = "usage_hours"
    __table_args__ = (Index("ix_usage_hours_site_hour", "site", "hour_s"),)
    usage_id: Mapped[int] = mapped_column(ForeignKey("usage.id"), primary_key=True)
    hour_s: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    site: Mapped[str] = mapped_column(String(128))
    facility_kwh: Mapped[float] = mapped_column(Float)
    grid_kwh: Mapped[float] = mapped_column(Float)
    carbon_kg: Mapped[float] = mapped_column(Float)
    energy_cny: Mapped[float] = mapped_column(Float)


class GridCap(Base):
    """A demand-response notice (MODEL.md §4 `grid_cap`): from `start_h` to `end_h` (controller
    hours) the site should draw at most `max_grid_kw` from the grid. Announced by the operator
    (`suanli admin grid-cap`, `POST /v1/admin/grid-caps`); the policy sees it from then on."""

    __tablename__ = "grid_caps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128), index=True)
    start_h: Mapped[float] = mapped_column(Float)
    end_h: Mapped[float] = mapped_column(Float)
    max_grid_kw: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # who sent it: "operator" (the admin API or CLI) or "utility" (a demand-response signal relayed
    # over the API, `POST /v1/sites/{site}/grid-signals`, with the signal's own id and sender)
    source: Mapped[str] = mapped_column(String(16), default="operator", server_default="operator")
    signal_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    sender: Mapped[str | None] = mapped_column(String(128), nullable=True)
    __table_args__ = (UniqueConstraint("site", "signal_id", name="uq_grid_caps_site_signal"),)


class DemandEvent(Base):
    """A demand-response event (service/demand.py): a site's metered grid import over its active
    grid cap, from the reading that showed it over to the one that showed it under (or the cap's
    end). Times `*_at` UTC; power kW; `kwh_above` the metered import above the cap, kWh.

    `stopped`: the checkpointing runs stopped for it, [{"job_id", "fence", "kw", "at"}] (`kw`:
    the run's GPUs x board power x PUE; `at`: ISO time of the stop). `last_at_us`/`last_grid_kw`:
    the newest reading integrated into `kwh_above` (µs since 1970, as in meter_readings)."""

    __tablename__ = "demand_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128), index=True)
    cap_source: Mapped[str] = mapped_column(String(16))             # network | operator | utility
    cap_id: Mapped[int | None] = mapped_column(Integer, nullable=True)   # grid_caps.id (None: the network file's)
    max_grid_kw: Mapped[float] = mapped_column(Float)                # the binding cap (the lowest active)
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))            # the first reading over
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    end_reason: Mapped[str] = mapped_column(Text, default="")
    peak_grid_kw: Mapped[float] = mapped_column(Float)
    peak_over_kw: Mapped[float] = mapped_column(Float)
    kwh_above: Mapped[float] = mapped_column(Float, default=0.0)
    last_at_us: Mapped[int] = mapped_column(BigInteger)
    last_grid_kw: Mapped[float] = mapped_column(Float)
    stopped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")


class MeterReading(Base):
    """A site's meter reading (service/meters.py), kept `suanli serve --meter-retention-days`.

    `at_us`: microseconds since 1970-01-01 UTC (an integer: exact, so a retried reading is the
    same key on SQLite and PostgreSQL alike). Power in kW at that instant; `grid_kw` is import
    from the grid, negative for export (only where the network file gives the site `export_kw`);
    `battery_soc_kwh` the battery's state of charge, kWh, or None where the site has no meter of it."""

    __tablename__ = "meter_readings"
    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    at_us: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False, index=True)
    it_kw: Mapped[float] = mapped_column(Float)
    facility_kw: Mapped[float] = mapped_column(Float)
    renewable_kw: Mapped[float] = mapped_column(Float)
    grid_kw: Mapped[float] = mapped_column(Float)
    battery_soc_kwh: Mapped[float | None] = mapped_column(Float, nullable=True)


class MeterHour(Base):
    """A site's metered energy over one UTC hour (service/meters.py), kept for good: each batch
    of readings adds the change it makes to the hour (its readings' holds, and the holds they cut).

    `hour_s`: the hour's start, seconds since 1970-01-01 UTC. Energy kWh (`grid_kwh` imported,
    `export_kwh` fed into the grid), carbon kg CO2e, `covered_s` the seconds of the hour some
    reading's power held for, `readings` the readings taken in the hour."""

    __tablename__ = "meter_hours"
    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    hour_s: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    it_kwh: Mapped[float] = mapped_column(Float)
    facility_kwh: Mapped[float] = mapped_column(Float)
    renewable_kwh: Mapped[float] = mapped_column(Float)
    grid_kwh: Mapped[float] = mapped_column(Float)
    export_kwh: Mapped[float] = mapped_column(Float)
    carbon_kg: Mapped[float] = mapped_column(Float)
    covered_s: Mapped[float] = mapped_column(Float)
    readings: Mapped[int] = mapped_column(Integer)


class RunOutput(Base):
    """A run's output (its stdout and stderr, one file on the site): where the agent writes it
    (`path`, on `site`), and its tail as the agent last uploaded it: the last `OUTPUT_TAIL_BYTES`
    (schemas.py) of a file of `size_bytes`. One row per run (job and fence)."""

    __tablename__ = "run_outputs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    fence: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)        # the whole file's, at the upload
    tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")          # its last bytes
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (UniqueConstraint("job_id", "fence", name="uq_run_outputs_job_fence"),)
