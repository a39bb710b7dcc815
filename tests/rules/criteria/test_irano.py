"""iRANO from the rules of size spec §10: RANO PD within 6 months of immunotherapy start is provisional and must be
confirmed on follow-up imaging (~3 months later [U], back-dated [U]); PD after 6 months needs no confirmation."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from rules.criteria import irano
from tests.rules import pet_cases as pc
from tests.rules.cases import NEW, Case, Lesion, T, c
from tests.rules.pet_cases import observation

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")


def assess(facts, overrides=None):
    return pc.run(irano, facts, overrides)


def glioma(scans, cells, *, new=None, observations=()):
    labels = list(scans)
    lesions = [Lesion("T1 brain", T, "brain", cells=dict(zip(labels, cells, strict=True)))]
    if new:
        lesions.append(Lesion("X1 brain", NEW, "brain", cells=new))
    facts = Case("irano", C1D1, scans, tuple(lesions)).facts()
    return dataclasses.replace(facts, cancer_type="glioma", observations=tuple(observations))


def labels(a):
    return [
        f"{tp.category}-{'c' if tp.confirmed else 'u'}" if tp.category == "PD" else tp.category for tp in a.timepoints
    ]


def test_provisional_pd_confirmed_and_back_dated():
    # 20×20 = 400 → 25×20 = 500 (+25 %: RANO PD) on day 56 → provisional; 28×22 = 616 on day 147 (91 days later
    # ≥ 84) → confirmed, dated to day 56.
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-06-03")}
    a = assess(glioma(scans, [c(20, 20), c(25, 20), c(28, 22)]))
    assert labels(a) == ["PD-u", "PD-c"]
    assert a.timepoints[1].progression_date == D("2024-03-04") and a.progression_date == D("2024-03-04")
    assert a.provisional is True


def test_provisional_pd_reset_by_shrinkage():
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-06-03")}
    a = assess(glioma(scans, [c(20, 20), c(25, 20), c(20, 18)]))
    # Day 147: 360 vs nadir 400 → SD: pseudoprogression, reset.
    assert labels(a) == ["PD-u", "SD"] and a.progression_date is None


def test_pd_again_before_the_confirmation_interval_stays_provisional():
    # PD again 56 days after the provisional PD (< 84) → still provisional.
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-04-29")}
    a = assess(glioma(scans, [c(20, 20), c(25, 20), c(27, 20)]))
    assert labels(a) == ["PD-u", "PD-u"] and any("unconfirmed" in w for w in a.warnings)
    # irano.confirm_min_days 56 confirms it.
    assert labels(assess(glioma(scans, [c(20, 20), c(25, 20), c(27, 20)]), {"irano.confirm_min_days": 56})) == [
        "PD-u",
        "PD-c",
    ]


@pytest.mark.parametrize(
    "scan, expected",
    [
        # C1D1 2024-01-08 + 6 calendar months = 2024-07-08: a PD on that day is within the window → provisional.
        (D("2024-07-08"), "PD-u"),
        # The day after: RANO PD without confirmation.
        (D("2024-07-09"), "PD-c"),
    ],
)
def test_6_month_boundary(scan, expected):
    a = assess(glioma({"BL": D("2024-01-02"), "TP1": scan}, [c(20, 20), c(25, 20)]))
    assert labels(a) == [expected]


def test_new_lesion_after_6_months_is_pd_without_confirmation():
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-04-01"), "TP2": D("2024-08-05")}
    a = assess(glioma(scans, [c(20, 20), c(18, 18), c(18, 18)], new={"TP2": c(6, 5)}))
    assert labels(a) == ["SD", "PD-c"] and a.progression_date == D("2024-08-05")


def test_clinically_worse_patient_is_not_deferred():
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04")}
    facts = glioma(
        scans, [c(20, 20), c(25, 20)], observations=[observation("clinical-deterioration", D("2024-03-01"), 1)]
    )
    assert labels(assess(facts)) == ["PD-c"]
