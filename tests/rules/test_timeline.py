"""Which timepoints are follow-ups (``rules.timeline.build_timeline``): on-treatment evaluations only.

Source: the kinetics spec's scan names (E0 pre-baseline, E1 the baseline before the first dose, E2 the first
on-treatment evaluation scan) and RECIST 1.1 §3.2 [V:R11]: the baseline is before treatment; response is assessed
on the scans after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from rules.evaluate import evaluate_patient
from rules.facts import Scan
from rules.timeline import build_timeline
from tests.faults.harness import CASES

D = dt.date.fromisoformat
# The demo cohort's hyperprogression patient: E0 2024-01-02, BL 2024-02-01, C1D1 2024-02-05, TP1 2024-03-18.
CASE = next(case for case in CASES if case.name == "demo-hyperprogression")


def _facts(*, measured: set[str], imaged: set[str]):
    """The case's facts as the service knows them when the reports of ``measured`` scans and the images of
    ``imaged`` scans have arrived."""
    facts = CASE.facts("P")
    days = {CASE.scans[label] for label in measured}
    return dataclasses.replace(
        facts,
        measurements=tuple(m for m in facts.measurements if m.scan_date in days),
        scans=tuple(Scan(scan_date=CASE.scans[label], modalities=("CT",)) for label in sorted(imaged)),
    )


def test_the_case_is_the_one_described():
    assert (CASE.scans["E0"], CASE.scans["BL"], CASE.c1d1, CASE.scans["TP1"]) == (
        D("2024-01-02"),
        D("2024-02-01"),
        D("2024-02-05"),
        D("2024-03-18"),
    )


def test_the_baseline_images_before_their_report_are_no_follow_up():
    """E0's report is in; the baseline's images (2024-02-01, 4 days before C1D1) are, not its report yet. The
    baseline is E0 for now (the last measured scan on or before C1D1), and 2024-02-01 is after it, but it is no
    on-treatment evaluation: no follow-up, so no report for a pre-treatment scan. (Before the fix it was one, and
    its report stayed after the baseline's own report moved the baseline to 2024-02-01.)"""
    timeline = build_timeline(_facts(measured={"E0"}, imaged={"E0", "BL"}))
    assert timeline.baseline is not None and timeline.baseline.scan_date == D("2024-01-02")
    assert [tp.scan_date for tp in timeline.followups] == []
    assert evaluate_patient(_facts(measured={"E0"}, imaged={"E0", "BL"})).followup_dates == ()


def test_a_scan_on_the_first_dose_day_is_no_follow_up_and_the_day_after_is():
    """Boundary: C1D1 itself is on the baseline side (the baseline may be on that day); the day after is on
    treatment."""
    on_day = _facts(measured={"E0"}, imaged={"E0"})
    on_day = dataclasses.replace(on_day, scans=(*on_day.scans, Scan(scan_date=CASE.c1d1, modalities=("CT",))))
    assert build_timeline(on_day).followups == ()
    after = dataclasses.replace(
        on_day, scans=(*on_day.scans[:-1], Scan(scan_date=CASE.c1d1 + dt.timedelta(days=1), modalities=("CT",)))
    )
    assert [tp.scan_date for tp in build_timeline(after).followups] == [D("2024-02-06")]


def test_once_everything_is_in_the_one_follow_up_is_the_on_treatment_scan():
    timeline = build_timeline(_facts(measured={"E0", "BL", "TP1"}, imaged={"E0", "BL", "TP1"}))
    assert timeline.baseline is not None and timeline.baseline.scan_date == D("2024-02-01")
    assert [tp.scan_date for tp in timeline.followups] == [D("2024-03-18")]
    assert [tp.scan_date for tp in timeline.prebaseline] == [D("2024-01-02")]
