"""Helpers and extra timelines for the iRECIST tests (size spec §2), beyond the worked examples of ``cases.py``.

The timelines here are built from the rules of docs/clinical/criteria-size-pet.md §2 to hit each
boundary the spec names; the arithmetic is in the comments next to each one. Most use a single non-nodal target
whose longest diameter *is* the sum, so the numbers read directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rules.criteria import irecist, recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import LesionStatus, NonTargetChange, NonTargetStatus, PatientFacts, Scan
from rules.results import CriterionAssessment
from rules.scenario import ABSENT, NEW, NOT_ASSESSED, NT, TSTM, Case, Cell, Lesion, T, c  # noqa: F401 - re-exported for tests

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
BL = D("2024-01-02")

NT_UNE = Cell(nontarget_status=NonTargetStatus.PRESENT, nontarget_change=NonTargetChange.UNE)
"""Non-target graded 'unequivocal increase' (WG code UNE)."""
NT_INCLA = Cell(nontarget_status=NonTargetStatus.PRESENT, nontarget_change=NonTargetChange.INCLA)
"""Non-target graded 'further increase from last assessment' (WG code INCLA)."""
NT_NC = Cell(nontarget_status=NonTargetStatus.PRESENT, nontarget_change=NonTargetChange.NC)
NT_NCLA = Cell(nontarget_status=NonTargetStatus.PRESENT, nontarget_change=NonTargetChange.NCLA)
NT_STILL_UNEQUIVOCAL = Cell(
    nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION, nontarget_change=NonTargetChange.NCLA
)
NT_GONE = Cell(0, 0, LesionStatus.ABSENT, nontarget_status=NonTargetStatus.ABSENT)
NT_SEEN = Cell(nontarget_status=NonTargetStatus.PRESENT)


def run(case: Case | PatientFacts, overrides: Mapping[str, Any] | None = None, module=irecist) -> CriterionAssessment:
    """Assess one criterion on a case, building the timeline the way ``rules.evaluate`` does."""
    engine = get_engine()
    facts = case.facts() if isinstance(case, Case) else case
    return module.assess(engine, make_timeline(facts, engine, overrides), overrides)


def run_both(case: Case | PatientFacts, overrides: Mapping[str, Any] | None = None):
    """(timeline, iRECIST, RECIST 1.1) on the same timeline."""
    engine = get_engine()
    facts = case.facts() if isinstance(case, Case) else case
    timeline = make_timeline(facts, engine, overrides)
    return timeline, irecist.assess(engine, timeline, overrides), recist11.assess(engine, timeline, overrides)


def categories(assessment: CriterionAssessment) -> list[str]:
    return [tp.category for tp in assessment.timepoints]


def schedule(*days: int) -> dict[str, dt.date]:
    """BL on 2024-01-02 (C1D1 2024-01-08), then TP1, TP2… on the given days after C1D1."""
    return {"BL": BL, **{f"TP{i}": C1D1 + dt.timedelta(days=d) for i, d in enumerate(days, start=1)}}


def every_8_weeks(n: int) -> dict[str, dt.date]:
    return schedule(*(56 * i for i in range(1, n + 1)))


def single_target(
    name: str, sums: Sequence[float | Cell], scans: Mapping[str, dt.date] | None = None, *extra: Lesion
) -> Case:
    """One non-nodal liver target whose longest diameter is the sum of diameters (BL first)."""
    scans = dict(scans or every_8_weeks(len(sums) - 1))
    labels = list(scans)
    cells = {
        label: (value if isinstance(value, Cell) else c(value, value))
        for label, value in zip(labels, sums, strict=True)
    }
    return Case(name, C1D1, scans, (Lesion("T1 liver", T, "liver", cells=cells), *extra))


def new_lesion(name: str, cells: Mapping[str, Cell], organ: str = "lung", nodal: bool = False) -> Lesion:
    return Lesion(name, NEW, organ, nodal=nodal, cells=dict(cells))


def non_target(cells: Mapping[str, Cell], name: str = "NT bone") -> Lesion:
    return Lesion(name, NT, "bone", cells=dict(cells))


def with_symptom_driven(facts: PatientFacts, *dates: dt.date) -> PatientFacts:
    """Mark scans as done for new symptoms (``Scan.symptom_driven``; iRECIST early-scan exception)."""
    scans = tuple(Scan(scan_date=day, symptom_driven=True) for day in dates)
    return dataclasses.replace(facts, scans=facts.scans + scans)


def shuffled(facts: PatientFacts, order: Iterable[int]) -> PatientFacts:
    measurements = list(facts.measurements)
    return dataclasses.replace(facts, measurements=tuple(measurements[i] for i in order))


# --- named timelines -------------------------------------------------------------------------------------

# Cumulative confirmation (WG FAQ: "a 4 mm increase … followed by a further 2 mm increase meets iCPD").
# BL 50; TP1 50 (SD); TP2 60: 60 ≥ 1.2 × 50 = 60 and +10 ≥ 5 → iUPD, anchor 60;
# TP3 64: +4 vs anchor < 5 → stays iUPD (still ≥ 20 % over the nadir 50, so no reset);
# TP4 66: +6 vs the anchor (4 then 2, cumulative) ≥ 5 → iCPD dated TP2.
CUMULATIVE = single_target("cumulative-4-then-2", [50, 50, 60, 64, 66])
# Boundary: TP3 at +5 exactly (65 − 60 = 5 ≥ 5) → iCPD; +4.9 (64.9) → iUPD.
PLUS_5 = single_target("plus-5", [50, 50, 60, 65])
PLUS_4_9 = single_target("plus-4.9", [50, 50, 60, 64.9])

# SD, SD, iUPD, iPR, iPR, iUPD, iCPD → progression date = the second iUPD (spec §2.4, C-ADM vignette).
# BL 100; TP1 100, TP2 100 (SD); TP3 120: ≥ 120 and +20 → iUPD; TP4 65: not PD vs nadir 100 → reset,
# 65 ≤ 70 → iPR; TP5 65 iPR; TP6 80: vs nadir 65, 80 ≥ 78 and +15 → iUPD (a new episode, anchor 80);
# TP7 86: +6 vs 80 → iCPD dated TP6.
TWO_EPISODES = single_target("two-episodes", [100, 100, 100, 120, 65, 65, 80, 86])


def new_lesion_reset(decrease_to: float) -> Case:
    """New-lesion iUPD with targets at 50, then targets at ``decrease_to`` and the new lesion unchanged (policy (iii)).

    BL 80; TP1 60 (−25 % → iSD); TP2 50 (−37.5 % → target iPR) + N1 6 mm (NLNT) → iUPD, anchor 50, iPR ignoring N1;
    TP3 ``decrease_to`` with N1 unchanged: 45 is −5 mm ≥ 5 → reset (iii) to iPR; 46 is −4 mm → stays iUPD (iPR at
    both, so policy (ii) does not apply).
    """
    return single_target(
        f"nl-reset-{decrease_to}",
        [80, 60, 50, decrease_to],
        None,
        new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)}),
    )


# Reset policy (ii): the category ignoring the unchanged new lesion improves iSD → iPR with only −3 mm.
# BL 100; TP1 72 (−28 % → iSD); TP2 72 + N1 → iUPD (iSD ignoring N1); TP3 69: 69 ≤ 70 → iPR, −3 mm < 5, but
# iSD → iPR is better → reset to iPR (N1 persists, recorded).
IMPROVED_CATEGORY = single_target(
    "nl-reset-improved", [100, 72, 72, 69], None, new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)})
)

# WG scenario F: PR already reached, then a new lesion → iUPD, then no change in any measurement → remains iUPD.
# BL 100; TP1 60 (iPR); TP2 60 + N1 → iUPD; TP3 60, N1 unchanged: not resolved, iPR → iPR, 0 mm → iUPD.
SCENARIO_F = single_target(
    "scenario-F", [100, 60, 60, 60], None, new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)})
)

# Table 3 example 8: iUPD, NE, NE → iBOR iUPD (NE keeps the episode open and never updates the nadir).
# BL 50; TP1 60 → iUPD; TP2, TP3 the target not assessed → NE, NE.
IUPD_THEN_NE = single_target("iupd-ne-ne", [50, 60, NOT_ASSESSED, NOT_ASSESSED])


def early_scan_case(days_after_iupd: int, value: float, *, new_at_early: bool = False) -> Case:
    """BL 50; TP1 (day 56) 60 → iUPD; TP2 ``days_after_iupd`` later with the target at ``value`` (+ a new lesion)."""
    scans = schedule(56, 56 + days_after_iupd)
    extra = (new_lesion("N9 lung", {"TP2": c(12, 10)}),) if new_at_early else ()
    return single_target(f"early-{days_after_iupd}", [50, 60, value], scans, *extra)


def window_case(days_after_iupd: int) -> Case:
    """BL 50; TP1 (day 56) 60 → iUPD; TP2 ``days_after_iupd`` later at 70 (+10 → iCPD)."""
    return single_target(f"window-{days_after_iupd}", [50, 60, 70], schedule(56, 56 + days_after_iupd))


def measurability_case(diameter: float, *, nodal: bool = False) -> Case:
    """BL 50, SD; a new lesion of ``diameter`` mm (LD; node: short axis) at TP2 → iUPD; it grows 5 mm at TP3.

    As NLT, its sum of measures rises +5 ≥ 5 → iCPD; as NLNT, growth counts only when the reader grades it
    (INCLA/UNE), so without a grade it stays iUPD.
    """
    if nodal:
        cells = {"TP2": c(diameter + 10, diameter), "TP3": c(diameter + 10, diameter + 5)}
    else:
        cells = {"TP2": c(diameter, diameter), "TP3": c(diameter + 5, diameter + 5)}
    organ = "lymph node" if nodal else "lung"
    return single_target(
        f"measurability-{diameter}-{organ}", [50, 50, 50, 50], None, new_lesion("N1", cells, organ=organ, nodal=nodal)
    )
