"""rules.volumetric: the provisional volumetric response (RECIST 1.1 thresholds cubed) and volume TGR.

Worked example (ours, arithmetic shown): treatment start 2026-03-09; two lesions segmented at baseline
2026-03-02, A = 4.000 cm3 and B = 6.000 cm3 → total 10.000 cm3; a pre-baseline scan 2026-01-05 with 2.000 + 3.000 =
5.000 cm3.
- follow-up 2026-05-04: A 1.430 + B 2.000 = 3.430 cm3 = 0.343 × 10.000 exactly → PR (inclusive: ≤ 0.343 ×);
  3.431 → SD.
- PD is ≥ 1.728 × the nadir: nadir 10.000 → 17.280 is PD (inclusive), 17.279 is SD.
- Kinetics: reference TGR over 56 days (56 / 30.4375 = 1.8398 months): 100·(exp(ln(10/5)/1.8398) − 1) = 45.75 %/month;
  experimental over 63 days (2.0698 months) to 3.430: 100·(exp(ln(0.343)/2.0698) − 1) = −40.37 %/month.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rules.engine import get_engine
from rules.facts import LesionVolume
from rules.volumetric import CRITERION, assess_volumes

START = dt.date(2026, 3, 9)
PRE, BL, FU = dt.date(2026, 1, 5), dt.date(2026, 3, 2), dt.date(2026, 5, 4)


def vols(day: dt.date, a: str | None, b: str | None) -> list[LesionVolume]:
    out = []
    for key, value in (("uid.a", a), ("uid.b", b)):
        if value is not None:
            out.append(LesionVolume(key, day, Decimal(value)))
    return out


def category(a: str | None, b: str | None) -> str:
    result = assess_volumes(get_engine(), tuple(vols(BL, "4.000", "6.000") + vols(FU, a, b)), START)
    assert result is not None and result.provisional
    return result.timepoints[0].category


def test_partial_response_boundary_is_inclusive():
    assert category("1.430", "2.000") == "PR"  # 3.430 = 0.343 × 10.000
    assert category("1.431", "2.000") == "SD"  # 3.431 > 3.430


def test_progression_boundary_is_inclusive():
    assert category("8.000", "9.280") == "PD"  # 17.280 = 1.728 × 10.000
    assert category("8.000", "9.279") == "SD"  # 17.279 < 17.280


def test_complete_disappearance_and_missing_lesion():
    assert category("0", "0") == "CR"
    assert category("1.000", None) == "NE"  # B segmented at baseline, no volume at follow-up


def test_volume_growth_rate_reuses_the_ferte_arithmetic():
    facts = tuple(vols(PRE, "2.000", "3.000") + vols(BL, "4.000", "6.000") + vols(FU, "1.430", "2.000"))
    tp = assess_volumes(get_engine(), facts, START).timepoints[0]
    assert tp.extra["tgr_volume_reference"] == 45.75
    assert tp.extra["tgr_volume_experimental"] == -40.37
    assert tp.baseline_sum == Decimal("10.000") and tp.sum_unit == "cm3"


def test_no_follow_up_no_assessment():
    assert assess_volumes(get_engine(), tuple(vols(BL, "4.000", "6.000")), START) is None


def test_the_volume_conjunctions_of_the_rule_file():
    # conditions.meets_progression (volumetric.yaml): measured AND V ≥ 1.728 × nadir AND nadir > 0;
    # conditions.meets_partial_response: measured AND V ≤ 0.343 × baseline AND baseline > 0.
    ruleset = get_engine().rulebase[CRITERION]
    flags = ruleset.flag_values()

    def pd(total: str, nadir: str, measured: bool = True) -> bool:
        return ruleset.holds("meets_progression", flags, measured=measured, total=Decimal(total), nadir=Decimal(nadir))

    def pr(total: str, baseline: str, measured: bool = True) -> bool:
        quantities = {"measured": measured, "total": Decimal(total), "baseline": Decimal(baseline)}
        return ruleset.holds("meets_partial_response", flags, **quantities)

    # 1.728 × 10 = 17.28 exactly (+72.8 %, 1.2³) → PD; 17.27 → not; not every lesion measured → not.
    assert pd("17.28", "10") and not pd("17.27", "10") and not pd("17.28", "10", measured=False)
    # 0.343 × 10 = 3.43 exactly (−65.7 %, 0.7³) → PR; 3.44 → not.
    assert pr("3.43", "10") and not pr("3.44", "10") and not pr("3.43", "10", measured=False)
    # A zero reference [D]: no PD over a zero nadir (even with regrowth), no PR from a zero baseline.
    assert not pd("5", "0") and not pr("0", "0")
