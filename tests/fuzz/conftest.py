"""Fuzzing support: how many cases each fuzz test tried, and how many to try.

``IMMUNORAD_FUZZ_SCALE`` multiplies every test's case count (default 1; ``python -m bench.run_all`` runs
the same tests with a larger scale). ``IMMUNORAD_FUZZ_REPORT=<file>`` writes the counts tried, per test,
as JSON at the end of the session (bench/RESULTS.md reports them).

The Hypothesis runs are derandomised (the same cases every run: CI is reproducible) unless
``IMMUNORAD_FUZZ_RANDOM=1``; no example database is written.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TRIED: collections.Counter = collections.Counter()
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def cases(default: int) -> int:
    return max(1, int(default * float(os.environ.get("IMMUNORAD_FUZZ_SCALE", "1"))))


def fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=cases(default),
        deadline=None,
        database=None,
        derandomize=os.environ.get("IMMUNORAD_FUZZ_RANDOM") != "1",
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )


@pytest.fixture
def tally(request):
    """``tally(outcome)`` counts one case tried by this test, by outcome (stored, rejected-0xC002, 422…)."""
    node = request.node.nodeid

    def count(outcome: str) -> None:
        TRIED[node] += 1
        OUTCOMES[node][outcome] += 1

    return count


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("IMMUNORAD_FUZZ_REPORT")
    if target and TRIED:
        Path(target).write_text(
            json.dumps(
                {
                    "tried": dict(TRIED),
                    "outcomes": {k: dict(v) for k, v in OUTCOMES.items()},
                    "exitstatus": int(exitstatus),
                },
                indent=1,
            )
        )
