"""Cohort end points over the dashboard's filters (contract §9.7): per criterion, the objective response rate
(ORR) and disease control rate (DCR) with Wilson 95 % intervals, best overall response (BOR), and progression-free
survival (PFS; iPFS for iRECIST) as Kaplan–Meier estimates with the median and its 95 % interval and the numbers
at risk, from the engine's categories and, beside them, from the signed categories where sign-offs exist.

Definitions:

* BOR (engine): the criterion's confirmed best overall response when the engine gives one (each criterion's own
  confirmation rule, as its module applies it: e.g. RECIST 1.1 §4.4 for a non-randomised trial, iRECIST's iCPD),
  else its unconfirmed best response, flagged ``confirmed: false``. Signed: the best category among the signed
  (else engine) timepoints, never confirmed (a sign-off carries no confirmation).
* ORR = patients whose BOR reads as a response (CR/PR family) / patients evaluated by the criterion; DCR adds
  stable disease (SD family, non-CR/non-PD), both classed through ``quality.response_class`` (the mCODE mapping
  of contract §5), so every criterion is read alike.
* PFS: from the treatment start (else the baseline scan) to the first progression the criterion counts as such
  (PD, iCPD, confirmed irPD…; iUPD is not an event) or death, censored at the last assessed scan. For iRECIST the
  event is confirmed progression (iCPD) dated at the iUPD it confirms (Seymour 2017, Lancet Oncol 18:e143, "date
  of progression": the iUPD date when iCPD follows).
* Wilson score interval (Wilson 1927, JASA 22:209): (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), z = 1.96.
* Kaplan–Meier, its median and the median's 95 % interval from ``lifelines`` (KaplanMeierFitter: exponential
  Greenwood, "log(−log)", pointwise interval; the median's interval where the interval's bounds cross 0.5).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.dashboard.quality import Cohort, as_date, response_class, timepoints_in

Z_95 = 1.959963984540054
DAYS_PER_MONTH = 30.4375
"""Average Gregorian month (365.25 / 12) to report times in months."""


@dataclass(frozen=True)
class Proportion:
    events: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


def wilson(events: int, n: int, z: float = Z_95) -> Proportion:
    """The proportion and its Wilson score interval (see the module text); None when n is 0."""
    if n == 0:
        return Proportion(events, n, None, None, None)
    p = events / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return Proportion(events, n, p, (centre - half) / scale, (centre + half) / scale)


@dataclass(frozen=True)
class Survival:
    n: int
    events: int
    median: float | None
    median_low: float | None
    median_high: float | None
    curve: tuple[tuple[float, float, float, float], ...]
    """(time, survival, lower, upper) at each step."""
    at_risk: tuple[tuple[float, int], ...]


def kaplan_meier(durations: Sequence[float], observed: Sequence[bool], at: Sequence[float] = ()) -> Survival:
    """Kaplan–Meier with lifelines: median (None when not reached), its 95 % interval, the curve and the numbers
    at risk at the times ``at`` (months)."""
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]
    from lifelines.utils import median_survival_times  # type: ignore[import-untyped]

    fitter = KaplanMeierFitter(alpha=0.05)
    fitter.fit(list(durations), event_observed=list(observed))
    median = _finite(fitter.median_survival_time_)
    bounds = median_survival_times(fitter.confidence_interval_)
    low, high = (_finite(bounds.iloc[0, 0]), _finite(bounds.iloc[0, 1]))
    table = fitter.survival_function_.join(fitter.confidence_interval_)
    curve = tuple((float(t), float(row.iloc[0]), float(row.iloc[1]), float(row.iloc[2])) for t, row in table.iterrows())
    at_risk = tuple((float(t), int(sum(1 for d in durations if d >= t))) for t in at)
    return Survival(len(durations), int(sum(observed)), median, low, high, curve, at_risk)


def _finite(value: Any) -> float | None:
    value = float(value)
    return None if math.isinf(value) or math.isnan(value) else round(value, 4)


def _months(start: dt.date, end: dt.date) -> float:
    return (end - start).days / DAYS_PER_MONTH


def progression_event(timepoints: Sequence[Mapping[str, Any]]) -> tuple[dt.date | None, dt.date | None]:
    """(event date, last assessed scan): the first progression the criterion counts (an iCPD dated at the iUPD
    it confirms), and the last scan with a category."""
    run_start: dt.date | None = None
    last: dt.date | None = None
    for tp in timepoints:
        day, category = as_date(tp.get("scan_date")), tp.get("category")
        if day is None or not category:
            continue
        last = day
        kind = response_class(category, tp.get("confirmed"))
        if kind == "progression":
            return (run_start if category == "iCPD" and run_start is not None else day), last
        run_start = (run_start or day) if kind == "unconfirmed" else None
    return None, last


CLASS_ORDER = {"response": 0, "stable": 1, "unconfirmed": 2, "progression": 3, "not-evaluable": 4}


def _bor(criterion: Mapping[str, Any], signed: Mapping[str, str] | None) -> tuple[str | None, bool]:
    if signed is None:
        confirmed = (criterion.get("best_response_confirmed") or {}).get("category")
        if confirmed:
            return confirmed, True
        return (criterion.get("best_response") or {}).get("category"), False
    categories = [signed.get(str(tp.get("scan_date")), tp.get("category")) for tp in criterion.get("timepoints") or []]
    ranked = sorted((c for c in categories if c), key=lambda c: CLASS_ORDER[response_class(c)])
    return (ranked[0] if ranked else None), False


def end_points(
    cohort: Cohort,
    signed: Mapping[tuple[str, str], Mapping[str, str]],
    deaths: Mapping[str, dt.date],
    *,
    criterion_filter: str | None = None,
    at_months: Sequence[float] = (0, 3, 6, 9, 12, 18, 24),
) -> list[dict[str, Any]]:
    """Per criterion: from the engine and, where any sign-off exists, from the signed categories.
    ``signed``: (patient id, criterion) → scan date → signed category; ``deaths``: patient id → date of death."""
    per_criterion: dict[str, list[tuple[str, Mapping[str, Any], dt.date]]] = {}
    for patient in cohort.patients:
        origin = as_date(patient.result.get("treatment_start")) or as_date(patient.result.get("baseline_date"))
        if origin is None:
            continue
        for criterion in patient.result.get("criteria") or []:
            name = criterion["criterion"]
            if criterion_filter and name != criterion_filter:
                continue
            per_criterion.setdefault(name, []).append((patient.patient_id, criterion, origin))
    out = []
    for name in sorted(per_criterion):
        rows = per_criterion[name]
        sources = ["engine"]
        if any((pid, name) in signed for pid, _, _ in rows):
            sources.append("signed")
        block: dict[str, Any] = {"criterion": name}
        for source in sources:
            bors, durations, observed = [], [], []
            for pid, criterion, origin in rows:
                overrides = signed.get((pid, name), {}) if source == "signed" else None
                bor, confirmed = _bor(criterion, overrides)
                bors.append((bor, confirmed))
                tps = [_signed(tp, overrides) for tp in timepoints_in(criterion, cohort.filters)]
                event, last = progression_event(tps)
                death = deaths.get(pid)
                if event is None and death is not None:
                    event = death
                end = event or last
                if end is None:
                    continue
                durations.append(max(_months(origin, end), 0.0))
                observed.append(event is not None)
            classes = [response_class(b) for b, _ in bors]
            orr = wilson(sum(c == "response" for c in classes), len(classes))
            dcr = wilson(sum(c in ("response", "stable") for c in classes), len(classes))
            survival = kaplan_meier(durations, observed, at_months) if durations else None
            block[source] = {
                "patients": len(rows),
                "best_overall_response": _bor_counts(bors),
                "orr": _proportion(orr),
                "dcr": _proportion(dcr),
                "pfs": _survival(survival),
                "pfs_name": "iPFS" if name == "iRECIST" else "PFS",
            }
        out.append(block)
    return out


def _signed(tp: Mapping[str, Any], overrides: Mapping[str, str] | None) -> Mapping[str, Any]:
    """The timepoint with its signed category, when signed (a signed category stands as the reader gave it: the
    engine's confirmation flag does not carry over)."""
    category = (overrides or {}).get(str(tp.get("scan_date")))
    return tp if category is None else {**tp, "category": category, "confirmed": None}


def _bor_counts(bors: Sequence[tuple[str | None, bool]]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, bool], int] = {}
    for bor, confirmed in bors:
        key = (bor or "not evaluated", confirmed)
        counts[key] = counts.get(key, 0) + 1
    return [{"category": c, "confirmed": conf, "patients": n} for (c, conf), n in sorted(counts.items())]


def _proportion(p: Proportion) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {"events": p.events, "n": p.n, "rate": r(p.rate), "ci95": [r(p.low), r(p.high)] if p.n else None}


def _survival(s: Survival | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "patients": s.n,
        "events": s.events,
        "median_months": s.median,
        "median_ci95": [s.median_low, s.median_high],
        "curve": [
            {"months": round(t, 3), "survival": round(v, 4), "low": round(lo, 4), "high": round(hi, 4)}
            for t, v, lo, hi in s.curve
        ],
        "at_risk": [{"months": t, "n": n} for t, n in s.at_risk],
        "method": "Kaplan–Meier (lifelines), 95 % CI exponential Greenwood (log(-log)); months of 30.4375 days",
    }


def load_inputs(
    session: Any, cohort: Cohort, therapy_class: str | None
) -> tuple[Cohort, dict[tuple[str, str], dict[str, str]], dict[str, dt.date]]:
    """The cohort narrowed to patients with a therapy line of ``therapy_class`` (when given), the current signed
    categories per (patient, criterion) and scan date, and the dates of death."""
    import dataclasses

    from sqlalchemy import select

    from service.persistence.models import ClinicalFact, Patient, SignOff

    ids = {p.patient_id for p in cohort.patients}
    if therapy_class:
        lines = session.scalars(select(ClinicalFact).where(ClinicalFact.kind == "therapy-line"))
        with_class = {f.patient_id for f in lines if (f.payload or {}).get("therapy_class") == therapy_class}
        cohort = dataclasses.replace(cohort, patients=tuple(p for p in cohort.patients if p.patient_id in with_class))
        ids &= with_class
    signed: dict[tuple[str, str], dict[str, str]] = {}
    for row in session.scalars(select(SignOff).order_by(SignOff.id)):
        if row.patient_id in ids:
            signed.setdefault((row.patient_id, row.criterion), {})[row.scan_date.isoformat()] = row.category
    deaths = {
        pid: day
        for pid, day in session.execute(
            select(Patient.id, Patient.deceased_date).where(Patient.deceased_date.is_not(None))
        )
        if pid in ids
    }
    return cohort, signed, deaths
