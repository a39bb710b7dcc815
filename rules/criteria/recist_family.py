"""Bookkeeping shared by RECIST 1.1 and its immunotherapy variants: diameters, sums, non-target status,
new lesions, baseline conformance and best overall response.

The criteria modules decide categories through their rule files; this module only measures. Every
length is a ``Decimal`` in mm and every comparison goes through a named ``Threshold`` (exact arithmetic).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from rules.engine import RuleSet, Threshold
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    LocalTherapyKind,
    NonTargetStatus,
    recist_axis_mm,
)
from rules.results import BestResponse, TimepointResponse, fmt_mm
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name, merged_into_name

TumourFilter = Callable[[TrackedLesion, LesionMeasurement], bool]
"""Which lesion readings count as tumour (itRECIST and the PET criteria narrow the lesion set with it)."""

ZERO = Decimal("0")
NODAL_ORGAN = "lymph node"
"""RECIST 1.1 §3.3.1 / WG: all lymph nodes, at any site, count as one organ."""


@dataclass(frozen=True)
class LesionReading:
    """A lesion's RECIST-relevant value at one timepoint."""

    lesion: TrackedLesion
    diameter_mm: Decimal | None
    """``None`` when not assessed (missing, not imaged, empty measurement, locally treated)."""
    note: str = ""


def recist_diameter(
    measurement: LesionMeasurement | None, *, nodal: bool, too_small_mm: Decimal
) -> tuple[Decimal | None, str]:
    """The RECIST diameter of a lesion at a scan, with how it was obtained.

    - absent → 0 mm (contract §3: a lesion that has disappeared is measured as 0 mm);
    - too small to measure → the 5 mm default (RECIST 1.1 Appendix I; the raw value is kept in the trace);
    - present → the long axis, or the short axis for nodes (RECIST 1.1 §3.1.1);
    - missing, not assessed, or an empty measurement → not assessed (never 0: size spec E11).
    """
    if measurement is None:
        return None, "not reported"
    if measurement.status is LesionStatus.NOT_ASSESSED:
        return None, f"not assessed: {measurement.conflict}" if measurement.conflict else "not assessed"
    if measurement.merged_into:
        # Contract §9.3, size spec §1.6: a lesion that coalesced with another counts 0 mm; the coalesced one is
        # measured as one (RECIST 1.1 §4.3).
        reported = recist_axis_mm(measurement, nodal=nodal)
        ignored = f"; reported {fmt_mm(reported)} not used" if reported else ""
        return ZERO, f"merged into {merged_into_name(measurement)} (0 mm{ignored})"
    if measurement.status is LesionStatus.ABSENT:
        return ZERO, "absent (0 mm)"
    if measurement.status is LesionStatus.TOO_SMALL:
        return too_small_mm, f"too small to measure → {too_small_mm} mm"
    value = recist_axis_mm(measurement, nodal=nodal)
    if value is None:
        return None, "empty measurement (not assessed)"
    if measurement.fragments:
        # RECIST 1.1 §4.3 (split lesions): the fragments' diameters are added.
        parts = [recist_axis_mm(m, nodal=nodal) for m in measurement.fragments]
        return value, f"fragments {' + '.join(fmt_mm(p) for p in parts)} = {fmt_mm(value)}"
    return value, ""


def locally_treated_lesions(timeline: Timeline, up_to: dt.date) -> set[str]:
    """Lesions irradiated after baseline and on or before ``up_to`` (RECIST WG FAQ 'Surgery/radiotherapy')."""
    if timeline.baseline is None:
        return set()
    treated: set[str] = set()
    for therapy in timeline.facts.local_therapies:
        if (
            therapy.kind is LocalTherapyKind.RADIOTHERAPY
            and timeline.baseline.scan_date < therapy.performed_date <= up_to
        ):
            treated.update(therapy.lesion_ids)
    return treated


@dataclass(frozen=True)
class TargetSum:
    readings: tuple[LesionReading, ...]
    total_mm: Decimal
    """Sum over the assessed targets (missing ones count as 0: the 'partial sum')."""
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        parts = []
        for reading in self.readings:
            name = lesion_name(reading.lesion)
            if reading.diameter_mm is None:
                # A stated reason (e.g. a conflict of two groups, contract §9.3) is shown; "not reported" is not.
                shown = reading.note and reading.note.startswith("not assessed: ")
                parts.append(f"{name} n/a ({reading.note})" if shown else f"{name} n/a")
            else:
                parts.append(f"{name} {reading.diameter_mm}{' (' + reading.note + ')' if reading.note else ''}")
        return " + ".join(parts) if parts else "no targets"


def target_sum(
    tp: Timepoint,
    targets: Sequence[TrackedLesion],
    *,
    too_small_mm: Decimal,
    not_assessable: Iterable[str] = (),
) -> TargetSum:
    blocked = set(not_assessable)
    readings = []
    for lesion in targets:
        if lesion.lesion_id in blocked:
            readings.append(LesionReading(lesion, None, "locally treated: not assessable"))
            continue
        value, note = recist_diameter(tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small_mm)
        readings.append(LesionReading(lesion, value, note))
    total = sum((r.diameter_mm for r in readings if r.diameter_mm is not None), ZERO)
    missing = tuple(lesion_name(r.lesion) for r in readings if r.diameter_mm is None)
    return TargetSum(tuple(readings), total, missing)


def targets_complete_response(readings: Sequence[LesionReading], node_normal: Threshold) -> bool:
    """RECIST 1.1 §4.3.1: non-nodal targets disappeared (0 mm) and nodal targets below 10 mm short axis.

    A node reported too small to measure is below 10 mm and counts as normal (spec §1.6 [D]), so the CR sum
    may be > 0 — testing "sum == 0" is the C-DTT bug the spec warns about.
    """
    for reading in readings:
        if reading.diameter_mm is None:
            return False
        if reading.lesion.nodal:
            if not node_normal.holds(reading.diameter_mm):
                return False
        elif reading.diameter_mm != 0:
            return False
    return True


@dataclass(frozen=True)
class NonTargetState:
    has_nontargets: bool
    any_unequivocal_progression: bool
    all_assessed: bool
    all_absent: bool
    reappeared: tuple[str, ...]
    changes: Mapping[str, str] = field(default_factory=dict)
    """Reader change grades (NC/INC/NCLA/INCLA/UNE) by lesion name."""


def nontarget_state(
    tp: Timepoint, nontargets: Sequence[TrackedLesion], *, after_complete_response: bool
) -> NonTargetState:
    """Read the non-target lesions' qualitative status (never inferred from diameters: spec §1.3 [D])."""
    unequivocal = False
    all_assessed = True
    all_absent = True
    reappeared = []
    changes: dict[str, str] = {}
    for lesion in nontargets:
        m = tp.of(lesion.lesion_id)
        if m is None or m.status is LesionStatus.NOT_ASSESSED:
            all_assessed = False
            all_absent = False
            continue
        if m.nontarget_change is not None:
            changes[lesion_name(lesion)] = m.nontarget_change.value
        status = m.nontarget_status
        if status is None:
            status = NonTargetStatus.ABSENT if m.status is LesionStatus.ABSENT else NonTargetStatus.PRESENT
        if m.nontarget_change is not None and m.nontarget_change.value == "UNE":
            status = NonTargetStatus.UNEQUIVOCAL_PROGRESSION
        if status is NonTargetStatus.UNEQUIVOCAL_PROGRESSION:
            unequivocal = True
        if status is not NonTargetStatus.ABSENT:
            all_absent = False
            if after_complete_response:
                reappeared.append(lesion_name(lesion))
    return NonTargetState(bool(nontargets), unequivocal, all_assessed, all_absent, tuple(reappeared), changes)


def new_lesion_readings(
    tp: Timepoint, timeline: Timeline, *, is_tumour: TumourFilter | None = None
) -> tuple[list[TrackedLesion], list[TrackedLesion]]:
    """New lesions present at ``tp``: (unequivocal, equivocal)."""
    unequivocal: list[TrackedLesion] = []
    equivocal: list[TrackedLesion] = []
    for lesion in timeline.lesions.values():
        if lesion.role is not LesionRole.NEW or lesion.first_seen > tp.scan_date:
            continue
        m = tp.of(lesion.lesion_id)
        if m is None or m.status not in (LesionStatus.PRESENT, LesionStatus.TOO_SMALL):
            continue
        if is_tumour is not None and not is_tumour(lesion, m):
            continue
        (equivocal if m.equivocal else unequivocal).append(lesion)
    return unequivocal, equivocal


def is_measurable(measurement: LesionMeasurement, ruleset: RuleSet, slice_thickness_mm: Decimal | None = None) -> bool:
    """RECIST 1.1 §3.1.1: LD ≥ max(10 mm, 2 × slice thickness); nodes SA ≥ 15 mm."""
    if measurement.status is not LesionStatus.PRESENT:
        return False
    if measurement.nodal:
        return measurement.short_axis_mm is not None and ruleset.threshold("measurable_node_min_short_axis").holds(
            measurement.short_axis_mm
        )
    if measurement.long_axis_mm is None:
        return False
    if not ruleset.threshold("measurable_lesion_min_longest_diameter").holds(measurement.long_axis_mm):
        return False
    if slice_thickness_mm is not None and slice_thickness_mm > 5:
        return measurement.long_axis_mm >= 2 * slice_thickness_mm
    return True


def baseline_conformance(timeline: Timeline, ruleset: RuleSet) -> list[str]:
    """Baseline checks reported as warnings (RECIST 1.1 §3.2–3.3)."""
    warnings: list[str] = []
    baseline = timeline.baseline
    if baseline is None:
        return ["no baseline scan with measurements"]
    targets = timeline.lesions_with_role(LesionRole.TARGET)
    if not ruleset.threshold("max_targets").holds(len(targets)):
        warnings.append(f"{len(targets)} target lesions at baseline (RECIST 1.1 allows at most 5)")
    organs = Counter(NODAL_ORGAN if t.nodal else (t.organ or f"unknown organ ({lesion_name(t)})") for t in targets)
    for organ, count in organs.items():
        if not ruleset.threshold("max_targets_per_organ").holds(count):
            warnings.append(f"{count} target lesions in {organ} (RECIST 1.1 allows at most 2 per organ)")
    for target in targets:
        m = baseline.of(target.lesion_id)
        if m is not None and not is_measurable(m, ruleset, baseline.scan.slice_thickness_mm):
            warnings.append(f"target {lesion_name(target)} is not measurable at baseline (RECIST 1.1 §3.1.1)")
    if timeline.treatment_start is not None:
        days = (timeline.treatment_start - baseline.scan_date).days
        if days < 0:
            warnings.append(f"baseline scan is {-days} days after the start of immunotherapy")
        elif not ruleset.threshold("baseline_max_days_before_treatment").holds(days):
            warnings.append(f"baseline scan is {days} days before treatment (RECIST 1.1: at most 28)")
    return warnings


# --- best overall response ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseOrder:
    """The category names a criterion uses for the best-response search."""

    complete: str
    partial: str
    stable: str
    non_cr_non_pd: str
    progression: tuple[str, ...]
    not_evaluable: str = "NE"


RECIST_ORDER = ResponseOrder("CR", "PR", "SD", "NON-CR/NON-PD", ("PD",))


def best_overall_response(
    responses: Sequence[TimepointResponse],
    *,
    anchor: dt.date | None,
    order: ResponseOrder,
    stable_min_days: int,
    confirm_min_days: int,
    confirmed: bool,
) -> BestResponse:
    """Best overall response (RECIST 1.1 §4.4; Table 3 when ``confirmed``; C-ADM ordering and rules).

    - CR/PR without confirmation: the first such timepoint;
    - with confirmation: a later CR (for CR) or CR/PR (for PR) ≥ ``confirm_min_days`` later, with only
      CR/PR and at most one NE in between (C-ADM);
    - otherwise SD (or non-CR/non-PD) if met at least ``stable_min_days`` after day 0; a CR/PR timepoint
      counts as SD for this;
    - otherwise PD if progression was recorded, else NE.
    """
    evaluated = [r for r in responses if r.category]

    def confirmation_for(index: int, acceptable: set[str]) -> TimepointResponse | None:
        first = evaluated[index]
        not_evaluable = 0
        for later in evaluated[index + 1 :]:
            if later.category == order.not_evaluable:
                not_evaluable += 1
                if not_evaluable > 1:
                    return None
                continue
            if later.category not in {order.complete, order.partial}:
                return None
            if later.category in acceptable and (later.scan_date - first.scan_date).days >= confirm_min_days:
                return later
        return None

    if not confirmed:
        for category in (order.complete, order.partial):
            first = next((r for r in evaluated if r.category == category), None)
            if first is not None:
                return BestResponse(category, first.scan_date, False, f"first {category} on {first.scan_date}")
    else:
        # RECIST 1.1 Table 3: CR then CR is CR; CR or PR then CR/PR is PR.
        for category, starts, acceptable in (
            (order.complete, {order.complete}, {order.complete}),
            (order.partial, {order.complete, order.partial}, {order.complete, order.partial}),
        ):
            for i, r in enumerate(evaluated):
                if r.category not in starts:
                    continue
                confirming = confirmation_for(i, acceptable)
                if confirming is not None:
                    days = (confirming.scan_date - r.scan_date).days
                    return BestResponse(
                        category,
                        r.scan_date,
                        True,
                        f"{r.category} on {r.scan_date} confirmed by {confirming.category} on "
                        f"{confirming.scan_date} ({days} days ≥ {confirm_min_days})",
                    )
    stable_like = {order.complete, order.partial, order.stable}
    for category in (order.stable, order.non_cr_non_pd):
        pool = stable_like if category == order.stable else {order.non_cr_non_pd}
        for r in evaluated:
            if r.category in pool and anchor is not None and (r.scan_date - anchor).days >= stable_min_days:
                return BestResponse(
                    category,
                    r.scan_date,
                    confirmed,
                    f"{r.category} on {r.scan_date}, day {(r.scan_date - anchor).days} ≥ {stable_min_days}",
                )
    progressed = next((r for r in evaluated if r.category in order.progression), None)
    if progressed is not None:
        return BestResponse(
            progressed.category,
            progressed.scan_date,
            confirmed,
            "no response or stable disease of sufficient duration before progression",
        )
    return BestResponse(
        order.not_evaluable, None, confirmed, "no response, no stable disease of the minimum duration, no progression"
    )
