"""iPERCIST (Goldfarb 2019): size spec §7.3, worked examples E5 and E7 (PET add-ons).

Every follow-up PET is first graded by PERCIST 1.0 against the baseline (``percist.evaluate_scan``: reused, with
the ``percist.*`` flags). iPERCIST then adds confirmation:

- PERCIST PMD → **UPMD** (unconfirmed), dated at that scan;
- at the next PET 28–56 days later (``ipercist.confirm_window_days``): PERCIST PMD again **against baseline** →
  **CPMD** (confirmed; progression dated to the UPMD scan, and final); CMR, PMR or SMD → reset to that category
  (E7 TP2: PMR); an earlier PMD scan keeps the UPMD open; a later one still confirms, with a warning;
- a UPMD caused only by new lesions is flagged for reader review, and so is its confirmation when those new lesions
  are unchanged (policy [D]: the sources do not say whether a stable new lesion confirms).

Categories come from the ``confirmation`` table of ``rules/rulesets/ipercist.yaml``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.criteria import percist, pet
from rules.criteria.recist_family import ResponseOrder, best_overall_response
from rules.engine import Engine
from rules.results import CriterionAssessment, TimepointResponse
from rules.timeline import Timeline

CRITERION = "iPERCIST"
ORDER = ResponseOrder("CMR", "PMR", "SMD", "SMD", ("CPMD",), "NE")
"""Best response: only confirmed progression (CPMD) counts as progression; UPMD does not."""


@dataclass(frozen=True)
class OpenProgression:
    """An unconfirmed PMD awaiting its confirmation scan."""

    date: dt.date
    reading: percist.PercistReading


def _unchanged_new_lesions(opening: percist.PercistReading, reading: percist.PercistReading) -> list[str]:
    """New lesions behind a new-lesion-only UPMD that show neither higher SULpeak nor a longer axis now."""
    now = {u.lesion.lesion_id: u for u in reading.new_avid}
    unchanged = []
    for before in opening.new_avid:
        after = now.get(before.lesion.lesion_id)
        if after is None:
            continue
        grew = after.sul > before.sul or (
            after.measurement.long_axis_mm is not None
            and before.measurement.long_axis_mm is not None
            and after.measurement.long_axis_mm > before.measurement.long_axis_mm
        )
        if not grew:
            unchanged.append(after.name)
    return unchanged


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """iPERCIST at every follow-up PET (spec §7.3)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    percist_rules, percist_flags = percist.ruleset_and_flags(engine, overrides)
    if timeline.baseline is None or not pet.has_pet_values(timeline.baseline):
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline PET with SUL values",))
    window_min = ruleset.required_threshold("confirmation_min_days", flags)
    window_max = ruleset.required_threshold("confirmation_max_days", flags)
    baseline = percist.baseline_reading(percist_rules, percist_flags, timeline, is_tumour=is_tumour)
    state = "none"
    open_progression: OpenProgression | None = None
    progression_date: dt.date | None = None
    responses: list[TimepointResponse] = []
    for tp in pet.pet_followups(timeline):
        reading = percist.evaluate_scan(
            engine, percist_rules, percist_flags, timeline, tp, baseline, is_tumour=is_tumour
        )
        trace = list(reading.trace)
        trace.append(f"PERCIST 1.0 at this scan (against baseline): {reading.category}")
        warnings = list(reading.warnings)
        timing = "in-window"
        if open_progression is not None and state == "upmd":
            days = (tp.scan_date - open_progression.date).days
            timing = "early" if not window_min.holds(days) else ("late" if not window_max.holds(days) else "in-window")
            trace.append(
                f"confirmation scan {days} days after UPMD on {open_progression.date} "
                f"(window {window_min.describe()} and {window_max.describe()}): {timing}"
            )
        decision = engine.decide(
            CRITERION, "confirmation", {"state": state, "percist": reading.category, "timing": timing}
        )
        trace.append(decision.trace())
        category = decision["category"]
        review = False
        confirmed: bool | None = None
        tp_progression: dt.date | None = None
        if category == "UPMD":
            confirmed = False
            if open_progression is None:
                open_progression = OpenProgression(tp.scan_date, reading)
            if reading.new_lesion_only and flags["review_new_lesion_only"]:
                review = True
                warnings.append(
                    "UPMD rests only on new FDG-avid lesion(s) "
                    f"({', '.join(u.name for u in reading.new_avid)}): reader review (ipercist.review_new_lesion_only)"
                )
            due_from = open_progression.date + dt.timedelta(days=int(window_min.value))
            due_to = open_progression.date + dt.timedelta(days=int(window_max.value))
            trace.append(f"confirmation PET due between {due_from} and {due_to}")
        elif category == "CPMD":
            confirmed = True
            if state == "upmd" and open_progression is not None:
                progression_date = open_progression.date
                opening = open_progression.reading
                if timing == "late":
                    warnings.append(f"CPMD confirmed by a scan later than {window_max.describe()} after the UPMD")
                unchanged = _unchanged_new_lesions(opening, reading)
                if (
                    flags["review_new_lesion_only"]
                    and opening.new_lesion_only
                    and reading.new_lesion_only
                    and unchanged
                    and len(unchanged) == len(reading.new_avid)
                ):
                    review = True
                    warnings.append(
                        f"CPMD rests only on unchanged new lesion(s) ({', '.join(unchanged)}): the sources do "
                        f"not say whether a stable new lesion confirms — reader review"
                    )
                open_progression = None
            tp_progression = progression_date
        elif state == "upmd" and decision["state"] == "none" and open_progression is not None:
            trace.append(f"UPMD of {open_progression.date} not confirmed: reset")
            open_progression = None
        state = decision["state"]
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=category,
                new_lesions="present" if reading.new_avid else "absent",
                percent_from_baseline=reading.percent_from_baseline if reading.quantitative_evaluable else None,
                confirmed=confirmed,
                progression_date=tp_progression,
                trace=tuple(trace),
                warnings=tuple(warnings),
                extra=dict(reading.extra, percist_category=reading.category, reader_review=review),
            )
        )
    warnings = list(baseline.warnings)
    if open_progression is not None:
        warnings.append(
            f"UPMD on {open_progression.date} is unconfirmed: a confirmation PET is due "
            f"{window_min.describe()} to {window_max.describe()} after it"
        )
    best = best_overall_response(
        responses,
        anchor=timeline.anchor_date,
        order=ORDER,
        stable_min_days=int(percist_rules.threshold("stable_disease_min_days").value),
        confirm_min_days=0,
        confirmed=False,
    )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=best,
        progression_date=progression_date,
        warnings=tuple(warnings),
    )
