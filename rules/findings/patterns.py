"""Atypical response patterns (kinetics spec §4.2–§4.4): dissociated, abscopal and durable response.

- ``dissociated_response(timeline)``: lesion-level, per follow-up versus baseline (§4.2 engine rule, worked
  example K9): a responding lesion (≤ −30 %) together with a progressing one (≥ +20 % and ≥ 5 mm) or a new
  lesion. Accompanies, never replaces, the RECIST/iRECIST category.
- ``abscopal_response(timeline)``: after local therapy at T of lesions Λ, an untreated lesion decreasing by
  ≥ 30 % versus its last pre-T measurement within 12 months (§4.3). Candidate only: no causal claim.
- ``durable_response(criteria, treatment_start)``: durable response rate (DRR, Kaufman 2017): a continuous
  CR/PR beginning within 12 months of treatment start and lasting ≥ 6 months, on RECIST 1.1 and iRECIST.

Thresholds, tables and flags: ``rules/rulesets/patterns.yaml`` (criterion ``atypical-patterns``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria.recist_family import new_lesion_readings, recist_diameter
from rules.engine import Engine, RuleSet, get_engine
from rules.facts import LesionRole
from rules.findings.irae import exact_parameter, is_tumour
from rules.results import CriterionAssessment, Finding, TimepointResponse, fmt_mm, fmt_pct, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "atypical-patterns"
RECIST = "RECIST-1.1"
DISSOCIATED_WORDING = "dissociated response — consider local therapy of discordant lesion(s) and confirmation imaging"
"""Recommended wording of §4.2."""


def months_between(start: dt.date, end: dt.date, ruleset: RuleSet) -> Fraction:
    """``days × 12 / 365.25`` exactly (spec §0 [V:FERTE-code])."""
    return Fraction((end - start).days) / exact_parameter(ruleset.parameters["days_per_month"])


def _too_small_mm(engine: Engine) -> Decimal:
    """RECIST 1.1 Appendix I default for 'too small to measure' (the lesion set uses RECIST diameters)."""
    value = engine.rulebase[RECIST].threshold("too_small_default_diameter").value
    return Decimal(value.numerator) / Decimal(value.denominator)


def _diameter(tp: Timepoint, lesion: TrackedLesion, too_small: Decimal) -> Decimal | None:
    value, _ = recist_diameter(tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small)
    return value


def first_local_treatment(timeline: Timeline) -> dict[str, dt.date]:
    """When each lesion was first irradiated or injected: listed in a local therapy, or flagged on a measurement."""
    first: dict[str, dt.date] = {}
    for therapy in timeline.facts.local_therapies:
        for lesion_id in therapy.lesion_ids:
            first[lesion_id] = min(first.get(lesion_id, therapy.performed_date), therapy.performed_date)
    for m in timeline.facts.measurements:
        if m.irradiated or m.injected:
            first[m.lesion_id] = min(first.get(m.lesion_id, m.scan_date), m.scan_date)
    return first


def locally_treated(
    timeline: Timeline, lesion_id: str, up_to: dt.date, treated: dict[str, dt.date] | None = None
) -> bool:
    """Irradiated or injected on or before ``up_to``."""
    when = (treated if treated is not None else first_local_treatment(timeline)).get(lesion_id)
    return when is not None and when <= up_to


# --- dissociated response (§4.2) ----------------------------------------------------------------------


@dataclass(frozen=True)
class LesionChange:
    lesion: TrackedLesion
    baseline_mm: Decimal
    current_mm: Decimal
    change: str
    """``responding`` | ``progressing`` | ``neither``."""

    def describe(self) -> str:
        delta = self.current_mm - self.baseline_mm
        return (
            f"{lesion_name(self.lesion)} {fmt_mm(self.baseline_mm)} → {fmt_mm(self.current_mm)} "
            f"({'+' if delta > 0 else ''}{fmt_mm(delta)}, {fmt_pct(percent_change(self.current_mm, self.baseline_mm))}): "
            f"{self.change}"
        )


def lesion_changes(
    timeline: Timeline, tp: Timepoint, *, engine: Engine, overrides: Mapping[str, Any] | None = None
) -> list[LesionChange]:
    """Target and measured non-target lesions versus baseline (§4.2: SA for nodes; disappeared = 0 mm)."""
    ruleset = engine.rulebase[CRITERION]
    resp, prog, prog_mm = (ruleset.threshold(n) for n in ("dr_resp_thr", "dr_prog_thr", "dr_prog_min_mm"))
    exclude_treated = bool(ruleset.flag("dr_exclude_locally_treated", overrides))
    too_small = _too_small_mm(engine)
    treated = first_local_treatment(timeline) if exclude_treated else {}
    changes = []
    for lesion in timeline.lesions.values():
        if lesion.role not in (LesionRole.TARGET, LesionRole.NON_TARGET):
            continue
        if exclude_treated and locally_treated(timeline, lesion.lesion_id, tp.scan_date, treated):
            continue
        base = _diameter(timeline.established_baseline, lesion, too_small)
        now = _diameter(tp, lesion, too_small)
        if base is None or now is None or base == 0:
            continue  # a non-target without a measured diameter is not in the lesion set
        delta = now - base
        decision = engine.decide(
            CRITERION,
            "lesion_change",
            {
                "meets_responding": resp.holds(delta, base),
                "meets_progression_fraction": prog.holds(delta, base),
                "meets_progression_mm": prog_mm.holds(delta),
            },
        )
        changes.append(LesionChange(lesion, base, now, decision["change"]))
    return changes


def dissociated_response(
    timeline: Timeline, *, engine: Engine | None = None, overrides: Mapping[str, Any] | None = None
) -> list[Finding]:
    """A ``dissociated-response`` Finding (warning) at each follow-up where §4.2's rule holds."""
    engine = engine or get_engine()
    ruleset = engine.rulebase[CRITERION]
    if timeline.baseline is None:
        return []
    out = []
    for tp in timeline.followups:
        changes = lesion_changes(timeline, tp, engine=engine, overrides=overrides)
        new, _equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
        responding = [c for c in changes if c.change == "responding"]
        progressing = [c for c in changes if c.change == "progressing"]
        decision = engine.decide(
            CRITERION,
            "dissociated",
            {"any_responding": bool(responding), "any_progressing": bool(progressing), "any_new": bool(new)},
        )
        if not decision["dissociated"]:
            continue
        discordant = [lesion_name(c.lesion) for c in progressing] + [lesion_name(lesion) + " (new)" for lesion in new]
        lines = [c.describe() for c in changes]
        if new:
            lines.append("new lesion(s), counted as progressing: " + ", ".join(lesion_name(lesion) for lesion in new))
        lines.append(
            f"Discordant: {', '.join(discordant)}. Accompanies the RECIST/iRECIST category, does not replace it."
        )
        out.append(
            Finding(
                code="dissociated-response",
                scan_date=tp.scan_date,
                severity="warning",
                summary=f"{DISSOCIATED_WORDING} (discordant: {', '.join(discordant)})",
                detail="\n".join(lines),
                rule=decision.trace(),
                source=ruleset.source,
                alert=True,
                key=tp.scan_date.isoformat(),
            )
        )
    return out


# --- abscopal response (§4.3) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AbscopalCandidate:
    lesion: TrackedLesion
    reference_date: dt.date
    reference_mm: Decimal
    scan_date: dt.date
    current_mm: Decimal


def abscopal_response(timeline: Timeline, *, engine: Engine | None = None) -> list[Finding]:
    """An ``abscopal-response`` Finding per local therapy after which an untreated lesion shrank ≥ 30 % (§4.3).

    Λ = the lesions the therapy lists, plus lesions flagged irradiated/injected; a therapy naming no lesion and
    with no flagged lesion cannot separate treated from untreated lesions and is skipped [D]. The reference is
    the last measurement on or before T (a same-day scan precedes the treatment) [D].
    """
    engine = engine or get_engine()
    ruleset = engine.rulebase[CRITERION]
    if timeline.baseline is None:
        return []
    window, decrease = ruleset.threshold("abscopal_window_months"), ruleset.threshold("abscopal_min_decrease")
    too_small = _too_small_mm(engine)
    points = [*timeline.prebaseline, timeline.baseline, *timeline.followups]
    out = []
    for therapy in sorted(timeline.facts.local_therapies, key=lambda t: (t.performed_date, t.kind.value)):
        day = therapy.performed_date
        flagged = {m.lesion_id for m in timeline.facts.measurements if m.irradiated or m.injected}
        if not therapy.lesion_ids and not flagged:
            continue
        candidates: list[AbscopalCandidate] = []
        traces: list[str] = []
        for lesion in timeline.lesions.values():
            before = [
                (tp, v) for tp in points if tp.scan_date <= day and (v := _diameter(tp, lesion, too_small)) is not None
            ]
            before = [(tp, v) for tp, v in before if v > 0]
            if not before:
                continue
            ref_tp, ref_mm = before[-1]
            for tp in (p for p in points if p.scan_date > day):
                now = _diameter(tp, lesion, too_small)
                if now is None:
                    continue
                treated = lesion.lesion_id in therapy.lesion_ids or locally_treated(
                    timeline, lesion.lesion_id, tp.scan_date
                )
                decision = engine.decide(
                    CRITERION,
                    "abscopal",
                    {
                        "locally_treated": treated,
                        "within_window": window.holds(months_between(day, tp.scan_date, ruleset)),
                        "meets_decrease": decrease.holds(now - ref_mm, ref_mm),
                    },
                )
                if decision["candidate"]:
                    candidates.append(AbscopalCandidate(lesion, ref_tp.scan_date, ref_mm, tp.scan_date, now))
                    traces.append(decision.trace())
                    break
        if not candidates:
            continue
        first = min(c.scan_date for c in candidates)
        lines = [
            f"{lesion_name(c.lesion)}: {fmt_mm(c.reference_mm)} on {c.reference_date} → {fmt_mm(c.current_mm)} "
            f"on {c.scan_date} ({fmt_pct(percent_change(c.current_mm, c.reference_mm))}), not locally treated"
            for c in candidates
        ]
        lines.append(
            "Systemic immunotherapy given in the same window may explain the regression: this is an "
            "association to review, not a causal attribution (§4.3)."
        )
        out.append(
            Finding(
                code="abscopal-response",
                scan_date=first,
                severity="info",
                summary=(
                    f"Possible abscopal response: untreated lesion(s) decreased by ≥ 30 % after "
                    f"{therapy.kind.value.replace('-', ' ')} on {day}"
                ),
                detail="\n".join(lines),
                rule="; ".join(dict.fromkeys(traces)),
                source=ruleset.source,
                alert=True,
                key=f"{therapy.kind.value}-{day.isoformat()}",
            )
        )
    return out


# --- durable response (§4.4) ----------------------------------------------------------------------------


def durable_response(
    criteria: Sequence[CriterionAssessment],
    treatment_start: dt.date | None = None,
    *,
    engine: Engine | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """A ``durable-response`` info Finding (never an alert) per criterion with a DRR-qualifying response run.

    ``treatment_start`` is C1D1 (``timeline.treatment_start``): without it the "beginning within 12 months"
    condition cannot be checked and nothing is reported.
    """
    engine = engine or get_engine()
    ruleset = engine.rulebase[CRITERION]
    if treatment_start is None:
        return []
    categories: Mapping[str, Sequence[str]] = ruleset.parameters["durable_response_categories"]
    onset_limit, duration_min = ruleset.threshold("drr_onset_max_months"), ruleset.threshold("drr_min_duration_months")
    ne_interrupts = bool(ruleset.flag("drr_ne_interrupts", overrides))
    out = []
    for assessment in criteria:
        responses = set(categories.get(assessment.criterion, ()))
        if not responses:
            continue
        for run in _response_runs(assessment, responses, ne_interrupts):
            start, end = run[0].scan_date, run[-1].scan_date
            duration = months_between(start, end, ruleset)
            decision = engine.decide(
                CRITERION,
                "durable_response",
                {
                    "onset_within_limit": onset_limit.holds(months_between(treatment_start, start, ruleset)),
                    "duration_meets": duration_min.holds(duration),
                },
            )
            if not decision["durable"]:
                continue
            reached = next(tp for tp in run if duration_min.holds(months_between(start, tp.scan_date, ruleset)))
            out.append(
                Finding(
                    code="durable-response",
                    scan_date=reached.scan_date,
                    severity="info",
                    summary=(
                        f"durable response ({assessment.criterion}): continuous {'/'.join(sorted(responses))} from "
                        f"{start} to {end}"
                    ),
                    detail=(
                        f"Response began day {(start - treatment_start).days} after treatment start and lasted "
                        f"{(end - start).days} days ({float(duration):.2f} months) on "
                        f"{', '.join(f'{tp.scan_date} {tp.category}' for tp in run)}. DRR: continuous CR or PR "
                        f"beginning within 12 months and lasting ≥ 6 months (Kaufman 2017)."
                    ),
                    rule=decision.trace(),
                    source=ruleset.source,
                    alert=False,
                    key=assessment.criterion,
                    distinct_by_key=True,  # one per criterion
                )
            )
            break
    return out


def _response_runs(
    assessment: CriterionAssessment, responses: set[str], ne_interrupts: bool
) -> Iterator[list[TimepointResponse]]:
    """Maximal runs of consecutive response timepoints (an NE neither ends nor extends a run unless flagged)."""
    run: list[TimepointResponse] = []
    for tp in assessment.timepoints:
        if tp.category in responses:
            run.append(tp)
        elif tp.category == "NE" and not ne_interrupts:
            continue
        else:
            if run:
                yield run
            run = []
    if run:
        yield run
