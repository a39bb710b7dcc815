"""iRANO (Okada 2015): size spec §10 — provisional (its confirmation interval and back-dating are [U]).

Every follow-up is first graded by RANO 2010 (``rano.evaluate_scan``: reused, with the ``rano.*`` flags, including
the 12-week post-radiotherapy rule). iRANO then changes what RANO PD means:

- RANO PD (new lesions included) **within 6 months** (calendar months from C1D1, end day included) of starting
  immunotherapy, in a patient not significantly worse clinically (observation ``clinical-deterioration``), is
  **provisional**: ``PD`` with ``confirmed = False``;
- it is **confirmed** when RANO PD is met again on a scan ≥ ``irano.confirm_min_days`` (84, "about 3 months" [U])
  later, and the progression is dated to the provisional scan [U]; an earlier PD scan keeps it provisional; a
  RANO CR/PR/SD scan resets it (pseudoprogression);
- RANO PD **after 6 months** — new lesions included — is PD without confirmation [U]; confirmed PD is final.

Categories come from the ``deferral`` table of ``rules/rulesets/irano.yaml``.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.criteria import pet, rano
from rules.criteria.recist_family import ResponseOrder, best_overall_response
from rules.engine import Engine, Threshold
from rules.results import CriterionAssessment, TimepointResponse
from rules.timeline import Timeline

CRITERION = "iRANO"
ORDER = ResponseOrder("CR", "PR", "SD", "NON-CR/NON-PD", ("PD",), "NE")


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus calendar months (the last day of a shorter month when the day does not exist)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def within_months(start: dt.date | None, day: dt.date, window: Threshold) -> tuple[bool, dt.date | None]:
    """Whether ``day`` falls within ``window`` (calendar months) of ``start``; also the window's end."""
    if start is None:
        return False, None
    end = add_months(start, int(window.value))
    return (day <= end if window.inclusive else day < end), end


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """iRANO at every follow-up (spec §10); always provisional ([U] rules)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    rano_rules = engine.rulebase[rano.CRITERION]
    rano_flags = rano_rules.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",), provisional=True)
    targets = rano.targets_of(timeline)
    base, _, _ = rano.spd_of(timeline.baseline, targets, rano.too_small(rano_rules))
    nadir = base
    previous = timeline.baseline.scan_date
    window = ruleset.threshold("deferral_window_months")
    interval = ruleset.required_threshold("confirmation_min_days", flags)
    state = "none"
    provisional_date: dt.date | None = None
    progression_date: dt.date | None = None
    responses: list[TimepointResponse] = []
    for tp in timeline.followups:
        reading = rano.evaluate_scan(
            engine,
            rano_rules,
            rano_flags,
            timeline,
            tp,
            baseline_spd=base,
            nadir_spd=nadir,
            previous=previous,
            is_tumour=is_tumour,
        )
        trace = list(reading.trace)
        within, end = within_months(timeline.treatment_start, tp.scan_date, window)
        trace.append(
            f"RANO 2010 at this scan: {reading.category}"
            + (
                f"; immunotherapy start {timeline.treatment_start}, 6-month window ends {end}: "
                f"{'within' if within else 'after'}"
                if end
                else "; immunotherapy start unknown: no deferral window"
            )
        )
        interval_met = False
        if state == "provisional" and provisional_date is not None:
            days = (tp.scan_date - provisional_date).days
            interval_met = interval.holds(days)
            trace.append(
                f"{days} days after the provisional PD of {provisional_date} "
                f"(confirmation {interval.describe()}: {'met' if interval_met else 'not yet'})"
            )
        decision = engine.decide(
            CRITERION,
            "deferral",
            {
                "state": state,
                "rano": reading.category,
                "within_deferral_window": within,
                "clinically_worse": reading.clinical_deterioration,
                "confirmation_interval_met": interval_met,
            },
        )
        trace.append(decision.trace())
        category, confirmed, new_state = decision["category"], decision["confirmed"], decision["state"]
        warnings: list[str] = []
        tp_progression: dt.date | None = None
        if new_state == "provisional" and state == "none":
            provisional_date = tp.scan_date
            due = tp.scan_date + dt.timedelta(days=int(interval.value))
            warnings.append(
                f"provisional PD (iRANO): confirm on follow-up imaging on or after {due} if clinically stable"
            )
        if new_state == "confirmed":
            if state == "provisional" and provisional_date is not None:
                progression_date = provisional_date
            elif state == "none":
                progression_date = tp.scan_date
            tp_progression = progression_date
        if state == "provisional" and new_state == "none":
            trace.append(f"provisional PD of {provisional_date} not confirmed: reset (pseudoprogression)")
            provisional_date = None
        state = new_state
        responses.append(
            rano.response(
                reading,
                base,
                nadir,
                targets,
                criterion=CRITERION,
                category=category,
                confirmed=confirmed,
                progression_date=tp_progression,
                trace=tuple(trace),
                warnings=tuple(warnings),
                extra={
                    "rano_category": reading.category,
                    "within_6_months": within,
                    # The provisional PD awaiting confirmation (spec §10): on or after the interval, no latest date.
                    "confirmation_due": (
                        {
                            "since": provisional_date.isoformat(),
                            "start": (provisional_date + dt.timedelta(days=int(interval.value))).isoformat(),
                            "end": None,
                        }
                        if state == "provisional" and provisional_date is not None
                        else None
                    ),
                },
            )
        )
        if reading.spd_complete and reading.category != "NE":
            nadir = min(nadir, reading.spd)
        previous = tp.scan_date
    warnings = rano.baseline_warnings(timeline, rano_rules)
    if state == "provisional":
        warnings.append(f"provisional PD of {provisional_date} is unconfirmed: follow-up imaging is due")
    # Provisional PD never counts as progression in the best response: it is reported as PD-u.
    counted = [r if not (r.category == "PD" and r.confirmed is False) else _as_pending(r) for r in responses]
    kwargs: dict[str, Any] = dict(
        anchor=timeline.anchor_date,
        order=ORDER,
        stable_min_days=int(ruleset.threshold("stable_disease_min_days").value),
        confirm_min_days=int(ruleset.threshold("confirmation_response_min_days").value),
    )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=best_overall_response(counted, confirmed=False, **kwargs),
        best_response_confirmed=best_overall_response(counted, confirmed=True, **kwargs),
        progression_date=progression_date,
        warnings=tuple(warnings),
        provisional=True,
    )


def _as_pending(response: TimepointResponse) -> TimepointResponse:
    """A provisional PD for the best-response search: neither response nor progression."""
    return dataclasses.replace(response, category="PD-provisional")
