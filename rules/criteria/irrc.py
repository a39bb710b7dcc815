"""irRC — immune-related response criteria (Wolchok 2009), bidimensional: size spec §3.

- Every lesion is measured as the product of its longest diameter and the greatest perpendicular diameter
  (WHO); nodes as LD × short axis (spec §3.1 [D]). The tumour burden (TB) is the sum of products (SPD, mm²)
  of the baseline index lesions plus the new measurable lesions (≥ 5 × 5 mm), counted up to 5 per organ,
  10 visceral and 5 cutaneous [S].
- irPR: TB ≤ 50 % of baseline; irPD: TB ≥ 125 % of the nadir (no absolute minimum), tested first; both and irCR
  need a repeat assessment ≥ 28 days later (spec §3.4, in ``burden.ProgressionConfirmation`` and
  ``burden.immune_best_response``). Non-index lesions count only toward irCR; new non-measurable lesions preclude it.

The categories come from ``rules/rulesets/irrc.yaml``; the shared loop is ``burden.assess_burden``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from rules.criteria.burden import (
    BurdenCriterion,
    CapRule,
    TumourBurden,
    TumourFilter,
    assess_burden,
    immune_best_response,
    organ_of,
    threshold_int,
)
from rules.engine import Engine, RuleSet, Threshold
from rules.facts import LesionMeasurement, LesionRole, LesionStatus
from rules.results import CriterionAssessment
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name, merged_into_name

CRITERION = "irRC"
CATEGORIES = {"CR": "irCR", "PR": "irPR", "SD": "irSD", "PD": "irPD", "NE": "NE"}
"""irRC Table 1 category names (contract §5 codes)."""


def lesion_product(measurement: LesionMeasurement | None, *, too_small_mm2: Decimal) -> tuple[Decimal | None, str]:
    """The bidimensional product LD × perpendicular (nodes LD × SA) in mm², with how it was obtained.

    - absent → 0 mm²; too small to measure → the ``irrc.tstm_product_mm2`` default (5 × 5, spec §3.2 [D]);
    - missing, not assessed, or a diameter not recorded → not assessed (never 0: spec E11).
    """
    if measurement is None:
        return None, "not reported"
    if measurement.status is LesionStatus.NOT_ASSESSED:
        return None, f"not assessed: {measurement.conflict}" if measurement.conflict else "not assessed"
    if measurement.merged_into:
        return Decimal(0), f"merged into {merged_into_name(measurement)} (0 mm²)"
    if measurement.fragments:
        # irRC is bidimensional (WHO): a lesion that split is the sum of its fragments' products (size spec §1.6,
        # §3.1; contract §9.3) — not the product of the summed diameters.
        products = [lesion_product(m, too_small_mm2=too_small_mm2)[0] for m in measurement.fragments]
        known = [p for p in products if p is not None]
        if len(known) != len(products):
            return None, "a fragment's diameter is not recorded (not assessed)"
        total = sum(known, Decimal(0))
        return total, " + ".join(
            f"{m.long_axis_mm} × {m.short_axis_mm}" for m in measurement.fragments
        ) + f" = {total} (fragments)"
    if measurement.status is LesionStatus.ABSENT:
        return Decimal(0), "absent (0 mm²)"
    if measurement.status is LesionStatus.TOO_SMALL:
        return too_small_mm2, f"too small to measure → {too_small_mm2} mm²"
    if measurement.long_axis_mm is None or measurement.short_axis_mm is None:
        return None, "a diameter is not recorded (not assessed)"
    return (
        measurement.long_axis_mm * measurement.short_axis_mm,
        f"{measurement.long_axis_mm} × {measurement.short_axis_mm}",
    )


def both_diameters_at_least(
    measurement: LesionMeasurement, ruleset: RuleSet, flags: Mapping[str, Any], condition: str
) -> bool:
    """A present lesion whose longest and perpendicular diameters both meet a minimum ("≥ 5 × 5 mm", "≥ 10 × 10 mm"):
    the ``condition`` of the rule file on ``long_axis`` and ``short_axis``."""
    if measurement.status is not LesionStatus.PRESENT:
        return False
    return ruleset.holds(condition, flags, long_axis=measurement.long_axis_mm, short_axis=measurement.short_axis_mm)


def node_is_normal(measurement: LesionMeasurement | None, node_normal: Threshold) -> bool:
    """RECIST 1.1 §4.3.1 normal node (short axis < 10 mm; a node too small to measure is normal, spec §1.6 [D])."""
    if measurement is None or measurement.status is LesionStatus.NOT_ASSESSED:
        return False
    if measurement.status in (LesionStatus.ABSENT, LesionStatus.TOO_SMALL):
        return True
    return measurement.short_axis_mm is not None and node_normal.holds(measurement.short_axis_mm)


def burden_disappeared(burden: TumourBurden, node_normal: Threshold | None) -> bool:
    """TB ↓ 100 %: every index and counted new lesion is 0 mm². With ``irrc.node_normalisation`` an index node
    with short axis < 10 mm also counts as gone (otherwise a residual node prevents irCR: spec §3.4, E4)."""
    for reading in burden.readings:
        if reading.value is None:
            return False
        if node_normal is not None and reading.lesion.nodal and not reading.new:
            if not node_is_normal(reading.measurement, node_normal):
                return False
        elif reading.value != 0:
            return False
    return True


def is_cutaneous(lesion: TrackedLesion, sites: Sequence[str]) -> bool:
    return (lesion.organ or "").strip().lower() in {s.lower() for s in sites}


def cap_rules(ruleset: RuleSet, prefix: str) -> tuple[CapRule, ...]:
    """irRC limits: up to 5 per organ, 10 visceral and 5 cutaneous (``prefix`` = ``index`` or ``new``)."""
    sites = ruleset.parameters.get("cutaneous_sites") or ()
    per_organ = ruleset.threshold(f"{prefix}_lesions_max_per_organ")
    visceral = ruleset.threshold(f"{prefix}_lesions_max_visceral")
    cutaneous = ruleset.threshold(f"{prefix}_lesions_max_cutaneous")
    return (
        CapRule(f"{threshold_int(per_organ)} per organ", per_organ, organ_of),
        CapRule(
            f"{threshold_int(visceral)} visceral",
            visceral,
            lambda lesion: None if is_cutaneous(lesion, sites) else "visceral",
        ),
        CapRule(
            f"{threshold_int(cutaneous)} cutaneous",
            cutaneous,
            lambda lesion: "cutaneous" if is_cutaneous(lesion, sites) else None,
        ),
    )


def criterion_spec(ruleset: RuleSet, flags: Mapping[str, Any]) -> BurdenCriterion:
    too_small = Decimal(str(flags["tstm_product_mm2"]))
    new_minimum = ruleset.configured_threshold("new_measurable_min_diameter", flags)
    node_normal = ruleset.threshold("node_normal_short_axis") if flags["node_normalisation"] else None

    def nontargets_absent(tp: Timepoint, nontargets: Sequence[TrackedLesion]) -> bool:
        return all(
            (m := tp.of(lesion.lesion_id)) is not None
            and (
                m.status is LesionStatus.ABSENT
                or (lesion.nodal and node_normal is not None and node_is_normal(m, node_normal))
            )
            for lesion in nontargets
        )

    return BurdenCriterion(
        criterion=CRITERION,
        categories=CATEGORIES,
        sum_unit=str(ruleset.parameters.get("sum_unit", "mm2")),
        lesion_value=lambda m, lesion: lesion_product(m, too_small_mm2=too_small),
        new_lesion_measurable=(
            lambda m, tp: (
                new_minimum is not None and both_diameters_at_least(m, ruleset, flags, "new_lesion_measurable")
            )
        ),
        caps=cap_rules(ruleset, "new"),
        burden_disappeared=lambda burden: burden_disappeared(burden, node_normal),
        nontargets_absent=nontargets_absent if node_normal is not None else None,
    )


def baseline_conformance(timeline: Timeline, ruleset: RuleSet, flags: Mapping[str, Any]) -> list[str]:
    """irRC baseline checks, reported as warnings: index lesions ≥ 10 × 10 mm (policy), ≤ 5 per organ,
    ≤ 10 visceral and ≤ 5 cutaneous (spec §3.1)."""
    warnings: list[str] = []
    index = timeline.lesions_with_role(LesionRole.TARGET)
    if not index:
        warnings.append("no index lesion at baseline: irRC needs bidimensionally measurable disease")
    minimum = ruleset.configured_threshold("index_lesion_min_diameter", flags)
    for lesion in index:
        m = timeline.established_baseline.of(lesion.lesion_id)
        if (
            minimum is not None
            and m is not None
            and not both_diameters_at_least(m, ruleset, flags, "index_lesion_measurable")
        ):
            warnings.append(
                f"index lesion {lesion_name(lesion)} ({m.long_axis_mm} × {m.short_axis_mm} mm) is below the "
                f"irRC baseline minimum of {minimum.describe()} in both diameters (irrc.baseline_min_mm)"
            )
    for cap in cap_rules(ruleset, "index"):
        counts = Counter(group for group in (cap.group(lesion) for lesion in index) if group is not None)
        for group, count in counts.items():
            if not cap.limit.holds(count):
                warnings.append(f"{count} index lesions ({group}) at baseline: irRC allows at most {cap.description}")
    return warnings


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: TumourFilter | None = None,
) -> CriterionAssessment:
    """irRC over the whole timeline (spec §3); the best overall response needs confirmation (spec §3.4)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",))
    spec = criterion_spec(ruleset, flags)
    result = assess_burden(engine, ruleset, timeline, spec, flags, is_tumour=is_tumour)
    # irRC defines irCR and irPR as confirmed (Table 1: "two observations ≥ 4 weeks apart"): the best overall
    # response is always the confirmed one (spec §3.4).
    best = immune_best_response(
        result.timepoints,
        order=spec.order,
        anchor=timeline.anchor_date,
        stable_min_days=threshold_int(ruleset.threshold("stable_disease_min_days")),
        confirm_min_days=threshold_int(ruleset.threshold("confirmation_min_days")),
        progression_date=result.progression_date,
        confirmed=True,
    )
    return CriterionAssessment.of(
        ruleset,
        flags,
        result.timepoints,
        best_response=best,
        best_response_confirmed=best,
        progression_date=result.progression_date,
        warnings=tuple(baseline_conformance(timeline, ruleset, flags)) + result.warnings,
    )
