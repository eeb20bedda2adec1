"""One simulation run: scenario -> policy -> schedule -> accounting (no printing, no files)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from suanli.accounting import Accounts, Violation, account, validate
from suanli.model.scenario import Scenario
from suanli.scheduling import policies
from suanli.sim.engine import SimResult, simulate


@dataclass
class Run:
    scenario: Scenario
    policy: str
    result: SimResult
    accounts: Accounts
    violations: list[Violation]
    policy_wall_s: float

    def extra_metrics(self) -> dict[str, object]:
        """Keys added to metrics.json beside the §6 ones."""
        return {
            "policy": self.policy,
            "scenario": self.scenario.name,
            "sim_wall_s": round(self.policy_wall_s, 6),
            "jobs_rejected": len(self.result.rejected),
            "segments_cut_by_outages": self.result.cuts,
            "runs_preempted": self.result.preemptions,
            "overrun_bookings": self.result.overruns,          # MODEL.md §7: runs past their estimate
            "placements_voided_by_overruns": self.result.voided,
        }


def run(scn: Scenario, policy_name: str, progress: Callable[[int, int], None] | None = None) -> Run:
    policy = policies.make(policy_name)
    t0 = time.perf_counter()
    result = simulate(scn, policy, progress)
    wall = time.perf_counter() - t0
    violations, outcomes = validate(scn, result.segments)
    accounts = account(scn, result.segments, outcomes=outcomes)
    return Run(scn, policy_name, result, accounts, violations, wall)
