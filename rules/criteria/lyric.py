"""LYRIC (Cheson 2016): Lugano 2014 with indeterminate response (IR) for immunomodulatory therapy — size spec §9.2,
worked example L1.

Each follow-up is first graded by Lugano 2014 (``lugano.evaluate_ct`` against each lesion's nadir and
``lugano.evaluate_metabolic`` against baseline: reused, with the ``lugano.*`` flags). LYRIC then replaces PD by:

- **IR1**: SPD ≥ 50 % above its nadir within the first 12 weeks (day ≤ 84 after C1D1) — L1 week 8;
- **IR2**: Lugano PD with an SPD increase < 50 %, from new lesion(s) (IR2a) and/or a ≥ 50 % PPD increase of a lesion
  (IR2b); reported as ``IR2`` with the subtype in ``extra["ir_subtype"]`` (contract §5 codes ``IR1``/``IR2``/``IR3``);
- **IR3**: increased FDG uptake (Lugano metabolic PMD) without size progression.

An open IR (policy [D], ``lyric.ir_resolution``; LYRIC's own rule is [U]) becomes **PD dated to the IR scan** when a
later scan meets Lugano PD relative to the IR scan (each lesion against its IR-scan size, new lesions since the IR
scan, or an uptake increase over the IR scan) or an observation ``biopsy-progression`` = 1 is recorded after it; a
later CR/PR/SD resolves it as flare (L1 week 16: SD). PD is final.

The "without clinical deterioration" qualifier of IR1 is [U]: applied only with
``lyric.ir1_requires_no_clinical_deterioration`` (observation ``clinical-deterioration`` = 1 since the previous scan),
which marks the assessment provisional. Categories come from ``rules/rulesets/lyric.yaml``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.criteria import lugano, pet
from rules.criteria.burden import fmt_amount
from rules.criteria.recist_family import RECIST_ORDER, best_overall_response
from rules.engine import Engine
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline, Timepoint

CRITERION = "LYRIC"


@dataclass(frozen=True)
class OpenIndeterminate:
    """An indeterminate response waiting to be resolved."""

    category: str
    subtype: str
    tp: Timepoint
    sizes: Mapping[str, lugano.LesionSize]


def _open(ir: OpenIndeterminate | None) -> OpenIndeterminate:
    """The open indeterminate response that the state machine's ``ir`` state guarantees."""
    if ir is None:
        raise LookupError("LYRIC: no indeterminate response is open in the 'ir' state")
    return ir


def observed_since(timeline: Timeline, code: str, after: dt.date | None, until: dt.date) -> bool:
    """An observation ``code`` with value 1 dated after ``after`` (exclusive) and on or before ``until``."""
    return any(
        o.code == code and o.value == 1 and (after is None or o.effective_date > after) and o.effective_date <= until
        for o in timeline.facts.observations
    )


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """LYRIC at every follow-up (spec §9.2)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    provisional = bool(flags["ir1_requires_no_clinical_deterioration"])
    lugano_rules = engine.rulebase[lugano.CRITERION]
    lugano_flags = lugano_rules.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",), provisional=provisional)
    if flags["ir_resolution"] not in ("lugano-non-pd", "persist"):
        raise ValueError(f"lyric.ir_resolution must be 'lugano-non-pd' or 'persist', not {flags['ir_resolution']!r}")
    targets = lugano.targets_of(timeline)
    base_spd, _, base_parts = lugano.spd_of(timeline.baseline, targets, lugano_rules)
    nadirs = lugano.baseline_references(timeline, lugano_rules)
    spd_nadir = base_spd
    ir1_fraction = ruleset.threshold("ir1_spd_fraction_of_nadir")
    ir1_window = ruleset.threshold("ir1_window_days")
    reimaging_days = int(ruleset.threshold("ir_reimaging_max_days").value)
    anchor = timeline.anchor_date
    state = "none"
    open_ir: OpenIndeterminate | None = None
    progression_date: dt.date | None = None
    previous = timeline.baseline.scan_date
    responses: list[TimepointResponse] = []
    for tp in timeline.followups:
        ct = lugano.evaluate_ct(
            engine,
            lugano_rules,
            lugano_flags,
            timeline,
            tp,
            baseline_spd=base_spd,
            references=nadirs,
            is_tumour=is_tumour,
        )
        metabolic = lugano.evaluate_metabolic(
            engine, lugano_rules, lugano_flags, timeline, tp, timeline.baseline, is_tumour=is_tumour
        )
        trace = [
            f"baseline SPD {base_parts} = {fmt_amount(base_spd, 'mm2')}",
            *ct.trace,
            *metabolic.trace,
            f"Lugano 2014 at this scan: CT {ct.category}"
            + (f", PET {metabolic.category}" if metabolic.category else ""),
        ]
        warnings = list(ct.warnings)
        spd_ir1 = ruleset.holds(
            "spd_increase_meets_ir1",
            flags,
            spd_complete=bool(targets) and ct.spd_complete,
            spd=ct.spd,
            nadir=spd_nadir,
        )
        days = (tp.scan_date - anchor).days if anchor else None
        within = days is not None and ir1_window.holds(days)
        if targets and ct.spd_complete and spd_nadir > 0:
            trace.append(
                f"SPD {fmt_amount(ct.spd, 'mm2')} vs SPD nadir {fmt_amount(spd_nadir, 'mm2')}: "
                f"{pet.fmt_pct_signed(percent_change(ct.spd, spd_nadir))}"
                f" → {'meets' if spd_ir1 else 'does not meet'} the IR1 increase ({pet.relative_rule(ir1_fraction)}); "
                f"day {days} after C1D1 ({'within' if within else 'after'} the first {ir1_window.describe()})"
            )
        deteriorated = observed_since(timeline, lugano.CLINICAL_DETERIORATION_CODE, previous, tp.scan_date)
        blocked = provisional and deteriorated
        if deteriorated and not provisional:
            trace.append(
                "clinical deterioration recorded: LYRIC's 'without clinical deterioration' qualifier is [U] and "
                "off (lyric.ir1_requires_no_clinical_deterioration)"
            )
        elif not any(o.code == lugano.CLINICAL_DETERIORATION_CODE for o in timeline.facts.observations):
            trace.append("clinical status not recorded (clinical-deterioration): treated as not worsening")
        fresh = engine.decide(
            CRITERION,
            "indeterminate_response",
            {
                "lugano_ct": ct.category,
                "metabolic_pmd": metabolic.category == "PMD",
                "spd_increase_meets_ir1": spd_ir1,
                "within_ir1_window": within,
                "ir1_blocked_by_deterioration": blocked,
                "new_lesion_progression": bool(ct.progressing_new_lesions),
                "lesion_progression": bool(ct.progressing_lesions),
            },
        )
        trace.append(fresh.trace())
        scan_category, scan_subtype = fresh["category"], fresh["subtype"]

        progression_vs_ir = False
        if state == "ir" and open_ir is not None:
            against_ir = lugano.evaluate_ct(
                engine,
                lugano_rules,
                lugano_flags,
                timeline,
                tp,
                baseline_spd=base_spd,
                references=open_ir.sizes,
                reference_label=f"IR scan {_open(open_ir).tp.scan_date}",
                is_tumour=is_tumour,
            )
            uptake = lugano.evaluate_metabolic(
                engine, lugano_rules, lugano_flags, timeline, tp, open_ir.tp, is_tumour=is_tumour
            )
            biopsy = observed_since(timeline, lugano.BIOPSY_PROGRESSION_CODE, _open(open_ir).tp.scan_date, tp.scan_date)
            uptake_up = uptake.category == "PMD" and uptake.uptake_change == "increased"
            progression_vs_ir = against_ir.category == "PD" or uptake_up or biopsy
            trace.append(
                f"relative to the IR scan of {_open(open_ir).tp.scan_date}: Lugano CT {against_ir.category}"
                + (", uptake increased" if uptake_up else "")
                + (", biopsy-proven progression" if biopsy else "")
                + f" → {'progression' if progression_vs_ir else 'no progression'} relative to the IR"
            )
            trace += [line for line in against_ir.trace if "IR scan" in line or "new " in line]
        follow = engine.decide(
            CRITERION,
            "ir_follow_up",
            {
                "state": state,
                "progression_vs_ir": progression_vs_ir,
                "scan": "IR" if scan_category in ("IR1", "IR2", "IR3") else scan_category,
                "ir_resolution": flags["ir_resolution"],
            },
        )
        if state != "none":
            trace.append(follow.trace())
        action = follow["action"]
        confirmed: bool | None = None
        tp_progression: dt.date | None = None
        if action == "final-pd":
            category, subtype = "PD", "none"
            tp_progression = progression_date
        elif action == "confirm-pd":
            category, subtype = "PD", "none"
            progression_date = _open(open_ir).tp.scan_date
            tp_progression = progression_date
            confirmed = True
            state, open_ir = "progressed", None
        elif action == "keep-ir":
            ir = _open(open_ir)
            category, subtype = ir.category, ir.subtype
            confirmed = False
            trace.append(f"{category} of {_open(open_ir).tp.scan_date} still indeterminate")
        elif action == "report-keep-open":
            category, subtype = scan_category, scan_subtype
        else:
            category, subtype = scan_category, scan_subtype
            if state == "ir":
                trace.append(f"{_open(open_ir).category} of {_open(open_ir).tp.scan_date} resolved (flare): {category}")
                state, open_ir = "none", None
            if category in ("IR1", "IR2", "IR3"):
                state = "ir"
                open_ir = OpenIndeterminate(category, subtype, tp, dict(ct.sizes))
                confirmed = False
                warnings.append(
                    f"{subtype}: indeterminate response — re-image (or biopsy) to tell flare from progression; "
                    f"reader review"
                )
            elif category == "PD":
                state = "progressed"
                progression_date = progression_date or tp.scan_date
                tp_progression = progression_date
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=category,
                new_lesions="present" if ct.progressing_new_lesions else "absent",
                sum_mm=ct.spd if targets else None,
                sum_unit="mm2",
                baseline_sum=base_spd if targets else None,
                nadir_sum=spd_nadir if targets else None,
                percent_from_baseline=percent_change(ct.spd, base_spd) if targets and ct.spd_complete else None,
                percent_from_nadir=percent_change(ct.spd, spd_nadir) if targets and ct.spd_complete else None,
                absolute_from_nadir=(ct.spd - spd_nadir) if targets and ct.spd_complete else None,
                confirmed=confirmed,
                progression_date=tp_progression,
                trace=tuple(trace),
                warnings=tuple(warnings),
                extra={
                    "ir_subtype": None if subtype == "none" else subtype,
                    "lugano_category": ct.category,
                    "metabolic_category": metabolic.category,
                    "scan_category": scan_category,
                    # An open IR awaits re-imaging (spec §9.2 [U]: within about 12 weeks of the IR scan).
                    "confirmation_due": (
                        {
                            "since": open_ir.tp.scan_date.isoformat(),
                            "start": None,
                            "end": (open_ir.tp.scan_date + dt.timedelta(days=reimaging_days)).isoformat(),
                        }
                        if open_ir is not None
                        else None
                    ),
                },
            )
        )
        lugano.update_nadirs(nadirs, ct.sizes)
        if ct.spd_complete and ct.category != "NE":
            spd_nadir = min(spd_nadir, ct.spd)
        previous = tp.scan_date
    warnings = lugano.baseline_warnings(timeline, lugano_rules)
    if open_ir is not None:
        warnings.append(
            f"{open_ir.subtype} of {_open(open_ir).tp.scan_date} is unresolved: re-imaging or biopsy is due"
        )
    best = best_overall_response(
        responses,
        anchor=anchor,
        order=RECIST_ORDER,
        stable_min_days=int(ruleset.threshold("stable_disease_min_days").value),
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
        provisional=provisional,
    )
