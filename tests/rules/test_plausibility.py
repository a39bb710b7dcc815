"""The plausibility gate (rules/plausibility.py, contract §9.2) at its exact boundaries, and what the criteria do
with a lesion whose value was refused (it is *not assessed*; RECIST 1.1 §4.3, §3.1.2)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from rules.evaluate import evaluate_patient
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, PatientFacts, Scan, TherapyLine
from rules.plausibility import (
    PlausibilityLimits,
    as_number,
    birth_date_problem,
    length_problem,
    scan_date_problem,
    suv_problem,
    volume_problem,
)

TODAY = dt.date(2026, 12, 7)
"""'Today' is a parameter: the boundaries below are exact whatever day the tests run."""


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("-12", True),
        ("-0.1", True),
        ("0", False),
        ("0.0", False),
        ("500", False),
        ("500.0", False),
        ("500.1", True),
        ("500.0001", True),
        ("1e9", True),
    ],
)
def test_length_limits_are_inclusive(value, refused):
    assert (length_problem(Decimal(value), "Long Axis") is not None) == refused


def test_the_length_limit_is_configuration():
    assert length_problem(Decimal("600"), "x", PlausibilityLimits(max_lesion_mm=Decimal(800))) is None
    assert length_problem(Decimal("300.1"), "x", PlausibilityLimits(max_lesion_mm=Decimal(300))) is not None


@pytest.mark.parametrize(("value", "refused"), [("-0.01", True), ("0", False), ("100", False), ("100.01", True)])
def test_suv_limits_are_inclusive(value, refused):
    assert (suv_problem(Decimal(value), "SUVbw") is not None) == refused


def test_volumes_may_be_zero_never_negative():
    assert volume_problem(Decimal("0"), "TLG") is None and volume_problem(Decimal("1e6"), "TLG") is None
    assert volume_problem(Decimal("-0.01"), "TLG") == "TLG is negative (implausible volume)"


@pytest.mark.parametrize("raw", ["NaN", "nan", "sNaN", "Infinity", "-inf", "abc", "", "1,5", None, True, float("nan")])
def test_what_is_not_a_finite_number(raw):
    assert as_number(raw) is None


@pytest.mark.parametrize(
    ("day", "refused"),
    [
        (dt.date(1989, 12, 31), True),
        (dt.date(1990, 1, 1), False),
        (TODAY, False),
        (TODAY + dt.timedelta(days=1), False),  # tomorrow: a scanner clock or time zone ahead of ours
        (TODAY + dt.timedelta(days=2), True),
    ],
)
def test_scan_date_limits(day, refused):
    assert (scan_date_problem(day, TODAY) is not None) == refused


def test_birth_dates():
    assert birth_date_problem(TODAY, TODAY) is None
    assert birth_date_problem(TODAY + dt.timedelta(days=1), TODAY) == "birth date is in the future (implausible)"
    scan = dt.date(2024, 3, 11)
    assert birth_date_problem(scan, TODAY, [scan, None]) is None  # a scan on the day of birth
    assert birth_date_problem(scan + dt.timedelta(days=1), TODAY, [scan]) is not None


def _facts(t1_baseline: LesionStatus) -> PatientFacts:
    bl, fu = dt.date(2024, 1, 8), dt.date(2024, 3, 11)
    t1_base = LesionMeasurement(
        "T1",
        bl,
        t1_baseline,
        LesionRole.TARGET,
        long_axis_mm=None if t1_baseline is LesionStatus.NOT_ASSESSED else Decimal(30),
    )
    return PatientFacts(
        patient_ref="p",
        therapy_lines=(TherapyLine("pembrolizumab", dt.date(2024, 1, 15)),),
        scans=(Scan(bl), Scan(fu)),
        measurements=(
            t1_base,
            LesionMeasurement("T2", bl, role=LesionRole.TARGET, long_axis_mm=Decimal(20)),
            LesionMeasurement("T1", fu, long_axis_mm=Decimal(30)),
            LesionMeasurement("T2", fu, long_axis_mm=Decimal(20)),
        ),
    )


def test_a_baseline_target_whose_value_was_refused_is_followed_as_non_target():
    # Baseline T1 refused (not assessed), T2 20 mm. Were T1 kept as a target, the baseline sum would be 20 and the
    # follow-up 30 + 20 = 50: +150 % → a PD made of the refused value. RECIST 1.1 §3.1.2: a baseline lesion without a
    # measurement is non-target. Targets: T2 alone, 20 → 20 (0 %) → SD; T1 present as non-target → non-CR/non-PD.
    result = evaluate_patient(_facts(LesionStatus.NOT_ASSESSED))
    tp = result.criterion("RECIST-1.1").timepoints[0]
    assert tp.category == "SD" and tp.sum_mm == Decimal(20) and tp.baseline_sum == Decimal(20)
    assert any("T1" in w and "not assessed at baseline" in w for w in result.warnings)
    # The same patient with T1 measured at baseline: SoD 50 → 50, SD, T1 a target.
    measured = evaluate_patient(_facts(LesionStatus.PRESENT)).criterion("RECIST-1.1").timepoints[0]
    assert measured.category == "SD" and measured.baseline_sum == Decimal(50)


def test_a_follow_up_target_whose_value_was_refused_makes_the_timepoint_ne():
    # Baseline T1 30 + T2 20 = 50. Follow-up T1 refused (not assessed), T2 20: partial sum 20 (−60 %), which shows
    # no PD, and a target is missing → NE (RECIST 1.1 §4.3.1), never the PR that −60 % would suggest.
    facts = _facts(LesionStatus.PRESENT)
    fu = dt.date(2024, 3, 11)
    refused = LesionMeasurement("T1", fu, LesionStatus.NOT_ASSESSED)
    facts = PatientFacts(
        patient_ref=facts.patient_ref,
        therapy_lines=facts.therapy_lines,
        scans=facts.scans,
        measurements=tuple(m for m in facts.measurements if (m.lesion_id, m.scan_date) != ("T1", fu)) + (refused,),
    )
    tp = evaluate_patient(facts).criterion("RECIST-1.1").timepoints[0]
    assert tp.category == "NE" and tp.sum_mm == Decimal(20)
