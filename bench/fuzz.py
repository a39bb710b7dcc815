"""The fuzz tests (tests/fuzz) at a larger scale, on both backends: how many cases each tried, and their outcomes.

They run as pytest in a subprocess with ``IMMUNORAD_FUZZ_SCALE`` (3 by default, 1 in quick mode) and
``IMMUNORAD_FUZZ_REPORT``; the property each case checks (no crash, no 5xx, no partial write) is in the tests.
A failing fuzz test fails this benchmark: its figures would count cases of a broken property.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import REPO, Goal, Section

SCALE = 3


def run(ctx) -> Section:
    scale = 1 if ctx.quick else SCALE
    section = Section("fuzz", "Fuzzing: DICOM and FHIR cases tried")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {**os.environ, "IMMUNORAD_FUZZ_SCALE": str(scale), "IMMUNORAD_FUZZ_REPORT": str(report)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        minutes = (time.monotonic() - started) / 60
        if done.returncode != 0:
            raise RuntimeError(f"the fuzz tests failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
        data = json.loads(report.read_text())
    section.setup.append(
        f"`IMMUNORAD_FUZZ_SCALE={scale} pytest tests/fuzz` (scale × each test's default case count; "
        f"Hypothesis derandomised), on SQLite and PostgreSQL; {minutes:.1f} minutes, all passed."
    )
    rows = []
    totals: Counter = Counter()
    for node, tried in sorted(data["tried"].items()):
        outcomes = data["outcomes"].get(node, {})
        family = "DICOM" if "dicom" in node else "FHIR"
        totals[family] += tried
        shown = ", ".join(f"{name} {count:,}" for name, count in sorted(outcomes.items(), key=lambda kv: -kv[1]))
        rows.append([node.replace("tests/fuzz/", ""), f"{tried:,}", shown])
    section.tables.append((["test [backend]", "cases tried", "outcomes"], rows))
    section.notes.append(
        "Outcomes: `stored` = acknowledged and stored once; `refused-0x…` = the DIMSE failure status "
        "with its reason, nothing written; HTTP statuses for FHIR requests (every 4xx carried an "
        "OperationOutcome and wrote nothing). Any crash, 5xx or partial write fails the run."
    )
    for family in ("DICOM", "FHIR"):
        section.goals.append(
            Goal(
                f"{family} fuzz cases without crash, 5xx or partial write",
                f"{totals[family]:,} cases",
                "thousands",
                totals[family] >= 1000 if not ctx.quick else None,
            )
        )
    return section
