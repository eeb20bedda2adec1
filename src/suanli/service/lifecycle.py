"""Job lifecycle: PENDING → PLACED → TRANSFERRING → RUNNING → SUCCEEDED | FAILED | CANCELLED |
PREEMPTED (→ PENDING). Every change goes through `move`, which refuses a transition the
lifecycle does not have and records each one with its time and reason."""

from __future__ import annotations

from suanli.model.schema import Job
from suanli.service.models import Job as JobRow
from suanli.service.models import Transition, utcnow

NEXT: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"PLACED", "FAILED", "CANCELLED"}),           # FAILED: the policy rejected it
    "PLACED": frozenset({"TRANSFERRING", "PENDING", "CANCELLED"}),     # PENDING: its site went down
    "TRANSFERRING": frozenset({"RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED"}),
    "RUNNING": frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED"}),
    "PREEMPTED": frozenset({"PENDING"}),
    "SUCCEEDED": frozenset(),
    "FAILED": frozenset(),
    "CANCELLED": frozenset(),
}


class LifecycleError(RuntimeError):
    """A transition the lifecycle does not have: a bug in the controller, never silent."""


def move(s, row: JobRow, to: str, at_h: float, reason: str = "") -> None:
    if to not in NEXT[row.state]:
        raise LifecycleError(f"job {row.id}: {row.state} -> {to} is not a lifecycle transition")
    s.add(Transition(job_id=row.id, from_state=row.state, to_state=to, at_h=at_h, reason=reason))
    row.state = to
    row.reason = reason
    row.updated_at = utcnow()


def model_job(row: JobRow, tenant: str | None = None) -> Job:
    """The MODEL.md §1 job a policy and the accounting see (ids are the database ids as text)."""
    spec = dict(row.spec)
    spec.pop("body_sha256", None)           # the submitted body's digest (idempotency), not a job field
    return Job.model_validate({**spec, "id": str(row.id), "tenant": tenant, "submit_h": row.submit_h,
                               "gpus": row.gpus})
