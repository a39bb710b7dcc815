"""iPERCIST from the worked examples of size spec §11 (E5 and E7 PET add-ons; P1) and the confirmation window of
§7.3/§12: PERCIST PMD → UPMD; PERCIST PMD again vs baseline 28–56 days later → CPMD; CMR/PMR/SMD → reset."""

from __future__ import annotations

import datetime as dt

import pytest

from rules.criteria import ipercist
from tests.rules import pet_cases as pc
from tests.rules.pet_cases import PetLesion, categories, pet_facts

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
LIVER = ("1.0", "0.1")


def assess(facts, overrides=None):
    return pc.run(ipercist, facts, overrides)


def test_e5_upmd_confirmed_by_pmd_again_at_28_days():
    a = assess(pc.e5_pet())
    tp2, tp3 = a.timepoints
    # TP2: PERCIST PMD (new FDG-avid N1; hottest T1 −5.56 %) → UPMD; it rests on the new lesion only → reader review.
    assert (tp2.category, tp2.confirmed) == ("UPMD", False)
    assert tp2.extra["reader_review"] is True and any("only on new" in w for w in tp2.warnings)
    # TP3, 28 days later (2024-05-06 → 2024-06-03), PMD again vs baseline (N1 also grew 6.0 → 7.5) → CPMD,
    # dated to the UPMD; no review (the new lesion changed).
    assert (tp3.category, tp3.confirmed) == ("CPMD", True)
    assert tp3.progression_date == D("2024-05-06") and tp3.extra["reader_review"] is False
    assert a.progression_date == D("2024-05-06")
    assert a.best_response.category == "CPMD"


def test_e7_upmd_reset_to_pmr():
    a = assess(pc.e7_pet())
    tp1, tp2 = a.timepoints
    assert tp1.category == "UPMD"
    # TP2 (56 days later): N1 at background, hottest 3.0 vs 10.0 = −70 %, Δ −7.0, no new lesion → PMR: reset.
    assert tp2.category == "PMR" and tp2.extra["percist_category"] == "PMR"
    assert a.progression_date is None and a.best_response.category == "PMR"


def test_p1_follows_percist():
    assert categories(assess(pc.p1())) == ["PMR", "SMD", "NE"]


def upmd_then(days, fu2, *, n1_fu2="5.0", n1_fu2_ld=12):
    """A 8.0 at baseline; FU1 (day 56): A 8.0 + new N1 5.0 (12 mm) → UPMD; FU2 ``days`` later."""
    fu1 = C1D1 + dt.timedelta(days=56)
    scans = {"BL": D("2024-01-02"), "FU1": fu1, "FU2": fu1 + dt.timedelta(days=days)}
    lesions = (
        PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "8.0", "FU2": fu2}),
        PetLesion("N1 liver", "liver", {"FU1": "5.0", "FU2": n1_fu2}, long_axis={"FU1": 12, "FU2": n1_fu2_ld}),
    )
    return pet_facts("ipercist", C1D1, scans, lesions, {"BL": LIVER, "FU1": LIVER, "FU2": LIVER})


@pytest.mark.parametrize(
    "days, expected, confirmed",
    [
        # 27 days is before the 28-day window: PMD again keeps the UPMD open.
        (27, "UPMD", False),
        (28, "CPMD", True),
        (56, "CPMD", True),
        # 57 days is after the window: still confirms, with a warning (late scans are evaluated).
        (57, "CPMD", True),
    ],
)
def test_confirmation_window(days, expected, confirmed):
    a = assess(upmd_then(days, "8.0", n1_fu2="6.0"))
    tp = a.timepoints[1]
    assert (tp.category, tp.confirmed) == (expected, confirmed)
    if days == 57:
        assert any("later than" in w for w in tp.warnings)
    if expected == "UPMD":
        assert a.progression_date is None and any("unconfirmed" in w for w in a.warnings)


def test_confirm_window_flag():
    a = assess(upmd_then(27, "8.0", n1_fu2="6.0"), {"ipercist.confirm_window_days": {"min": 21, "max": 56}})
    assert a.timepoints[1].category == "CPMD"


def test_unchanged_new_lesion_confirmation_is_flagged_for_review():
    # N1 unchanged (5.0, 12 mm) at FU2: PMD again only from the same new lesion → CPMD, reader review.
    tp = assess(upmd_then(28, "8.0")).timepoints[1]
    assert tp.category == "CPMD" and tp.extra["reader_review"] is True
    assert any("unchanged new lesion" in w for w in tp.warnings)


def test_reset_when_new_lesion_resolves():
    # FU2: N1 absent, A 8.0 (0 %) → SMD → reset.
    assert categories(assess(upmd_then(28, "8.0", n1_fu2="absent"))) == ["UPMD", "SMD"]
