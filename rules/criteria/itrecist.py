"""itRECIST — RECIST for intratumoral immunotherapy (Goldmacher 2020): size spec §6. Provisional ([U] rules).

- Lesion classes (§6.1): targets and non-targets fixed at baseline; each is injected (T-I, NT-I) or non-injected
  (T-NI, NT-NI) at each visit, from ``LesionMeasurement.injected`` and from intratumoral-injection ``LocalTherapy``
  facts naming the lesion. A lesion may move from non-injected to injected (from the visit after the injection
  on), never back. Table ``lesion_class`` in ``rules/rulesets/itrecist.yaml``.
- Three RECIST-1.1-style assessments (§6.2), each with its own sum of diameters, baseline and nadir:
  - overall: every target, non-target and new lesion — RECIST 1.1 itself (``recist11.assess``) up to the first
    progression, then iRECIST-like (§6.2: the assessment continues; later scans take their iRECIST category [D]);
  - injected (local) [U]: T-I sum and NT-I lesions only;
  - non-injected (systemic) [U]: T-NI sum, NT-NI lesions and new lesions (new lesions were never injected).
  The local and systemic responses reuse ``recist11.evaluate_timepoint`` on the lesion subset; they are reported in
  ``TimepointResponse.extra`` (``injected_response``, ``noninjected_response``, ``injected_sum_mm``,
  ``noninjected_sum_mm``, with their baselines, nadirs and changes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria import irecist, recist11
from rules.criteria.burden import TumourFilter, fraction_as_decimal
from rules.criteria.recist_family import (
    baseline_conformance as recist_baseline_conformance,
)
from rules.criteria.recist_family import (
    is_measurable,
    locally_treated_lesions,
    recist_diameter,
)
from rules.engine import Engine, RuleSet
from rules.facts import LesionRole, LocalTherapyKind
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "itRECIST"
INJECTED = "injected"
NON_INJECTED = "non-injected"
SERIES = (INJECTED, NON_INJECTED)
EXTRA_KEY = {INJECTED: "injected", NON_INJECTED: "noninjected"}
"""Prefix of each series' keys in ``TimepointResponse.extra``."""


# --- injection status and lesion classes -------------------------------------------------------------------


class InjectionHistory:
    """Whether each baseline lesion is injected at each visit (spec §6.1, §6.2 engine recommendation [D]).

    - At baseline: reported injected on the baseline scan, or named by an intratumoral injection performed on or
      before day 0 (C1D1, or the baseline scan when later) — the lesions chosen for injection.
    - At a follow-up: injected before, reported injected on this scan, or named by an injection performed on or
      before this scan: a non-injected lesion is re-classified from that visit on.
    - Injected lesions stay injected: a later "not injected" report is ignored with a warning (itRECIST allows
      only non-injected → injected).
    """

    def __init__(self, timeline: Timeline) -> None:
        self.warnings: list[str] = []
        self._status: dict[tuple[str, dt.date], bool] = {}
        self.reclassified: dict[dt.date, list[str]] = {}
        baseline = timeline.established_baseline
        procedures = [t for t in timeline.facts.local_therapies if t.kind is LocalTherapyKind.INTRATUMORAL_INJECTION]
        day0 = max(timeline.anchor_date or baseline.scan_date, baseline.scan_date)
        lesions = [lesion for lesion in timeline.lesions.values() if lesion.role is not LesionRole.NEW]
        previous: dict[str, bool] = {}
        for tp in (baseline, *timeline.followups):
            cutoff = day0 if tp is baseline else tp.scan_date
            for lesion in lesions:
                m = tp.of(lesion.lesion_id)
                by_procedure = any(lesion.lesion_id in p.lesion_ids and p.performed_date <= cutoff for p in procedures)
                before = previous.get(lesion.lesion_id, False)
                now = before or by_procedure or bool(m is not None and m.injected)
                if before and m is not None and m.injected is False:
                    self.warnings.append(
                        f"{lesion_name(lesion)} is reported not injected on {tp.scan_date} after being "
                        f"injected: kept injected (itRECIST re-classifies non-injected → injected only)"
                    )
                if tp is not baseline and now and not before:
                    self.reclassified.setdefault(tp.scan_date, []).append(lesion_name(lesion))
                self._status[(lesion.lesion_id, tp.scan_date)] = now
                previous[lesion.lesion_id] = now
        for lesion in timeline.lesions.values():
            if lesion.role is LesionRole.NEW and any(
                (m := tp.of(lesion.lesion_id)) is not None and m.injected for tp in timeline.followups
            ):
                self.warnings.append(
                    f"new lesion {lesion_name(lesion)} is reported injected: new lesions count as "
                    f"non-injected (spec §6.2 [U])"
                )

    def injected(self, lesion: TrackedLesion, day: dt.date) -> bool:
        return self._status.get((lesion.lesion_id, day), False)


def lesion_classes(
    engine: Engine, timeline: Timeline, history: InjectionHistory, day: dt.date
) -> dict[str, tuple[str, str]]:
    """lesion id → (class, series) at ``day``, from the ``lesion_class`` table."""
    classes = {}
    for lesion in timeline.lesions.values():
        if lesion.role is LesionRole.NEW and lesion.first_seen > day:
            continue
        decision = engine.decide(
            CRITERION,
            "lesion_class",
            {
                "role": lesion.role.value,
                "injected": lesion.role is not LesionRole.NEW and history.injected(lesion, day),
            },
        )
        classes[lesion.lesion_id] = (decision["lesion_class"], decision["series"])
    return classes


# --- one series (injected or non-injected) ------------------------------------------------------------------


@dataclass
class SeriesState:
    """A series' memory across visits: its RECIST state and the sums it reported."""

    name: str
    prior_cr: bool = False
    prior_target_response: bool = False
    progression_date: dt.date | None = None
    recorded: list[tuple[dt.date, Decimal, bool]] = field(default_factory=list)
    """(visit, reported sum, evaluable) for the 'as-recorded' references."""
    recorded_baseline: Decimal = Decimal(0)


@dataclass(frozen=True)
class SeriesResult:
    response: str | None
    sum_mm: Decimal | None
    baseline_mm: Decimal | None
    nadir_mm: Decimal | None
    complete: bool
    trace: tuple[str, ...]


class LesionValues:
    """RECIST 1.1 diameters of every lesion at every visit (``None`` = not assessed), for the series references."""

    def __init__(self, timeline: Timeline, recist: RuleSet, flags: Mapping[str, Any]) -> None:
        too_small = fraction_as_decimal(recist.threshold("too_small_default_diameter").value)
        self._values: dict[tuple[str, dt.date], Decimal | None] = {}
        for tp in (timeline.established_baseline, *timeline.followups):
            blocked = (
                locally_treated_lesions(timeline, tp.scan_date)
                if flags["locally_treated_target_not_assessable"] and tp is not timeline.baseline
                else set()
            )
            for lesion in timeline.lesions.values():
                value = None
                if lesion.lesion_id not in blocked:
                    value, _ = recist_diameter(tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small)
                self._values[(lesion.lesion_id, tp.scan_date)] = value

    def total(self, lesions: Sequence[TrackedLesion], day: dt.date) -> Decimal | None:
        """Sum at ``day`` over ``lesions``; ``None`` if any was not assessed."""
        if any(self._values.get((lesion.lesion_id, day)) is None for lesion in lesions):
            return None
        return self.baseline_total(lesions, day)

    def baseline_total(self, lesions: Sequence[TrackedLesion], day: dt.date) -> Decimal:
        """Sum at ``day`` over the ``lesions`` that have a value: the baseline sum leaves out a target without a
        diameter, as ``recist11.baseline_sum`` does, which warns about it."""
        values = (self._values.get((lesion.lesion_id, day)) for lesion in lesions)
        return sum((v for v in values if v is not None), Decimal(0))


def series_references(
    state: SeriesState,
    targets: Sequence[TrackedLesion],
    values: LesionValues,
    timeline: Timeline,
    earlier: Sequence[dt.date],
    policy: str,
) -> tuple[Decimal, Decimal]:
    """(baseline, nadir) of a series at a visit (spec §6.2 engine recommendation [D], flag
    ``itrecist.reclassification_references``); the nadir includes baseline and skips not-evaluable visits."""
    if policy == "as-recorded":
        base = state.recorded_baseline
        evaluable = [total for _, total, ok in state.recorded if ok]
        return base, min([base, *evaluable])
    if policy != "recompute":
        raise ValueError(f"itrecist.reclassification_references must be 'recompute' or 'as-recorded', not {policy!r}")
    base = values.baseline_total(targets, timeline.established_baseline.scan_date)
    sums = [values.total(targets, day) for day in earlier]
    return base, min([base, *(s for s in sums if s is not None)])


def series_response(
    engine: Engine,
    recist: RuleSet,
    timeline: Timeline,
    tp: Timepoint,
    state: SeriesState,
    classes: Mapping[str, tuple[str, str]],
    values: LesionValues,
    earlier: Sequence[dt.date],
    flags: Mapping[str, Any],
    recist_flags: Mapping[str, Any],
    is_tumour: TumourFilter | None = None,
) -> SeriesResult:
    """The injected or non-injected response at ``tp``: RECIST 1.1 (``recist11.evaluate_timepoint``) over the
    lesions of that series at that visit, against the series' own baseline and nadir."""
    members = {lid: timeline.lesions[lid] for lid, (_, series) in classes.items() if series == state.name}
    targets = [lesion for lesion in members.values() if lesion.role is LesionRole.TARGET]
    has_baseline_disease = any(lesion.role is not LesionRole.NEW for lesion in members.values())
    has_new = any(lesion.role is LesionRole.NEW for lesion in members.values())
    if not has_baseline_disease and not has_new:
        return SeriesResult(None, None, None, None, False, (f"{state.name}: no lesion in this class",))
    base, nadir = series_references(state, targets, values, timeline, earlier, flags["reclassification_references"])
    view = dataclasses.replace(timeline, lesions=members)
    c = recist11.evaluate_timepoint(
        engine,
        recist,
        view,
        tp,
        baseline_mm=base,
        nadir_mm=nadir,
        prior_overall_cr=state.prior_cr,
        prior_target_response=state.prior_target_response,
        flags=recist_flags,
        is_tumour=is_tumour,
    )
    response: str | None = c.overall
    if not has_baseline_disease and response == "NE":
        # Non-injected series without baseline disease: only new lesions can say anything (PD).
        response = None
    names = ", ".join(f"{lesion_name(lesion)}" for lesion in members.values() if lesion.role is not LesionRole.NEW)
    trace = (f"{state.name} lesions: {names or 'none at baseline'}",) + tuple(
        f"{state.name}: {line}" for line in c.trace
    )
    if state.progression_date is not None:
        # As RECIST 1.1 §1.7: once a series has progressed, later visits are post-PD and never re-graded.
        response = "PD"
        trace += (f"{state.name}: progression on {state.progression_date}; this visit is post-PD (not re-graded)",)
    return SeriesResult(
        response,
        c.sum_mm if targets else None,
        base if targets else None,
        nadir if targets else None,
        c.complete_sum,
        trace,
    )


def update_series(state: SeriesState, result: SeriesResult, day: dt.date) -> None:
    if result.response is None:
        return
    if state.progression_date is None and result.response == "PD":
        state.progression_date = day
    state.prior_cr = state.prior_cr or result.response == "CR"
    state.prior_target_response = state.prior_target_response or result.response in ("CR", "PR")
    if result.sum_mm is not None:
        state.recorded.append((day, result.sum_mm, result.complete and result.response != "NE"))


# --- baseline conformance and assessment ------------------------------------------------------------------


def baseline_conformance(
    timeline: Timeline, ruleset: RuleSet, recist: RuleSet, classes: Mapping[str, tuple[str, str]]
) -> list[str]:
    """itRECIST baseline checks, as warnings (spec §6.1): 1–5 T-I, 1–5 T-NI, ≤ 10 targets, RECIST 1.1 measurability."""
    warnings = []
    counts = {"T-I": 0, "T-NI": 0}
    for lesion_class, _ in classes.values():
        if lesion_class in counts:
            counts[lesion_class] += 1
    for lesion_class, low, high in (
        ("T-I", "injected_targets_min", "injected_targets_max"),
        ("T-NI", "noninjected_targets_min", "noninjected_targets_max"),
    ):
        if not ruleset.threshold(low).holds(counts[lesion_class]) or not ruleset.threshold(high).holds(
            counts[lesion_class]
        ):
            warnings.append(
                f"{counts[lesion_class]} {lesion_class} target lesions at baseline (itRECIST: between "
                f"{int(ruleset.threshold(low).value)} and {int(ruleset.threshold(high).value)})"
            )
    total = counts["T-I"] + counts["T-NI"]
    if not ruleset.threshold("max_targets").holds(total):
        warnings.append(
            f"{total} target lesions at baseline (itRECIST allows at most {int(ruleset.threshold('max_targets').value)})"
        )
    for target in timeline.lesions_with_role(LesionRole.TARGET):
        m = timeline.established_baseline.of(target.lesion_id)
        if m is not None and not is_measurable(m, recist, timeline.established_baseline.scan.slice_thickness_mm):
            warnings.append(
                f"target {lesion_name(target)} is not measurable at baseline (RECIST 1.1 §3.1.1, as itRECIST)"
            )
    return warnings


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: TumourFilter | None = None,
) -> CriterionAssessment:
    """itRECIST over the whole timeline: overall response as RECIST 1.1 up to the first overall PD, then the
    iRECIST category of each later scan (spec §6.2: assessment continues iRECIST-like), with the injected and
    non-injected responses at each timepoint in ``extra``. Provisional (spec §6 [U])."""
    ruleset = engine.rulebase[CRITERION]
    recist = engine.rulebase[ruleset.parameters.get("measurement_rules", recist11.CRITERION)]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",), provisional=True)
    recist_flags = {
        name: flags[name] for name in ("sticky_pr", "ne_partial_pd", "locally_treated_target_not_assessable")
    }
    recist_overrides = dict(overrides or {})
    recist_overrides.update({f"{recist.flag_prefix}.{name}": value for name, value in recist_flags.items()})
    overall = recist11.assess(engine, timeline, recist_overrides, is_tumour=is_tumour)

    history = InjectionHistory(timeline)
    values = LesionValues(timeline, recist, flags)
    base_classes = lesion_classes(engine, timeline, history, timeline.established_baseline.scan_date)
    states = {name: SeriesState(name) for name in SERIES}
    for name, state in states.items():
        state.recorded_baseline = values.baseline_total(
            [
                timeline.lesions[lid]
                for lid, (cls, series) in base_classes.items()
                if series == name and timeline.lesions[lid].role is LesionRole.TARGET
            ],
            timeline.established_baseline.scan_date,
        )

    graded = list(overall.timepoints)
    continued_note = ""
    if overall.progression_date is not None:
        # Size spec §6.2: assessment continues after the first progression, iRECIST-like (parameters of the rule file).
        after = ruleset.parameters["after_first_progression"]
        if after["criterion"] != irecist.CRITERION:
            raise ValueError(f"itRECIST continues with iRECIST only, not {after['criterion']!r}")
        continued = irecist.assess(engine, timeline, overrides, is_tumour=is_tumour)
        graded += [t for t in continued.timepoints if t.scan_date > overall.progression_date]
        continued_note = (
            f"after the first progression of {overall.progression_date}, itRECIST continues iRECIST-like "
            f"(Goldmacher 2020): this scan takes its iRECIST category ({after['source']})"
        )

    responses: list[TimepointResponse] = []
    earlier: list[dt.date] = []
    for response in graded:
        tp = next(t for t in timeline.followups if t.scan_date == response.scan_date)
        classes = lesion_classes(engine, timeline, history, tp.scan_date)
        extra: dict[str, Any] = {
            "lesion_classes": {lesion_name(timeline.lesions[lid]): cls for lid, (cls, _) in classes.items()},
            "reclassified": tuple(history.reclassified.get(tp.scan_date, ())),
        }
        trace = list(response.trace)
        if response.criterion == irecist.CRITERION:
            trace.insert(0, continued_note)
            extra = {**response.extra, **extra}  # the iRECIST episode and its confirmation window stay visible
        if extra["reclassified"]:
            trace.append("re-classified non-injected → injected from this visit: " + ", ".join(extra["reclassified"]))
        for name in SERIES:
            result = series_response(
                engine, recist, timeline, tp, states[name], classes, values, earlier, flags, recist_flags, is_tumour
            )
            key = EXTRA_KEY[name]
            extra[f"{key}_response"] = result.response
            extra[f"{key}_sum_mm"] = result.sum_mm
            extra[f"{key}_baseline_mm"] = result.baseline_mm
            extra[f"{key}_nadir_mm"] = result.nadir_mm
            sum_mm, baseline_mm, nadir_mm = result.sum_mm, result.baseline_mm, result.nadir_mm
            changes: tuple[Fraction | None, Fraction | None, Decimal | None] = (None, None, None)
            if result.complete and sum_mm is not None and baseline_mm is not None and nadir_mm is not None:
                changes = (percent_change(sum_mm, baseline_mm), percent_change(sum_mm, nadir_mm), sum_mm - nadir_mm)
            (
                extra[f"{key}_percent_from_baseline"],
                extra[f"{key}_percent_from_nadir"],
                extra[f"{key}_absolute_from_nadir"],
            ) = changes
            trace.extend(result.trace)
            update_series(states[name], result, tp.scan_date)
        extra["injected_progression_date"] = states[INJECTED].progression_date
        extra["noninjected_progression_date"] = states[NON_INJECTED].progression_date
        earlier.append(tp.scan_date)
        responses.append(dataclasses.replace(response, criterion=CRITERION, trace=tuple(trace), extra=extra))

    recist_conformance = set(recist_baseline_conformance(timeline, recist))
    warnings = [w for w in overall.warnings if w not in recist_conformance]
    warnings = baseline_conformance(timeline, ruleset, recist, base_classes) + warnings + history.warnings
    if overall.progression_date is not None:
        warnings.append(
            f"itRECIST continues assessment after the first progression ({overall.progression_date}) iRECIST-like "
            "(Goldmacher 2020): later scans take their iRECIST category [D]"
        )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=overall.best_response,
        best_response_confirmed=overall.best_response_confirmed,
        progression_date=overall.progression_date,
        warnings=tuple(warnings),
        provisional=True,
    )
