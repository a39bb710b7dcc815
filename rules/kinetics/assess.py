"""The kinetics assessment of one patient: the measured quantities, every definition on them, and the flags and
notes around them (spec §2–§3, §8); lookups of one definition's result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rules.engine import Engine
from rules.kinetics.definitions import evaluate_definitions
from rules.kinetics.quantities import kinetic_quantities
from rules.kinetics.ruleset import KineticsRules
from rules.kinetics.wording import fmt
from rules.results import CriterionAssessment, DefinitionResult, KineticsResult
from rules.therapy_classes import class_label
from rules.timeline import Timeline


def assess_kinetics(
    engine: Engine, timeline: Timeline, recist: CriterionAssessment | None, overrides: Mapping[str, Any] | None = None
) -> KineticsResult:
    """TGR/TGK around C1D1 and every hyperprogression / fast-progression / early-death definition.

    ``recist`` is the RECIST 1.1 assessment of the same timeline (``rules.criteria.recist11.assess``): RECIST
    PD at E2 comes from it.
    """
    q = kinetic_quantities(engine, timeline, recist, overrides)
    definitions = evaluate_definitions(engine, q, overrides)
    flags = list(q.flags)
    validation = _class_validation_note(KineticsRules(engine, overrides), timeline)
    if validation is not None:
        flags.append("THERAPY_CLASS_NOT_VALIDATED")
        definitions = tuple(
            dataclasses.replace(
                d,
                reason=f"{d.reason} {validation}",
                inputs={**d.inputs, "therapy_class": timeline.therapy.therapy_class if timeline.therapy else None},
            )
            for d in definitions
        )
    for result in definitions:
        code = result.reason.split(":", 1)[0]
        if code == "UNDEFINED_RATIO" and code not in flags:
            flags.append(code)
        if result.borderline and "BORDERLINE" not in flags:
            flags.append("BORDERLINE")
    rules = KineticsRules(engine, overrides)
    fp_anchor = q.c1d1 if rules.flag("FP_ANCHOR") == "C1D1" else q.e1
    if (
        q.e2 is not None
        and fp_anchor is not None
        and not rules.days_test("fast_progression_max_days", (q.e2 - fp_anchor).days)
    ):
        flags.append("FP_NOT_ASSESSABLE")
    notes = list(q.notes)
    if q.tgr_ratio is not None or q.tgr_difference is not None:
        notes.append(
            f"TGR ratio {fmt(q.tgr_ratio)}, ΔTGR {fmt(q.tgr_difference)}, TGKR {fmt(q.tgk_ratio)}, "
            f"pace ratio {fmt(q.pace_ratio)}"
        )
    return KineticsResult(
        e0_date=q.e0,
        e1_date=q.e1,
        e2_date=q.e2,
        tgr_reference=q.tgr_reference,
        tgr_experimental=q.tgr_experimental,
        tgr_ratio=q.tgr_ratio,
        tgr_difference=q.tgr_difference,
        tgk_reference=q.tgk_reference,
        tgk_experimental=q.tgk_experimental,
        tgk_ratio=q.tgk_ratio,
        definitions=definitions,
        flags=tuple(flags),
        notes=tuple(notes),
    )


def _class_validation_note(rules: KineticsRules, timeline: Timeline) -> str | None:
    """Contract §9.3: a definition validated for checkpoint inhibitors only says so when applied to another
    class (rule file ``validated_for``); the result itself is computed as for any patient."""
    therapy = timeline.therapy
    validated = rules.ruleset.parameters["validated_for"]
    if therapy is None or therapy.therapy_class in validated["classes"]:
        return None
    classes = ", ".join(class_label(c) for c in validated["classes"])
    return (
        f"VALIDATION: this definition was validated in {classes} cohorts only; applied here to a "
        f"{class_label(therapy.therapy_class)} ({therapy.agent}), so read it with caution "
        f"[{validated['source'].split(':', 1)[0]}]."
    )


def definition(kinetics: KineticsResult, code: str) -> DefinitionResult | None:
    """One definition's result by its contract code."""
    return next((d for d in kinetics.definitions if d.code == code), None)


def required_definition(kinetics: KineticsResult, code: str) -> DefinitionResult:
    """One definition's result by its contract code, for a definition that is always computed."""
    found = definition(kinetics, code)
    if found is None:
        raise LookupError(f"kinetics definition {code} was not computed")
    return found


def reason_code(result: DefinitionResult) -> str:
    """The reason code a definition's reason starts with (``MET``, ``UNDEFINED_RATIO``, ``E0_MISSING``…)."""
    return result.reason.split(":", 1)[0]


__all__ = [
    "assess_kinetics",
    "definition",
    "evaluate_definitions",
    "reason_code",
    "required_definition",
]
