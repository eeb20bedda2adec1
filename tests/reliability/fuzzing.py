"""What the fuzz tests (test_bad_input_scenarios.py, test_bad_input_traces.py) share: how many
examples to run, hypothesis's settings for them, and a count of examples per test printed at
the end of the module (with -s, for the record).

`SUANLI_FUZZ_EXAMPLES` scales every test's example count (default: each test's own, sized for
CI); the long run reports failures as found, without shrinking (a mutated document takes
minutes to shrink)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

SCALE = int(os.environ.get("SUANLI_FUZZ_EXAMPLES", "0")) or None
PHASES = tuple(p for p in Phase if p is not Phase.shrink) if SCALE else tuple(Phase)


def examples(ci: int) -> int:
    return SCALE if SCALE is not None else ci


def fuzz(ci: int):
    return settings(max_examples=examples(ci), deadline=None, derandomize=SCALE is None, phases=PHASES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def counter(label: str) -> tuple[dict[str, int], Callable[[str], None], Callable[[], Iterator[None]]]:
    """(counts, count(name), a module fixture that prints the counts as `label` at the end)."""
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    @pytest.fixture(scope="module", autouse=True)
    def report() -> Iterator[None]:
        yield
        print(f"\n{label}: examples run per test {counts}")

    return counts, count, report
