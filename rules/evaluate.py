"""Evaluate one patient: every applicable criterion side by side, plus patterns, kinetics and alerts.

This is the single entry point the service calls (``evaluate_patient``); it is a pure function of the
facts, the configuration overrides and the rule base, so re-evaluation is deterministic (contract §8).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any

from rules import biomarkers, kinetics, tracer_uptake, volumetric
from rules.applicability import applicable_criteria
from rules.criteria import (
    eortc_pet,
    impercist5,
    imrecist,
    ipercist,
    irano,
    irecist,
    irrc,
    irrecist,
    itrecist,
    lugano,
    lyric,
    percimt,
    percist,
    pet,
    rano,
    recist11,
)
from rules.criteria.recist_family import is_measurable
from rules.engine import Engine, get_engine
from rules.facts import LesionMeasurement, LesionRole, PatientFacts, TherapyLine, recist_axis_mm
from rules.findings import confirmation, irae, kinetics_alerts, patterns, pseudoprogression
from rules.pet_tracers import FDG_CRITERIA
from rules.results import CriterionAssessment, Finding, PatientAssessment
from rules.timeline import MeasurabilityRule, Timeline, build_timeline, lesion_name, merged_into_name

CRITERIA = (
    recist11,
    irecist,
    irrecist,
    irrc,
    imrecist,
    itrecist,
    percist,
    impercist5,
    percimt,
    ipercist,
    eortc_pet,
    lugano,
    lyric,
    rano,
    irano,
)
"""Criterion modules, in the order they are reported (contract §5). Each has ``CRITERION`` and
``assess(engine, timeline, overrides, *, is_tumour=None)``. Which of them apply to a patient is decided by
``rules.applicability`` (cancer type and available data)."""

ALWAYS_COMPUTED = (recist11, irecist)
"""Kinetics, hyperprogression and pseudoprogression read RECIST 1.1 and iRECIST, so they are computed even
when they are not reported (e.g. for lymphoma)."""


def make_timeline(facts: PatientFacts, engine: Engine, overrides: Mapping[str, Any] | None = None) -> Timeline:
    recist = engine.rulebase[recist11.CRITERION]
    measurable: MeasurabilityRule | None = None
    if recist.flag("uncategorised_baseline_measurable_as_target", overrides):

        def recist_measurable(m: LesionMeasurement) -> bool:
            return is_measurable(m, recist)

        measurable = recist_measurable

    return build_timeline(facts, measurable=measurable)


def lesion_table(timeline: Timeline) -> tuple[dict[str, Any], ...]:
    """Per lesion, its role and value at every timepoint (for reports and pages)."""
    if timeline.baseline is None:
        return ()
    points = [timeline.baseline, *timeline.followups]
    rows = []
    order = {LesionRole.TARGET: 0, LesionRole.NON_TARGET: 1, LesionRole.NEW: 2}
    for lesion in sorted(
        timeline.lesions.values(), key=lambda tracked: (order[tracked.role], tracked.first_seen, lesion_name(tracked))
    ):
        cells: dict[str, dict[str, Any]] = {}
        for tp in points:
            m = tp.of(lesion.lesion_id)
            if m is None:
                continue
            cells[tp.scan_date.isoformat()] = {
                "status": m.status.value,
                "long_axis_mm": m.long_axis_mm,
                "short_axis_mm": m.short_axis_mm,
                "recist_axis_mm": recist_axis_mm(m, nodal=lesion.nodal),
                "nontarget_status": m.nontarget_status.value if m.nontarget_status else None,
                "nontarget_change": m.nontarget_change.value if m.nontarget_change else None,
                "sul_peak": m.sul_peak,
                "suv_max": m.suv_max,
            }
            tracer = pet.tracer_of(tp) if m.sul_peak is not None or m.suv_max is not None else None
            if tracer is not None:
                # Contract §9.3 / §9.6: uptake values are values of their tracer (kept whatever the criteria read).
                cells[tp.scan_date.isoformat()]["tracer"] = tracer.key
                cells[tp.scan_date.isoformat()]["tracer_assumed"] = tracer.assumed
            if m.merged_into:
                cells[tp.scan_date.isoformat()]["merged_into"] = merged_into_name(m)
            if m.fragments:
                cells[tp.scan_date.isoformat()]["fragments"] = [
                    {"long_axis_mm": f.long_axis_mm, "short_axis_mm": f.short_axis_mm} for f in m.fragments
                ]
            if m.conflict:
                cells[tp.scan_date.isoformat()]["not_assessed_reason"] = m.conflict
        rows.append(
            {
                "lesion": lesion_name(lesion),
                "role": lesion.role.value,
                "nodal": lesion.nodal,
                "organ": lesion.organ,
                "identity": lesion.identity_source,
                "role_reported": lesion.role_reported,
                "first_seen": lesion.first_seen.isoformat(),
                "cells": cells,
            }
        )
    return tuple(rows)


HOLDS_AT_LATEST_SCAN = frozenset({"dissociated-response"})
"""Findings that describe one scan's lesions (kinetics spec §4.2): they hold only while the latest follow-up
shows them; an earlier scan's dissociated response is history, stated in that scan's report."""


def current_findings(findings: list[Finding], latest: dt.date | None) -> tuple[Finding, ...]:
    """One finding per ``Finding.identity`` (the latest by scan date), dropping per-scan patterns that the
    latest follow-up no longer shows (contract §9.4: one alert per patient and finding, a later scan updates
    it, a finding that no longer holds is resolved)."""
    by_identity: dict[str, Finding] = {}
    for f in sorted(findings, key=lambda f: (f.scan_date, f.code, f.key)):
        if f.code in HOLDS_AT_LATEST_SCAN and latest is not None and f.scan_date != latest:
            continue
        by_identity[f.identity] = f
    return tuple(sorted(by_identity.values(), key=lambda f: (f.scan_date, f.code, f.key)))


def evaluate_patient(
    facts: PatientFacts, overrides: Mapping[str, Any] | None = None, *, engine: Engine | None = None
) -> PatientAssessment:
    engine = engine or get_engine()
    timeline = make_timeline(facts, engine, overrides)
    # Findings that are not tumour (irAE patterns, sarcoid-like nodes…) never count as new lesions (kinetics spec §5.3).
    is_tumour = irae.tumour_hook(overrides)
    applicable = applicable_criteria(facts, timeline)
    by_name = {
        module.CRITERION: (
            pet.assess_fdg_criterion(module.assess, timeline, engine, overrides, is_tumour=is_tumour)
            if module.CRITERION in FDG_CRITERIA
            else module.assess(engine, timeline, overrides, is_tumour=is_tumour)
        )
        for module in CRITERIA
        if module.CRITERION in applicable or module in ALWAYS_COMPUTED
    }
    criteria: list[CriterionAssessment] = [by_name[m.CRITERION] for m in CRITERIA if m.CRITERION in applicable]
    kinetic_result = kinetics.assess_kinetics(engine, timeline, by_name[recist11.CRITERION], overrides)
    latest = timeline.followups[-1].scan_date if timeline.followups else None
    findings: list[Finding] = [
        *kinetics_alerts.findings(
            kinetic_result, timeline, overrides, engine=engine, irecist=by_name.get(irecist.CRITERION)
        ),
        *(
            f
            for f in pseudoprogression.findings(
                timeline, by_name[irecist.CRITERION], by_name[recist11.CRITERION], engine=engine
            )
            if f.code != confirmation.CODE  # iRECIST's own window is in the combined finding below
        ),
        *irae.findings(timeline, criteria, engine=engine, overrides=overrides),
        *patterns.dissociated_response(timeline, engine=engine, overrides=overrides),
        *patterns.abscopal_response(timeline, engine=engine),
        *patterns.durable_response(criteria, timeline.treatment_start, engine=engine, overrides=overrides),
    ]
    due = confirmation.confirmation_due(criteria, latest, engine=engine)
    if due is not None:
        findings.append(due)
    baseline_markers = biomarkers.baseline_biomarkers(timeline, criteria, engine=engine, overrides=overrides)
    # Beside RECIST, after the findings: a provisional volumetric reading (contract §9.6) raises no alert.
    volumes = volumetric.assess_volumes(engine, facts.volumes, timeline.treatment_start)
    if volumes is not None:
        criteria.append(volumes)
    warnings = list(timeline.warnings) + list(facts.notes)
    for lesion in timeline.lesions.values():
        if lesion.identity_source == "none":
            warnings.append(f"{lesion_name(lesion)} has no tracking UID or label: it cannot be matched across scans")
    return PatientAssessment(
        rulebase_version=engine.rulebase.version,
        baseline_date=timeline.baseline.scan_date if timeline.baseline else None,
        treatment_start=timeline.treatment_start,
        followup_dates=tuple(tp.scan_date for tp in timeline.followups),
        criteria=tuple(criteria),
        findings=current_findings(findings, latest),
        kinetics=kinetic_result,
        biomarkers=tuple(baseline_markers) + volumetric.pet_growth(facts.volumes, timeline.treatment_start),
        warnings=tuple(warnings),
        lesion_table=lesion_table(timeline),
        flags=dict(overrides or {}),
        tracer_uptake=tracer_uptake.non_fdg_uptake(
            timeline, {lesion_id: lesion_name(tracked) for lesion_id, tracked in timeline.lesions.items()}
        ),
    )


def facts_as_of(facts: PatientFacts, day: dt.date, *, keep_treatment_outcomes: bool = False) -> PatientFacts:
    """What was known on ``day``: imaging up to that scan, clinical facts dated on or before it.

    A report for the timepoint of ``day`` is evaluated on these facts, so it says what the radiologist would
    have reported then and does not change when later scans arrive (best response so far…).

    ``keep_treatment_outcomes`` keeps the therapy stop and death dates recorded later: the first on-treatment
    scan's hyperprogression definitions need the time to treatment failure and early death, which are only
    known after that scan (kinetics spec §3.2.3, §3.2.8), so that report is completed when they arrive.
    """

    def line(therapy: TherapyLine) -> TherapyLine:
        if not keep_treatment_outcomes and therapy.stop_date is not None and therapy.stop_date > day:
            return dataclasses.replace(therapy, stop_date=None, stop_reason=None)
        return therapy

    died = facts.deceased_date is not None and (keep_treatment_outcomes or facts.deceased_date <= day)
    return dataclasses.replace(
        facts,
        deceased_date=facts.deceased_date if died else None,
        death_from_progression=facts.death_from_progression if died else None,
        therapy_lines=tuple(line(t) for t in facts.therapy_lines if t.start_date <= day),
        local_therapies=tuple(t for t in facts.local_therapies if t.performed_date <= day),
        scans=tuple(s for s in facts.scans if s.scan_date <= day),
        measurements=tuple(m for m in facts.measurements if m.scan_date <= day),
        references=tuple(r for r in facts.references if r.scan_date <= day),
        observations=tuple(o for o in facts.observations if o.effective_date <= day),
        findings=tuple(f for f in facts.findings if f.effective_date <= day),
        volumes=tuple(v for v in facts.volumes if v.scan_date <= day),
    )


def _canonical(value: Any, memo: dict[int, tuple[Any, Any]] | None = None) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if memo is not None and id(value) in memo:
            return memo[id(value)][1]
        out = {f.name: _canonical(getattr(value, f.name), memo) for f in dataclasses.fields(value)}
        if memo is not None and value.__dataclass_params__.frozen:  # type: ignore[attr-defined]  # every dataclass has it; typeshed's protocol omits it
            memo[id(value)] = (value, out)  # the value is kept alive with its entry, so its id cannot be reused
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (Decimal, Fraction)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, memo) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, memo) for v in value]
    return value


def inputs_hash(
    facts: PatientFacts, overrides: Mapping[str, Any] | None = None, memo: dict[int, tuple[Any, Any]] | None = None
) -> str:
    """A digest of everything an evaluation depends on apart from the rule base (recorded per version).

    ``memo`` (an empty dict, reused) shares the canonical form of the same frozen facts between calls: the
    reports of one patient hash the facts known at each date, which are mostly the same objects."""
    payload = {"facts": _canonical(facts, memo), "overrides": _canonical(dict(overrides or {}))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def to_jsonable(value: Any) -> Any:
    """Results as JSON-ready data (for storage and the API)."""
    return _canonical(value)
