"""Assemble a patient's facts into timepoints: pre-baseline scans, the baseline, and follow-ups.

A timepoint is one calendar day of imaging (all studies of that day). The baseline is the last timepoint
with lesion measurements on or before the first immune-checkpoint-inhibitor dose (C1D1); RECIST 1.1 §3.2
wants it no more than 28 days before treatment (checked by the criteria, reported as a warning). Follow-ups
are the timepoints after both the baseline and C1D1 (on-treatment evaluations).
Lesion roles are fixed at baseline; a lesion first seen after baseline is a new lesion.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    PatientFacts,
    ReferenceMeasurement,
    Scan,
    TherapyLine,
)
from rules.therapy_classes import ICI, UNCLASSIFIED, class_label


@dataclass(frozen=True)
class TrackedLesion:
    """A lesion across timepoints, with its role fixed at baseline."""

    lesion_id: str
    role: LesionRole
    nodal: bool
    organ: str | None
    label: str | None
    first_seen: dt.date
    identity_source: str
    role_reported: bool
    """False when the role was defaulted (no Baseline Category at baseline)."""
    finding_code: str | None = None


@dataclass(frozen=True)
class Timepoint:
    scan_date: dt.date
    scan: Scan
    measurements: Mapping[str, LesionMeasurement]
    references: tuple[ReferenceMeasurement, ...] = ()

    def of(self, lesion_id: str) -> LesionMeasurement | None:
        return self.measurements.get(lesion_id)

    def reading(self, lesion_id: str) -> LesionMeasurement:
        """The measurement of a lesion already known to be read at this timepoint (e.g. from new_lesion_readings)."""
        found = self.measurements.get(lesion_id)
        if found is None:
            raise LookupError(f"lesion {lesion_id} has no reading at {self.scan_date}")
        return found


class NoBaseline(LookupError):
    """A step that needs the baseline ran on a timeline without one (a programming error, not bad input)."""


@dataclass(frozen=True)
class Timeline:
    facts: PatientFacts
    treatment_start: dt.date | None
    therapy: TherapyLine | None
    baseline: Timepoint | None
    prebaseline: tuple[Timepoint, ...]
    followups: tuple[Timepoint, ...]
    lesions: Mapping[str, TrackedLesion]
    warnings: tuple[str, ...] = field(default=())

    @property
    def established_baseline(self) -> Timepoint:
        """The baseline, for code that runs only after the criterion checked that there is one."""
        if self.baseline is None:
            raise NoBaseline("no baseline scan: the criterion should have stopped before this point")
        return self.baseline

    def lesions_with_role(self, role: LesionRole) -> list[TrackedLesion]:
        return [lesion for lesion in self.lesions.values() if lesion.role is role]

    @property
    def anchor_date(self) -> dt.date | None:
        """Day 0 for duration rules: C1D1, or the baseline scan when therapy start is unknown."""
        if self.treatment_start is not None:
            return self.treatment_start
        return self.baseline.scan_date if self.baseline else None


def first_therapy(facts: PatientFacts) -> TherapyLine | None:
    """The first immunotherapy line of any class (contract §9.3); an unclassified drug never sets day 0."""
    lines = sorted(
        (line for line in facts.therapy_lines if line.therapy_class != UNCLASSIFIED), key=lambda line: line.start_date
    )
    return lines[0] if lines else None


def therapy_warnings(facts: PatientFacts) -> list[str]:
    """Unclassified systemic drugs are kept and stated (contract §9.3: never dropped)."""
    return [
        f"unclassified therapy {line.agent!r} from {line.start_date}: not in the immunotherapy code lists, "
        "so it does not start an immunotherapy line (check the drug coding)"
        for line in sorted(facts.therapy_lines, key=lambda line: (line.start_date, line.agent))
        if line.therapy_class == UNCLASSIFIED
    ]


def build_timeline(facts: PatientFacts, *, measurable: MeasurabilityRule | None = None) -> Timeline:
    """Group facts into timepoints and fix lesion roles at baseline.

    ``measurable`` decides the default role of a baseline lesion reported without a Baseline Category
    (``recist.uncategorised_baseline_measurable_as_target``); without it such lesions are non-targets.
    """
    warnings: list[str] = []
    by_date = lesions_by_day(facts.measurements, warnings)
    scans = {scan.scan_date: scan for scan in facts.scans}
    references: dict[dt.date, list[ReferenceMeasurement]] = {}
    for reference in facts.references:
        references.setdefault(reference.scan_date, []).append(reference)
    all_dates = sorted(set(by_date) | set(scans) | set(references))
    timepoints = [
        Timepoint(day, scans.get(day, Scan(scan_date=day)), by_date.get(day, {}), tuple(references.get(day, ())))
        for day in all_dates
    ]
    therapy = first_therapy(facts)
    start = therapy.start_date if therapy else None
    warnings.extend(therapy_warnings(facts))
    if len([line for line in facts.therapy_lines if line.therapy_class != UNCLASSIFIED]) > 1:
        warnings.append("several immunotherapy lines: day 0 is the first line's start")
    if therapy is not None and therapy.therapy_class != ICI:
        warnings.append(f"immunotherapy class: {class_label(therapy.therapy_class)} ({therapy.agent})")

    measured = [tp for tp in timepoints if tp.measurements]
    baseline: Timepoint | None = None
    if measured:
        if start is None:
            baseline = measured[0]
            warnings.append("immunotherapy start unknown: the first measured scan is taken as baseline")
        else:
            before = [tp for tp in measured if tp.scan_date <= start]
            if before:
                baseline = before[-1]
            else:
                baseline = measured[0]
                warnings.append(
                    "no measured scan on or before the immunotherapy start: the first scan after it is taken as baseline"
                )

    if baseline is None:
        return Timeline(facts, start, therapy, None, tuple(timepoints), (), {}, tuple(warnings))

    prebaseline = tuple(tp for tp in timepoints if tp.scan_date < baseline.scan_date)
    # A follow-up is an on-treatment evaluation (kinetics spec, scan names: E1 the baseline before the first dose,
    # E2 the first on-treatment evaluation scan; RECIST 1.1 §3.2 [V:R11]). A scan after the baseline but on or before the start can only be
    # one not measured yet (the baseline is the last measured scan on or before it): typically the true baseline's
    # images, whose report is still to come. It is no response assessment and gets no report.
    followups = tuple(
        tp for tp in timepoints if tp.scan_date > baseline.scan_date and (start is None or tp.scan_date > start)
    )
    lesions: dict[str, TrackedLesion] = {}
    for lesion_id, m in baseline.measurements.items():
        if m.role is LesionRole.NEW:
            warnings.append(f"lesion {describe(m)} is labelled new on the baseline scan: treated as non-target")
        role_reported = m.role in (LesionRole.TARGET, LesionRole.NON_TARGET)
        if m.status is LesionStatus.NOT_ASSESSED:
            # RECIST 1.1 §3.1.2: a baseline lesion without a measurement (e.g. its value was refused as
            # implausible, contract §9.2) cannot be a target: it is followed as non-target.
            if m.role is LesionRole.TARGET:
                warnings.append(f"baseline target {describe(m)} is not assessed at baseline: followed as non-target")
            role = LesionRole.NON_TARGET
        elif role_reported and m.role is not None:
            role = m.role
        elif measurable is not None and measurable(m):
            role = LesionRole.TARGET
        else:
            role = LesionRole.NON_TARGET
        lesions[lesion_id] = TrackedLesion(
            lesion_id,
            role,
            m.nodal,
            m.organ,
            m.label,
            baseline.scan_date,
            m.identity_source,
            role_reported,
            m.finding_code,
        )
    for tp in followups:
        for lesion_id, m in tp.measurements.items():
            if lesion_id in lesions:
                continue
            if m.status is LesionStatus.ABSENT or m.status is LesionStatus.NOT_ASSESSED:
                continue
            lesions[lesion_id] = TrackedLesion(
                lesion_id,
                LesionRole.NEW,
                m.nodal,
                m.organ,
                m.label,
                tp.scan_date,
                m.identity_source,
                m.role is LesionRole.NEW,
                m.finding_code,
            )
    return Timeline(facts, start, therapy, baseline, prebaseline, followups, lesions, tuple(warnings))


def _report_of(measurement: LesionMeasurement) -> str:
    """The report a measurement belongs to: one SR instance, or the FHIR record as a whole (where a correction
    updates the same Observation rather than sending another one)."""
    if measurement.source.startswith("dicom-sr:"):
        return measurement.source
    return measurement.source.split(":", 1)[0]


def _sum(values: list[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if len(known) == len(values) else None


def lesions_by_day(
    measurements: tuple[LesionMeasurement, ...], warnings: list[str]
) -> dict[dt.date, dict[str, LesionMeasurement]]:
    """One measurement per lesion and day (contract §9.3).

    - A later report of the same lesion and day replaces an earlier one (a corrected SR).
    - Within one report, several groups of one lesion are its **fragments** when every one carries the fragment
      marker: RECIST 1.1 adds the fragments' longest diameters (RECIST 1.1 §4.3, "lesions that split"; size spec
      §1.6) — the combined measurement holds the sums and the fragments, so bidimensional criteria add the
      fragments' products instead (irRC, Wolchok 2009; size spec §3.1).
    - Several groups without the marker are a **conflict**: the lesion is *not assessed* at that scan, with the
      reason (never one of them picked silently).
    """
    grouped: dict[tuple[dt.date, str], list[LesionMeasurement]] = {}
    for measurement in measurements:
        grouped.setdefault((measurement.scan_date, measurement.lesion_id), []).append(measurement)
    by_date: dict[dt.date, dict[str, LesionMeasurement]] = {}
    for (day, lesion_id), found in grouped.items():
        latest = _report_of(found[-1])
        groups = [m for m in found if _report_of(m) == latest]
        chosen = groups[0]
        if len(groups) > 1 and all(m.fragment for m in groups):
            chosen = dataclasses.replace(
                groups[0],
                status=LesionStatus.PRESENT,
                long_axis_mm=_sum([m.long_axis_mm for m in groups]),
                short_axis_mm=_sum([m.short_axis_mm for m in groups]),
                fragments=tuple(groups),
            )
        elif len(groups) > 1:
            reason = (
                f"{len(groups)} measurement groups of this lesion on {day} without the fragment marker "
                "(conflicting measurements)"
            )
            chosen = dataclasses.replace(groups[-1], status=LesionStatus.NOT_ASSESSED, conflict=reason)
            warnings.append(f"lesion {describe(groups[-1])} not assessed on {day}: {reason}")
        by_date.setdefault(day, {})[lesion_id] = chosen
    for day, lesions in by_date.items():
        present = set(lesions) | {f"label:{m.label}" for m in lesions.values() if m.label}
        for m in lesions.values():
            if m.merged_into and m.merged_into not in present:
                # Still 0 mm (the reader says it coalesced), but the mass it joined was not measured at this scan.
                warnings.append(
                    f"lesion {describe(m)} on {day} is merged into {merged_into_name(m)}, which is not reported at "
                    "that scan: the coalesced lesion is not measured"
                )
    return by_date


def merged_into_name(measurement: LesionMeasurement) -> str:
    """The lesion a merged lesion joined, in words (its label, or a short form of its UID)."""
    target = measurement.merged_into or ""
    if target.startswith("label:"):
        return f"'{target[len('label:') :]}'"
    return f"#{target[-8:]}"


class MeasurabilityRule(Protocol):
    """Callable deciding whether a baseline measurement is measurable (criterion-specific)."""

    def __call__(self, measurement: LesionMeasurement, /) -> bool: ...


def describe(measurement: LesionMeasurement) -> str:
    """A PHI-free name for a lesion in traces: its label, else a short form of its identity."""
    if measurement.label:
        return f"'{measurement.label}'"
    return f"#{measurement.lesion_id[-8:]}"


def lesion_name(lesion: TrackedLesion) -> str:
    if lesion.label:
        return lesion.label
    return f"lesion …{lesion.lesion_id[-6:]}"
