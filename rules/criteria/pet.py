"""Bookkeeping shared by the FDG-PET criteria (PERCIST 1.0, imPERCIST5, PERCIMT, iPERCIST, EORTC 1999) and the
metabolic part of Lugano 2014: size spec (clinical/criteria-size-pet.md) §7 and §9.1.

This module only *measures*; every threshold it applies is a named threshold of the calling criterion's rule
file and every category comes from that criterion's decision tables:

- which follow-ups are PET scans (``has_pet_values``: a SUL/SUV value or a reference region was reported);
- the PERCIST reference regions (liver, else blood pool) and the measurability limit
  ``SULpeak ≥ 1.5 × liver SULmean + 2 × SD`` (blood pool: ``2.0 × mean + 2 × SD``), computed exactly (the P2 trap
  ``1.5*1.2 + 2*0.1`` is exactly 2.0 here);
- scan comparability (liver SULmean within 20 % and < 0.3 SUL of baseline, uptake times < 15 min apart:
  ``scan_comparability``);
- lesion uptakes (SULpeak), the hottest lesion of a scan and the "up to 5, ≤ 2 per organ" selection;
- which new lesions are FDG-avid and which lesions have resolved to background.

Policies this module applies for every PET criterion (spec silent, [D]; each is a named threshold in the rule files):

- a **new lesion is FDG-avid** when the reader did not mark it equivocal, it is tumour (``is_tumour``), and its
  SULpeak is reported *above the liver SULmean of the same scan* (``new_lesion_avid_fraction_of_liver_mean``);
  PERCIST's CMR is "below mean liver activity", so uptake at or below it is background. A new lesion with no SULpeak
  reported at a PET scan has no measurable uptake. Without a liver reference any reported SULpeak counts;
- a **lesion has resolved** (CMR/PERCIMT) when it is reported absent or its SULpeak is below the liver SULmean of the
  same scan (``complete_resolution_fraction_of_liver_mean``); a present lesion without a SULpeak is *unknown*, never
  resolved (the E11 "empty is not zero" rule).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeGuard

from rules.criteria.burden import fraction_as_decimal, organ_of
from rules.criteria.recist_family import (
    TumourFilter as TumourFilter,  # re-exported: criteria annotate with pet.TumourFilter
)
from rules.criteria.recist_family import new_lesion_readings
from rules.engine import RuleSet, Threshold, format_fraction
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, ReferenceMeasurement, ReferenceRegion
from rules.pet_tracers import FDG, PetTracer, default_tracer
from rules.results import CriterionAssessment, TimepointResponse, fmt_pct, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

# --- thresholds whose value or inclusiveness a policy flag sets -------------------------------------------


def holds_against(threshold: Threshold, lhs: Fraction | Decimal | int, rhs: Fraction | Decimal | int) -> bool:
    """Compare ``lhs`` with an already computed limit ``rhs`` using the threshold's direction and inclusiveness."""
    return dataclasses.replace(threshold, value=Fraction(1)).holds(lhs, rhs)


def fmt_sul(value: Decimal | Fraction | None) -> str:
    """An SUL/SUV value for traces: exact, without trailing zeros (8.0 → 8, 3.45 → 3.45)."""
    if value is None:
        return "—"
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return f"{value.numerator}.0"
        value = fraction_as_decimal(value).quantize(Decimal("0.0001"))
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def as_decimal(value: Fraction | Decimal | None) -> Decimal | None:
    """An exact value for ``extra`` (reports): Fractions with a finite decimal expansion stay exact, others are
    rounded to 4 decimals (display only: categories were decided on the exact value)."""
    if value is None or isinstance(value, Decimal):
        return value
    return fraction_as_decimal(value).quantize(Decimal("0.0001")).normalize()


def fmt_pct_signed(value: Fraction | None) -> str:
    return fmt_pct(value).replace("-", "−")


def op(threshold: Threshold) -> str:
    """The comparison a threshold makes, as a symbol."""
    return {("at-least", True): "≥", ("at-least", False): ">", ("at-most", True): "≤", ("at-most", False): "<"}[
        (threshold.direction, threshold.inclusive)
    ]


def relative_rule(threshold: Threshold) -> str:
    """A fraction-of-reference threshold as a percentage change: 7/10 at-most → "≥ 30 % decrease",
    13/10 at-least strict → "> 30 % increase"."""
    change = (threshold.value - 1) * 100
    symbol = {"≤": "≥", "<": ">"}.get(op(threshold), op(threshold))
    return f"{symbol} {format_fraction(abs(change))} % {'increase' if change > 0 else 'decrease'}"


def fmt_delta(value: Decimal | Fraction) -> str:
    sign = "+" if value > 0 else ("−" if value < 0 else "±")
    return f"{sign}{fmt_sul(-value if value < 0 else value)}"


def change_line(label: str, current: Decimal | Fraction, reference: Decimal | Fraction, reference_label: str) -> str:
    """``"hottest lesion B SULpeak 5.5 vs baseline hottest A 8: −31.25 %, Δ −2.5"``."""
    return (
        f"{label} {fmt_sul(current)} vs {reference_label} {fmt_sul(reference)}: "
        f"{fmt_pct_signed(percent_change(current, reference))}, Δ {fmt_delta(Fraction(current) - Fraction(reference))}"
    )


# --- which scans are PET scans ----------------------------------------------------------------------------


def has_pet_values(tp: Timepoint | None) -> bool:
    """A timepoint is a PET scan when a lesion SUL/SUV value or a reference region was reported for it."""
    if tp is None:
        return False
    if any(m.sul_peak is not None or m.suv_max is not None for m in tp.measurements.values()):
        return True
    return any(r.sul_mean is not None or r.suv_mean is not None or r.suv_max is not None for r in tp.references)


def pet_followups(timeline: Timeline) -> list[Timepoint]:
    return [tp for tp in timeline.followups if has_pet_values(tp)]


# --- reference regions, measurability ----------------------------------------------------------------------


def reference_region(tp: Timepoint | None, region: ReferenceRegion) -> ReferenceMeasurement | None:
    """The (last reported) reference region of a scan with a SULmean (contract §3: Finding 126040, DCM)."""
    if tp is None:
        return None
    found = [r for r in tp.references if r.region is region and r.sul_mean is not None]
    return found[-1] if found else None


def liver_mean(tp: Timepoint | None) -> Decimal | None:
    liver = reference_region(tp, ReferenceRegion.LIVER)
    return liver.sul_mean if liver else None


@dataclass(frozen=True)
class MeasurabilityLimit:
    """PERCIST's minimum SULpeak for a measurable target lesion at one scan."""

    value: Fraction | None
    """``None`` when no usable reference region was reported."""
    description: str
    comparison: Threshold | None = None

    def holds(self, sul: Decimal) -> bool | None:
        if self.value is None or self.comparison is None:
            return None
        return holds_against(self.comparison, sul, self.value)


def measurability_limit(ruleset: RuleSet, tp: Timepoint) -> MeasurabilityLimit:
    """PERCIST 1.0 measurable target (spec §7.1 [V:PMOD; S:PMC7072145]): ``SULpeak ≥ 1.5 × liver SULmean + 2 × SD``;
    with no liver reference, blood pool: ``SULpeak ≥ 2.0 × blood-pool SULmean + 2 × SD``. Exact arithmetic."""
    for region, prefix in ((ReferenceRegion.LIVER, "liver"), (ReferenceRegion.BLOOD_POOL, "blood_pool")):
        ref = reference_region(tp, region)
        if ref is None or ref.sul_mean is None:  # reference_region returns only regions with a SULmean
            continue
        mean_multiple = ruleset.threshold(f"measurable_{prefix}_mean_multiple")
        sd_multiple = ruleset.threshold(f"measurable_{prefix}_sd_multiple")
        if ref.sul_sd is None:
            return MeasurabilityLimit(
                None,
                f"{region.value} SULmean {fmt_sul(ref.sul_mean)} reported without its SD: "
                f"the measurability limit cannot be computed",
            )
        limit = mean_multiple.value * Fraction(ref.sul_mean) + sd_multiple.value * Fraction(ref.sul_sd)
        description = (
            f"{format_fraction(mean_multiple.value)} × {region.value} SULmean {fmt_sul(ref.sul_mean)} + "
            f"{format_fraction(sd_multiple.value)} × SD {fmt_sul(ref.sul_sd)} = {fmt_sul(limit)}"
        )
        return MeasurabilityLimit(limit, description, mean_multiple)
    return MeasurabilityLimit(None, "no liver or blood-pool reference region reported")


# --- comparability of two PET scans (quality control) ---------------------------------------------------


@dataclass(frozen=True)
class Comparability:
    comparable: bool
    lines: tuple[str, ...]
    failures: tuple[str, ...]


def scan_comparability(
    baseline: Timepoint,
    tp: Timepoint,
    *,
    rules: RuleSet,
    flags: Mapping[str, Any],
    liver_condition: str | None,
    uptake: Threshold | None,
    liver_required: bool,
    label: str,
) -> Comparability:
    """Whether a follow-up PET can be compared quantitatively with the baseline PET.

    Liver SULmean: the condition ``liver_condition`` of ``rules`` on the absolute change (``difference``) and 1 % of the
    baseline value (PERCIST 1.0 [V:PMC4377159 T2]: within 20 % **and** 0.3 SUL); ``None``: not checked. Injection-
    to-scan times within ``uptake`` minutes (``None``: not checked). Scanner and reconstruction identity are not in
    the facts: they are the site's quality assurance.
    """
    lines: list[str] = []
    failures: list[str] = []
    base_liver = liver_mean(baseline)
    liver = liver_mean(tp)
    if base_liver is None or liver is None:
        missing = " and ".join(x for x, v in (("baseline", base_liver), (str(tp.scan_date), liver)) if v is None)
        if liver_required:
            failures.append(f"no liver reference SULmean at {missing}: {label} comparability cannot be checked")
        else:
            lines.append(f"no liver reference SULmean at {missing}: liver comparability not checked")
    else:
        difference = Fraction(liver) - Fraction(base_liver)
        quantities = {"difference": abs(difference), "one_percent_of_baseline": Fraction(base_liver) / 100}
        ok = liver_condition is None or rules.holds(liver_condition, flags, **quantities)
        checks = []
        # Each check of the condition once more, for the trace only (the decision is ``ok``).
        for check in rules.conditions[liver_condition].checks if liver_condition else ():
            threshold = rules.configured_threshold(check.threshold, flags)
            if threshold is None:
                continue
            if check.reference:
                within = threshold.holds(quantities[check.quantity], quantities[check.reference])
                checks.append(
                    f"{fmt_pct(percent_change(liver, base_liver)).replace('-', '−')} "
                    f"({'within' if within else 'outside'} {threshold.describe()})"
                )
            else:
                within = threshold.holds(quantities[check.quantity])
                checks.append(
                    f"Δ {fmt_delta(difference)} SUL ({'within' if within else 'outside'} {threshold.describe()})"
                )
        text = f"liver SULmean {fmt_sul(liver)} vs baseline {fmt_sul(base_liver)}: " + ", ".join(checks)
        if ok:
            lines.append(text + " → comparable")
        else:
            failures.append(text + f" → scans not comparable ({label} liver quality control)")
    if uptake is not None:
        base_minutes, minutes = baseline.scan.pet_uptake_minutes, tp.scan.pet_uptake_minutes
        if base_minutes is None or minutes is None:
            lines.append("uptake time not recorded for both scans: not checked")
        else:
            gap = abs(Fraction(minutes) - Fraction(base_minutes))
            text = f"uptake time {fmt_sul(minutes)} vs {fmt_sul(base_minutes)} min: difference {fmt_sul(gap)} min"
            if uptake.holds(gap):
                lines.append(text + f" ({uptake.describe()})")
            else:
                failures.append(text + f", not {uptake.describe()} → scans not comparable")
    return Comparability(not failures, tuple(lines), tuple(failures))


# --- lesion uptakes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uptake:
    """A lesion's SULpeak at one scan."""

    lesion: TrackedLesion
    measurement: LesionMeasurement
    sul: Decimal

    @property
    def name(self) -> str:
        return lesion_name(self.lesion)

    @property
    def new(self) -> bool:
        return self.lesion.role is LesionRole.NEW


def lesion_uptake(tp: Timepoint, lesion: TrackedLesion, *, is_tumour: TumourFilter | None = None) -> Uptake | None:
    """The lesion's SULpeak at ``tp`` when it is present and a value was reported (absent → no uptake)."""
    m = tp.of(lesion.lesion_id)
    if m is None or m.status not in (LesionStatus.PRESENT, LesionStatus.TOO_SMALL) or m.sul_peak is None:
        return None
    if is_tumour is not None and not is_tumour(lesion, m):
        return None
    return Uptake(lesion, m, m.sul_peak)


def baseline_lesions(timeline: Timeline) -> list[TrackedLesion]:
    """Lesions recorded at baseline (targets and non-targets: PERCIST picks its own by uptake)."""
    return [lesion for lesion in timeline.lesions.values() if lesion.role is not LesionRole.NEW]


def uptakes(tp: Timepoint, lesions: Iterable[TrackedLesion], *, is_tumour: TumourFilter | None = None) -> list[Uptake]:
    found = [lesion_uptake(tp, lesion, is_tumour=is_tumour) for lesion in lesions]
    return sorted((u for u in found if u is not None), key=lambda u: (-u.sul, u.name))


def hottest(found: Sequence[Uptake]) -> tuple[Uptake | None, tuple[str, ...]]:
    """The hottest lesion (highest SULpeak) and, when several share that value, the names of the others
    (the tie is broken by name so that the result is deterministic; the trace says so)."""
    if not found:
        return None, ()
    ordered = sorted(found, key=lambda u: (-u.sul, u.name))
    top = ordered[0]
    ties = tuple(u.name for u in ordered[1:] if u.sul == top.sul)
    return top, ties


def select_hottest(found: Sequence[Uptake], *, max_total: Threshold, max_per_organ: Threshold) -> list[Uptake]:
    """PERCIST5 selection (spec §7.1 secondary measure, §7.3 imPERCIST5): the hottest lesions, at most ``max_total``
    in all and ``max_per_organ`` per organ (all lymph nodes count as one organ, as RECIST 1.1)."""
    chosen: list[Uptake] = []
    per_organ: Counter[str] = Counter()
    for uptake in sorted(found, key=lambda u: (-u.sul, u.name)):
        organ = organ_of(uptake.lesion)
        if not max_total.holds(len(chosen) + 1):
            break
        if not max_per_organ.holds(per_organ[organ] + 1):
            continue
        chosen.append(uptake)
        per_organ[organ] += 1
    return chosen


def describe_uptakes(found: Sequence[Uptake]) -> str:
    return ", ".join(f"{u.name}{' (new)' if u.new else ''} {fmt_sul(u.sul)}" for u in found) if found else "none"


# --- new FDG-avid lesions and resolution ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewLesionReading:
    avid: tuple[Uptake, ...]
    """New lesions read as FDG-avid tumour at this scan."""
    not_avid: tuple[str, ...]
    """Why other new lesions present at this scan were not counted (for the trace)."""


def new_fdg_avid_lesions(
    tp: Timepoint, timeline: Timeline, avid: Threshold, *, is_tumour: TumourFilter | None = None
) -> NewLesionReading:
    """New lesions present at ``tp`` that are FDG-avid tumour (module docstring policy [D])."""
    unequivocal, equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
    liver = liver_mean(tp)
    found: list[Uptake] = []
    notes: list[str] = [f"new lesion {lesion_name(lesion)} is equivocal: followed, not counted" for lesion in equivocal]
    for lesion in unequivocal:
        m = tp.of(lesion.lesion_id)
        if m is None or m.sul_peak is None:
            notes.append(f"new lesion {lesion_name(lesion)}: no SULpeak reported at this PET (no measurable uptake)")
            continue
        if liver is not None and not avid.holds(m.sul_peak, liver):
            notes.append(
                f"new lesion {lesion_name(lesion)} SULpeak {fmt_sul(m.sul_peak)} is not above the liver SULmean "
                f"{fmt_sul(liver)}: background uptake, not FDG-avid"
            )
            continue
        found.append(Uptake(lesion, m, m.sul_peak))
    return NewLesionReading(tuple(sorted(found, key=lambda u: (-u.sul, u.name))), tuple(notes))


def resolved(tp: Timepoint, lesion: TrackedLesion, below_liver: Threshold) -> bool | None:
    """Whether a lesion's uptake has resolved at ``tp``: absent, or SULpeak below the liver SULmean (policy [D]);
    ``None`` when it cannot be told (not reported, not assessed, no SULpeak, or no liver reference)."""
    m = tp.of(lesion.lesion_id)
    if m is None or m.status is LesionStatus.NOT_ASSESSED:
        return None
    if m.status is LesionStatus.ABSENT:
        return True
    liver = liver_mean(tp)
    if m.sul_peak is None or liver is None:
        return None
    return below_liver.holds(m.sul_peak, liver)


@dataclass(frozen=True)
class Resolution:
    """Resolution of the pre-existing FDG-avid lesions at one scan."""

    resolved: tuple[str, ...]
    persisting: tuple[str, ...]
    unknown: tuple[str, ...]

    @property
    def all_resolved(self) -> bool:
        return bool(self.resolved) and not self.persisting and not self.unknown

    @property
    def some_resolved(self) -> bool:
        return bool(self.resolved)

    def describe(self) -> str:
        parts = []
        for label, names in (("resolved", self.resolved), ("persisting", self.persisting), ("unknown", self.unknown)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        return "; ".join(parts) if parts else "no pre-existing FDG-avid lesion"


def resolution(tp: Timepoint, lesions: Iterable[TrackedLesion], below_liver: Threshold) -> Resolution:
    done: list[str] = []
    persisting: list[str] = []
    unknown: list[str] = []
    for lesion in lesions:
        state = resolved(tp, lesion, below_liver)
        (done if state else unknown if state is None else persisting).append(lesion_name(lesion))
    return Resolution(tuple(done), tuple(persisting), tuple(unknown))


def baseline_avid_lesions(
    timeline: Timeline, avid: Threshold, *, is_tumour: TumourFilter | None = None
) -> list[TrackedLesion]:
    """Pre-existing FDG-avid lesions: baseline lesions whose SULpeak is above the baseline liver SULmean (or reported,
    without a liver reference)."""
    liver = liver_mean(timeline.established_baseline)
    return [
        u.lesion
        for u in uptakes(timeline.established_baseline, baseline_lesions(timeline), is_tumour=is_tumour)
        if liver is None or avid.holds(u.sul, liver)
    ]


def complete_resolution(
    tp: Timepoint,
    timeline: Timeline,
    below_liver: Threshold,
    new: NewLesionReading,
    *,
    is_tumour: TumourFilter | None = None,
) -> tuple[bool, str]:
    """CMR (policy [D]): every lesion with uptake at baseline and every new lesion seen so far has resolved to
    background (absent, or SULpeak below the liver SULmean), and no new FDG-avid lesion is present."""
    lesions = [
        u.lesion for u in uptakes(timeline.established_baseline, baseline_lesions(timeline), is_tumour=is_tumour)
    ]
    lesions += [
        lesion
        for lesion in timeline.lesions.values()
        if lesion.role is LesionRole.NEW and lesion.first_seen <= tp.scan_date
    ]
    state = resolution(tp, lesions, below_liver)
    ok = state.all_resolved and not new.avid
    return ok, f"complete resolution: {'yes' if ok else 'no'} ({state.describe()})"


def fmt_count(threshold: Threshold) -> str:
    return format_fraction(threshold.value)


# --- the tracer (contract §9.3) ------------------------------------------------------------------------------


def is_pet_timepoint(tp: Timepoint | None) -> TypeGuard[Timepoint]:
    return tp is not None and (has_pet_values(tp) or "PT" in tp.scan.modalities)


def tracer_of(tp: Timepoint | None) -> PetTracer | None:
    """The tracer of a PET timepoint: as stated (images or Observations), else 18F-FDG *assumed* (the service
    applies ``IMMUNORAD_DEFAULT_PET_TRACER`` before this; ``fdg`` is that setting's default)."""
    if not is_pet_timepoint(tp):
        return None
    return tp.scan.pet_tracer or default_tracer(FDG)


def _without_uptake(tp: Timepoint) -> Timepoint:
    """The timepoint as an FDG criterion may read it: uptake values of another tracer removed (they stay in the
    facts, the lesion table and the Observations as that tracer's values)."""
    return dataclasses.replace(
        tp,
        measurements={
            key: dataclasses.replace(m, sul_peak=None, suv_max=None, metabolic_volume_ml=None, tlg=None)
            for key, m in tp.measurements.items()
        },
        references=(),
    )


def assess_fdg_criterion(
    assess: Callable[..., CriterionAssessment], timeline: Timeline, *args: Any, **kwargs: Any
) -> CriterionAssessment:
    """Run an FDG criterion (``rules.pet_tracers.FDG_CRITERIA``) on the FDG PET timepoints only.

    A PET timepoint with another tracer is not read by the criterion: its uptake values are withheld, and its
    response is NE with the reason naming the tracer (or, for criteria that also read CT — Lugano, LYRIC — the
    CT-based response with a note that the metabolic read was not made). A non-FDG baseline makes every PET
    follow-up NE. A tracer that was assumed (stated nowhere) is said so in the trace.
    """
    points = [tp for tp in (timeline.baseline, *timeline.followups) if tp is not None]
    tracers = {tp.scan_date: tracer_of(tp) for tp in points}
    other = {day: tracer for day, tracer in tracers.items() if tracer is not None and not tracer.is_fdg}
    view = timeline
    if other:
        view = dataclasses.replace(
            timeline,
            baseline=_without_uptake(timeline.baseline)
            if timeline.baseline is not None and timeline.baseline.scan_date in other
            else timeline.baseline,
            followups=tuple(_without_uptake(tp) if tp.scan_date in other else tp for tp in timeline.followups),
        )
    result = assess(*args[:1], view, *args[1:], **kwargs)
    base_other = other.get(timeline.baseline.scan_date) if timeline.baseline else None
    responses = {r.scan_date: r for r in result.timepoints}
    out: list[TimepointResponse] = []
    for tp in timeline.followups:
        tracer = other.get(tp.scan_date) or (base_other if is_pet_timepoint(tp) else None)
        response = responses.pop(tp.scan_date, None)
        if tracer is not None:
            where = (
                "this scan"
                if tp.scan_date in other
                else f"the baseline PET ({timeline.established_baseline.scan_date})"  # base_other needs one
            )
            kept = "its uptake values are kept as values of that tracer, not read by this criterion"
            if response is None or response.category == "NE":
                reason = (
                    f"not evaluable: {result.criterion} is defined on 18F-FDG uptake; {where} used "
                    f"{tracer.describe()} — {kept}"
                )
                response = TimepointResponse(criterion=result.criterion, scan_date=tp.scan_date, category="NE")
            else:
                reason = (
                    f"the metabolic (18F-FDG, Deauville) read was not made: {where} used {tracer.describe()}; this "
                    f"response rests on the CT measurements — {kept}"
                )
            out.append(
                dataclasses.replace(
                    response, trace=(reason, *response.trace), extra={**response.extra, "tracer": tracer.key}
                )
            )
            continue
        if response is None:
            continue
        assumed = tracers.get(tp.scan_date)
        if assumed is not None and assumed.assumed:
            response = dataclasses.replace(
                response, trace=(*response.trace, f"tracer: {assumed.describe()} (IMMUNORAD_DEFAULT_PET_TRACER)")
            )
        out.append(response)
    out.extend(responses.values())
    warnings = list(result.warnings)
    if base_other is not None:
        warnings.append(f"baseline PET used {base_other.describe()}: {result.criterion} (18F-FDG) is not evaluable")
    return dataclasses.replace(
        result, timepoints=tuple(sorted(out, key=lambda r: r.scan_date)), warnings=tuple(warnings)
    )
