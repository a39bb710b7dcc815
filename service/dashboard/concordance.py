"""Engine versus radiologist concordance (contract §9.7): per criterion, the engine's category against the current
signed category at every signed timepoint: the confusion table, the agreement rate, Cohen's kappa with its 95 %
confidence interval, and the discordant timepoints.

Kappa (Cohen 1960): κ = (p_o − p_e) / (1 − p_e), p_o the observed agreement, p_e = Σ_k p_k. · p_.k the agreement
expected from the margins. Its standard error is the large-sample (non-null) one of Fleiss, Cohen & Everitt 1969
(Psychol Bull 72:323–327, eq. 13):

    Var(κ) = [ Σ_i p_ii (1 − (p_i. + p_.i)(1 − κ))² + (1 − κ)² Σ_{i≠j} p_ij (p_.i + p_j.)² − (κ − p_e (1 − κ))² ]
             / (n (1 − p_e)²)

and the interval is κ ± 1.96 · SE (Wald), cut to [−1, 1]. With one category only (p_e = 1) kappa is undefined
(None). The engine's category is read from its Observation for that timepoint now (the current result).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_mappings.codes import LocalSystems
from service.assessment import signoff
from service.persistence.models import Report, SignOff

Z_95 = 1.959963984540054
"""The 97.5th percentile of the standard normal distribution (two-sided 95 %)."""
METHOD = (
    "Cohen's kappa; 95 % CI = kappa ± 1.96 × the large-sample standard error of Fleiss, Cohen & Everitt (1969), "
    "cut to [-1, 1]"
)


@dataclass(frozen=True)
class Kappa:
    kappa: float | None
    se: float | None
    low: float | None
    high: float | None
    observed: float
    expected: float


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> Kappa:
    """Kappa of (engine, signed) pairs with the Fleiss–Cohen–Everitt 1969 standard error (see the module text)."""
    n = len(pairs)
    if n == 0:
        raise ValueError("kappa needs at least one pair")
    cells = Counter(pairs)
    rows = Counter(a for a, _ in pairs)
    cols = Counter(b for _, b in pairs)
    categories = sorted(set(rows) | set(cols))
    p = {key: count / n for key, count in cells.items()}
    p_row = {k: rows[k] / n for k in categories}
    p_col = {k: cols[k] / n for k in categories}
    observed = sum(p.get((k, k), 0.0) for k in categories)
    expected = sum(p_row[k] * p_col[k] for k in categories)
    if math.isclose(expected, 1.0):
        return Kappa(None, None, None, None, observed, expected)
    kappa = (observed - expected) / (1 - expected)
    diagonal = sum(p.get((i, i), 0.0) * (1 - (p_row[i] + p_col[i]) * (1 - kappa)) ** 2 for i in categories)
    off = (
        sum(p.get((i, j), 0.0) * (p_col[i] + p_row[j]) ** 2 for i in categories for j in categories if i != j)
        * (1 - kappa) ** 2
    )
    variance = (diagonal + off - (kappa - expected * (1 - kappa)) ** 2) / (n * (1 - expected) ** 2)
    se = math.sqrt(max(variance, 0.0))
    return Kappa(kappa, se, max(-1.0, kappa - Z_95 * se), min(1.0, kappa + Z_95 * se), observed, expected)


@dataclass(frozen=True)
class SignedTimepoint:
    patient_id: str
    label: str
    scan_date: str
    criterion: str
    engine: str | None
    signed: str
    reader: str
    signed_at: str


def signed_timepoints(
    session: Session, systems: LocalSystems, labels: Mapping[str, str], start: Any = None, end: Any = None
) -> list[SignedTimepoint]:
    """The current sign-off of every (timepoint, criterion) of the patients in ``labels``, scans in [start, end],
    beside the engine's current category."""
    rows = session.scalars(select(SignOff).order_by(SignOff.id))
    current: dict[tuple[int, str], SignOff] = {}
    for row in rows:
        if (
            row.patient_id in labels
            and (start is None or row.scan_date >= start)
            and (end is None or row.scan_date <= end)
        ):
            current[(row.report_id, row.criterion)] = row
    out = []
    for (report_id, criterion), row in sorted(current.items(), key=lambda item: (item[1].scan_date, item[0])):
        report = session.get(Report, report_id)
        engine = signoff.engine_category(session, systems, report, criterion) if report is not None else None
        out.append(
            SignedTimepoint(
                row.patient_id,
                labels[row.patient_id],
                row.scan_date.isoformat(),
                criterion,
                engine,
                row.category,
                row.reader,
                row.signed_at.isoformat(),
            )
        )
    return out


def concordance(timepoints: Sequence[SignedTimepoint]) -> list[dict[str, Any]]:
    """Per criterion: counts, the confusion table (engine rows × signed columns), agreement, kappa and its CI,
    and the discordant timepoints (with the patient id for the page link)."""
    out = []
    for criterion in sorted({t.criterion for t in timepoints}):
        mine = [t for t in timepoints if t.criterion == criterion]
        pairs = [(t.engine, t.signed) for t in mine if t.engine is not None]
        categories = sorted({c for pair in pairs for c in pair})
        cells = Counter(pairs)
        stats = cohen_kappa(pairs) if pairs else None
        out.append(
            {
                "criterion": criterion,
                "signed": len(mine),
                "compared": len(pairs),
                "engine_not_evaluated": len(mine) - len(pairs),
                "categories": categories,
                "table": [[cells[(engine, signed)] for signed in categories] for engine in categories],
                "agreement": round(stats.observed, 4) if stats else None,
                "kappa": _round(stats.kappa) if stats else None,
                "kappa_se": _round(stats.se) if stats else None,
                "kappa_ci95": [_round(stats.low), _round(stats.high)] if stats and stats.kappa is not None else None,
                "method": METHOD,
                "discordant": [
                    {
                        "patient": t.label,
                        "patient_id": t.patient_id,
                        "scan_date": t.scan_date,
                        "engine": t.engine,
                        "signed": t.signed,
                        "reader": t.reader,
                    }
                    for t in mine
                    if t.engine is not None and t.engine != t.signed
                ],
            }
        )
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


CSV_COLUMNS = [
    "criterion",
    "patient",
    "scan_date",
    "engine_category",
    "signed_category",
    "agrees",
    "reader",
    "signed_at",
]


def csv_rows(timepoints: Sequence[SignedTimepoint]) -> list[list[str]]:
    return [
        [
            t.criterion,
            t.label,
            t.scan_date,
            t.engine or "",
            t.signed,
            "" if t.engine is None else str(t.engine == t.signed).lower(),
            t.reader,
            t.signed_at,
        ]
        for t in timepoints
    ]
