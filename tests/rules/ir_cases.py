"""Helpers and extra timelines for the immune-related criteria tests (irRC, irRECIST, imRECIST, itRECIST).

The worked examples E1–E15 are in ``tests/rules/cases.py``; the timelines here are built from the rules of
docs/clinical/criteria-size-pet.md §3–§6 to test boundaries, with the arithmetic in comments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import LocalTherapy, LocalTherapyKind, PatientFacts
from rules.results import CriterionAssessment
from tests.rules.cases import ABSENT, NEW, NT, Case, Cell, Lesion, T, c  # noqa: F401 - re-exported for tests

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
BL = D("2024-01-02")


def run(module, case: Case | PatientFacts, overrides: Mapping[str, Any] | None = None) -> CriterionAssessment:
    """Assess one criterion module on a case, building the timeline the way ``rules.evaluate`` does."""
    engine = get_engine()
    facts = case.facts() if isinstance(case, Case) else case
    return module.assess(engine, make_timeline(facts, engine, overrides), overrides)


def categories(assessment: CriterionAssessment) -> list[str]:
    return [tp.category for tp in assessment.timepoints]


def labels(assessment: CriterionAssessment, pd: str = "irPD") -> list[str]:
    """Categories in the spec's notation: ``irPD-u`` unconfirmed, ``irPD-c`` confirmed."""
    out = []
    for tp in assessment.timepoints:
        if tp.category == pd:
            out.append(f"{pd}-{'c' if tp.confirmed else 'u'}")
        else:
            out.append(tp.category)
    return out


def days_after(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=days)


def scans(*offsets: int, start: dt.date = C1D1) -> dict[str, dt.date]:
    """BL six days before C1D1, then TP1, TP2, … at the given day numbers from C1D1."""
    out = {"BL": BL}
    for i, offset in enumerate(offsets, start=1):
        out[f"TP{i}"] = days_after(start, offset)
    return out


def case(name: str, scan_days: Iterable[int], *lesions: Lesion) -> Case:
    return Case(name, C1D1, scans(*scan_days), tuple(lesions))


def with_injections(
    facts: PatientFacts,
    *,
    injected_at: Mapping[str, Iterable[dt.date]] = {},
    procedures: Iterable[tuple[dt.date, tuple[str, ...]]] = (),
) -> PatientFacts:
    """itRECIST facts: ``injected_at`` marks lesion measurements as injected on given scan dates;
    ``procedures`` adds intratumoral-injection ``LocalTherapy`` facts (date, lesion ids)."""
    marks = {(lesion_id, day) for lesion_id, days in injected_at.items() for day in days}
    measurements = tuple(
        dataclasses.replace(m, injected=True) if (m.lesion_id, m.scan_date) in marks else m for m in facts.measurements
    )
    therapies = tuple(
        LocalTherapy(LocalTherapyKind.INTRATUMORAL_INJECTION, day, lesion_ids=ids, source="test")
        for day, ids in procedures
    )
    return dataclasses.replace(facts, measurements=measurements, local_therapies=facts.local_therapies + therapies)
