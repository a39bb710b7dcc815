"""What the kinetics definitions look at, measured once per patient: the scans E0, E1, E2 and C1D1 (spec §2.4), the
paired sums of diameters (§2.6), TGR, TGK and pace in each period (§2.1, §2.3), TTF, new lesions and ECOG (§3.1),
with the flags and notes raised on the way (§8)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria.recist_family import NODAL_ORGAN, new_lesion_readings, recist_diameter
from rules.engine import Engine, format_fraction
from rules.facts import LesionRole, LesionStatus, PatientFacts
from rules.kinetics.growth import (
    FERTE_MONTH_DAYS,
    growth_ratio,
    months_between,
    progression_pace,
    tumour_growth_kinetics,
    tumour_growth_rate,
)
from rules.kinetics.ruleset import PENDING, UNKNOWN, Component, KineticsRules
from rules.kinetics.wording import fmt, mm
from rules.results import CriterionAssessment
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

RECIST_CRITERION = "RECIST-1.1"
ECOG_CODE = "ecog"


@dataclass(frozen=True)
class NewLesionSummary:
    """New lesions at E2 and where they are, relative to the organs involved at E1 (spec §2.6 rule 4)."""

    lesions: tuple[tuple[str, str | None], ...] = ()
    """(name, organ key) of the unequivocal new lesions present at E2; nodes share one organ key."""
    involved_organs: frozenset[str] = frozenset()
    baseline_organ_unknown: bool = False

    @property
    def count(self) -> int:
        return len(self.lesions)

    def per_involved_organ(self) -> Counter[str]:
        return Counter(organ for _, organ in self.lesions if organ is not None and organ in self.involved_organs)

    def ambiguous(self) -> list[str]:
        """New lesions whose organ may or may not have been involved (their organ, or a baseline organ, unknown)."""
        return [
            name
            for name, organ in self.lesions
            if organ is None or (organ not in self.involved_organs and self.baseline_organ_unknown)
        ]

    def new_organs(self) -> list[str]:
        if self.baseline_organ_unknown:
            return []
        return sorted({organ for _, organ in self.lesions if organ is not None and organ not in self.involved_organs})


@dataclass(frozen=True)
class KineticQuantities:
    """Everything the definitions look at, measured once (spec §2.4–§2.6)."""

    c1d1: dt.date | None
    e0: dt.date | None
    e1: dt.date | None
    e2: dt.date | None
    month_days: float = FERTE_MONTH_DAYS
    reference: str = "missing"
    """``evaluable`` | ``missing`` (no usable E0) | ``not-evaluable`` (D0 = 0, too much of the sum dropped)."""
    reference_note: str = ""
    s0_reference: Decimal | None = None
    """S(E0) over the E1 targets still assessed at E0 (spec §2.6 rule 1)."""
    s1_reference: Decimal | None = None
    """S(E1) over the same lesions as ``s0_reference``."""
    s1: Decimal | None = None
    """S(E1) over every kinetics target (E1 targets not locally treated)."""
    s2: Decimal | None = None
    """S(E2) over the same lesions (a partial sum when ``s2_complete`` is false)."""
    s2_complete: bool = False
    tgr_reference: float | None = None
    tgr_experimental: float | None = None
    tgk_reference: float | None = None
    tgk_experimental: float | None = None
    pace_reference: float | None = None
    pace_experimental: float | None = None
    e2_window: str = "missing"
    """``in-window`` | ``atypical-window`` | ``missing`` (spec §2.4: E2 21–120 days after C1D1)."""
    recist_e2: str | None = None
    """RECIST 1.1 overall response at E2 (``PD``, ``SD``, ``NE``…), or ``None``."""
    ttf_days: int | None = None
    ttf_state: Component = UNKNOWN
    ttf_note: str = ""
    new_lesions: NewLesionSummary = field(default_factory=NewLesionSummary)
    ecog_baseline: Decimal | None = None
    ecog_window: tuple[tuple[dt.date, Decimal], ...] = ()
    deceased: dt.date | None = None
    death_from_progression: bool | None = None
    post_baseline_scan: bool = False
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def tgr_ratio(self) -> float | None:
        return growth_ratio(self.tgr_experimental, self.tgr_reference)

    @property
    def tgk_ratio(self) -> float | None:
        return growth_ratio(self.tgk_experimental, self.tgk_reference)

    @property
    def pace_ratio(self) -> float | None:
        return growth_ratio(self.pace_experimental, self.pace_reference)

    @property
    def tgr_difference(self) -> float | None:
        """ΔTGR = TGR_exp − TGR_ref (percentage points per month); defined whatever the sign of TGR_ref."""
        if self.tgr_experimental is None or self.tgr_reference is None:
            return None
        return self.tgr_experimental - self.tgr_reference

    @property
    def percent_e1_e2(self) -> Fraction | None:
        """%Δ(E1→E2) exactly, when S(E2) is complete."""
        if self.s1 is None or self.s2 is None or self.s1 == 0 or not self.s2_complete:
            return None
        return (Fraction(self.s2) - Fraction(self.s1)) / Fraction(self.s1) * 100

    def days_from_c1d1(self, day: dt.date | None) -> int | None:
        return None if day is None or self.c1d1 is None else (day - self.c1d1).days


def _organ_key(lesion: TrackedLesion) -> str | None:
    """RECIST 1.1 §3.3.1: all lymph nodes are one organ; other organs by their (normalised) name."""
    if lesion.nodal:
        return NODAL_ORGAN
    return lesion.organ.strip().lower() if lesion.organ and lesion.organ.strip() else None


def _locally_treated(
    timeline: Timeline,
    targets: Iterable[TrackedLesion],
    start: dt.date | None,
    end: dt.date | None,
    scans: Iterable[Timepoint | None],
) -> dict[str, str]:
    """Targets irradiated, ablated or injected between E0 (or E1) and E2 (spec §2.6 rule 8)."""
    treated: dict[str, str] = {}
    ids = {t.lesion_id for t in targets}
    if start is not None and end is not None:
        for therapy in timeline.facts.local_therapies:
            if start < therapy.performed_date <= end:
                for lesion_id in therapy.lesion_ids:
                    if lesion_id in ids:
                        treated[lesion_id] = f"{therapy.kind.value} on {therapy.performed_date}"
    for tp in scans:
        if tp is None:
            continue
        for lesion_id in ids:
            m = tp.of(lesion_id)
            if m is not None and (m.irradiated or m.injected):
                treated.setdefault(
                    lesion_id, f"{'irradiated' if m.irradiated else 'injected'} (reported at {tp.scan_date})"
                )
    return treated


def _has_reading(tp: Timepoint, targets: Iterable[TrackedLesion]) -> bool:
    return any((m := tp.of(t.lesion_id)) is not None and m.status is not LesionStatus.NOT_ASSESSED for t in targets)


def _last_record_date(facts: PatientFacts) -> dt.date | None:
    """The latest date anything is known about the patient (the record's cut-off)."""
    dates: list[dt.date] = [m.scan_date for m in facts.measurements]
    dates += [s.scan_date for s in facts.scans]
    dates += [o.effective_date for o in facts.observations]
    dates += [f.effective_date for f in facts.findings]
    dates += [t.performed_date for t in facts.local_therapies]
    dates += [r.scan_date for r in facts.references]
    for line in facts.therapy_lines:
        dates.append(line.start_date)
        if line.stop_date:
            dates.append(line.stop_date)
    if facts.deceased_date:
        dates.append(facts.deceased_date)
    return max(dates) if dates else None


@dataclass
class _Log:
    """The flags (each once) and notes raised while measuring, in the order they were raised."""

    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def flag(self, code: str, note: str | None = None) -> None:
        if code not in self.flags:
            self.flags.append(code)
        if note:
            self.notes.append(f"{code}: {note}")


@dataclass(frozen=True)
class _Rates:
    """TGR (%/month), TGK (mm/month) and pace (%/month) over one period (spec §2.1, §2.3, §3.2.3)."""

    tgr: float
    tgk: float
    pace: float


@dataclass(frozen=True)
class _ReferencePeriod:
    """E0 → E1: the paired sums over the targets assessed at E0 and their rates (spec §2.6 rules 1–3)."""

    status: str = "missing"
    note: str = "no usable pre-baseline scan E0"
    s0: Decimal | None = None
    s1: Decimal | None = None
    rates: _Rates | None = None


@dataclass(frozen=True)
class _ExperimentalPeriod:
    """E1 → E2 over every kinetics target; rates only on a complete S(E2) and S(E1) > 0."""

    s2: Decimal | None = None
    complete: bool = False
    rates: _Rates | None = None


def _too_small_mm(engine: Engine) -> Decimal:
    """The RECIST 1.1 'too small to measure' default diameter (counted for a lesion read as too small)."""
    too_small = engine.rulebase[RECIST_CRITERION].threshold("too_small_default_diameter").value
    return Decimal(too_small.numerator) / Decimal(too_small.denominator)


def _rates(s0: Decimal, s1: Decimal, d0: dt.date, d1: dt.date, month_days: float) -> _Rates:
    return _Rates(
        tumour_growth_rate(s0, s1, d0, d1, month_days=month_days),
        tumour_growth_kinetics(s0, s1, d0, d1, month_days=month_days),
        progression_pace(s0, s1, d0, d1, month_days=month_days),
    )


def _period_note(
    period: str, suffix: str, d0: dt.date, d1: dt.date, s0: Decimal, s1: Decimal, rates: _Rates, month_days: float
) -> str:
    return (
        f"{period} period {d0} → {d1} ({(d1 - d0).days} days = {months_between(d0, d1, month_days):.4f} months): "
        f"S {mm(s0)} → {mm(s1)}; TGR_{suffix} {fmt(rates.tgr, '%/month')}, "
        f"TGK_{suffix} {fmt(rates.tgk, 'mm/month')}, pace_{suffix} {fmt(rates.pace, '%/month')}"
    )


def _check_treatment_start(rules: KineticsRules, c1d1: dt.date | None, base: Timepoint | None, log: _Log) -> None:
    """C1D1 known, and the baseline before it and recent enough (spec §2.4)."""
    if c1d1 is None:
        log.flag("TREATMENT_START_UNKNOWN", "no immunotherapy start date: windows, TTF and the OAK anchor are unknown")
    if base is not None and c1d1 is not None:
        e1 = base.scan_date
        days = (c1d1 - e1).days
        if days < 0:
            log.flag("BASELINE_AFTER_TREATMENT_START", f"baseline scan {e1} is {-days} days after C1D1 {c1d1}")
        elif not rules.days_test("baseline_max_days_before_c1d1", days):
            log.flag(
                "BASELINE_STALE",
                f"E1 {e1} is {days} days before C1D1 (at most "
                f"{format_fraction(rules.threshold('baseline_max_days_before_c1d1').value)})",
            )


def _first_evaluation(
    rules: KineticsRules, timeline: Timeline, c1d1: dt.date | None, log: _Log
) -> tuple[Timepoint | None, str]:
    """E2, the first on-treatment scan with measurements, and its window (spec §2.4)."""
    e2_tp = next((tp for tp in timeline.followups if tp.measurements), None)
    e2 = e2_tp.scan_date if e2_tp else None
    e2_window = "missing"
    if e2 is not None:
        if c1d1 is None:
            e2_window = "atypical-window"
        else:
            days = (e2 - c1d1).days
            inside = rules.holds("e2_in_window", days_after_c1d1=days)
            e2_window = "in-window" if inside else "atypical-window"
        if e2_window == "atypical-window":
            log.flag(
                "WINDOW_ATYPICAL",
                f"E2 {e2} is {'?' if c1d1 is None else (e2 - c1d1).days} days after C1D1 "
                f"(window {format_fraction(rules.threshold('e2_min_days_after_c1d1').value)}–"
                f"{format_fraction(rules.threshold('e2_max_days_after_c1d1').value)} days): computed, flagged",
            )
    elif timeline.baseline is not None:
        log.flag("E2_MISSING", "no on-treatment evaluation scan yet")
    return e2_tp, e2_window


def _pre_baseline_scan(
    rules: KineticsRules, timeline: Timeline, targets: list[TrackedLesion], log: _Log
) -> Timepoint | None:
    """E0: the latest pre-baseline scan 14–180 days before E1, preferring one ≥ 28 days before (spec §2.4)."""
    base = timeline.baseline
    if base is None or not targets:
        return None
    e1 = base.scan_date
    candidates = []
    for tp in timeline.prebaseline:
        if not _has_reading(tp, targets):
            continue
        if tp.scan.modalities and set(tp.scan.modalities) <= {"PT"}:
            log.notes.append(
                f"pre-baseline scan {tp.scan_date} is PET only: not usable for diameter kinetics (spec §2.6 rule 7)"
            )
            continue
        candidates.append(tp)
    in_window = [tp for tp in candidates if rules.holds("e0_in_window", days_before_e1=(e1 - tp.scan_date).days)]
    preferred = [tp for tp in in_window if rules.days_test("e0_preferred_min_days_before_e1", (e1 - tp.scan_date).days)]
    usable = preferred or in_window
    e0_tp = usable[-1] if usable else None
    if e0_tp is None:
        if candidates:
            log.flag(
                "E0_OUTSIDE_WINDOW",
                "pre-baseline scan(s) "
                + ", ".join(f"{tp.scan_date} ({(e1 - tp.scan_date).days} days before E1)" for tp in candidates)
                + " outside the E0 window "
                f"{format_fraction(rules.threshold('e0_min_days_before_e1').value)}–"
                f"{format_fraction(rules.threshold('e0_max_days_before_e1').value)} days",
            )
        log.flag("E0_MISSING", "no usable pre-baseline scan: reference-period kinetics not available")
    return e0_tp


def _kinetic_targets(
    timeline: Timeline, targets: list[TrackedLesion], treated: Mapping[str, str], too_small_mm: Decimal, log: _Log
) -> list[tuple[TrackedLesion, Decimal]]:
    """E1 targets measured at E1, minus locally treated ones, with their E1 diameter (spec §2.6 rules 1, 6, 8)."""
    for lesion_id, how in treated.items():
        log.flag(
            "LOCALLY_TREATED_EXCLUDED",
            f"{lesion_name(timeline.lesions[lesion_id])} {how}: excluded from S(E0), S(E1), S(E2)",
        )
    kinetic_targets: list[tuple[TrackedLesion, Decimal]] = []
    for lesion in targets:
        if lesion.lesion_id in treated:
            continue
        # targets exist only with a baseline
        d1, _ = recist_diameter(
            timeline.established_baseline.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small_mm
        )
        if d1 is None:
            log.flag("BASELINE_TARGET_UNMEASURED", f"{lesion_name(lesion)} has no diameter at E1: excluded")
            continue
        kinetic_targets.append((lesion, d1))
    return kinetic_targets


def _reference_period(
    rules: KineticsRules,
    timeline: Timeline,
    e0_tp: Timepoint | None,
    kinetic_targets: list[tuple[TrackedLesion, Decimal]],
    s1: Decimal | None,
    too_small_mm: Decimal,
    month_days: float,
    log: _Log,
) -> _ReferencePeriod:
    """Reference period E0 → E1: paired sums over the lesions assessed at E0, then TGR/TGK/pace (spec §2.6 rules 1–3)."""
    if e0_tp is None or s1 is None:
        return _ReferencePeriod()
    e0, e1 = e0_tp.scan_date, timeline.established_baseline.scan_date
    s0_ref = Decimal(0)
    s1_ref = Decimal(0)
    dropped: list[str] = []
    dropped_mm = Decimal(0)
    for lesion, d1 in kinetic_targets:
        m = e0_tp.of(lesion.lesion_id)
        d0, note = recist_diameter(m, nodal=lesion.nodal, too_small_mm=too_small_mm)
        if m is not None and m.status is LesionStatus.ABSENT:
            if rules.flag("ABSENT_AT_E0_AS_ZERO"):
                log.flag("ABSENT_AT_E0_AS_ZERO", f"{lesion_name(lesion)} imaged and absent at E0: counted as 0 mm")
            else:
                d0, note = None, "absent at E0 (kinetics.ABSENT_AT_E0_AS_ZERO = false: dropped)"
        if d0 is None:
            dropped.append(f"{lesion_name(lesion)} ({note})")
            dropped_mm += d1
            continue
        s0_ref += d0
        s1_ref += d1
    reference = "evaluable"
    reference_note = f"S(E0) {mm(s0_ref)} on {e0}, S(E1) {mm(s1_ref)} on {e1}"
    if dropped:
        log.flag(
            "REF_SUM_REDUCED",
            f"{len(dropped)} lesion(s) not assessed at E0, dropped from S(E0) and S(E1): " + ", ".join(dropped),
        )
        if s1 == 0 or not rules.threshold("ref_sum_max_dropped_fraction").holds(dropped_mm, s1):
            reference = "not-evaluable"
            reference_note = (
                f"{mm(dropped_mm)} of the baseline sum {mm(s1)} dropped (more than "
                f"{format_fraction(rules.threshold('ref_sum_max_dropped_fraction').value)})"
            )
    if reference == "evaluable" and s0_ref == 0:
        reference = "not-evaluable"
        reference_note = "D0 = S(E0) = 0: ln(D1/D0) undefined (spec §2.6 rule 3)"
    if reference == "not-evaluable":
        log.flag("TGR_REF_NOT_EVALUABLE", reference_note)
        return _ReferencePeriod(reference, reference_note, s0_ref, s1_ref)
    _check_reference_period(rules, timeline, e0_tp, log)
    rates = _rates(s0_ref, s1_ref, e0, e1, month_days)
    if s1_ref == 0:
        log.flag("TGR_FLOOR", "S(E1) = 0 in the reference period: TGR_ref floored at −100")
    log.notes.append(_period_note("reference", "ref", e0, e1, s0_ref, s1_ref, rates, month_days))
    return _ReferencePeriod(reference, reference_note, s0_ref, s1_ref, rates)


def _check_reference_period(rules: KineticsRules, timeline: Timeline, e0_tp: Timepoint, log: _Log) -> None:
    """Flags on an evaluable reference period: too short, modality change, another therapy during it."""
    e0, e1 = e0_tp.scan_date, timeline.established_baseline.scan_date
    interval = (e1 - e0).days
    if not rules.days_test("kinetics_min_interval_days", interval):
        log.flag("KINETICS_INTERVAL_TOO_SHORT", f"E0 → E1 is {interval} days")
    if (
        e0_tp.scan.modalities
        and timeline.established_baseline.scan.modalities
        and set(e0_tp.scan.modalities) != set(timeline.established_baseline.scan.modalities)
    ):
        log.flag(
            "MODALITY_CHANGE",
            f"E0 {'/'.join(e0_tp.scan.modalities)} → E1 {'/'.join(timeline.established_baseline.scan.modalities)}",
        )
    for line in timeline.facts.therapy_lines:
        if line.start_date < e1 and (line.stop_date is None or line.stop_date > e0):
            log.flag("REF_PERIOD_ON_THERAPY", f"{line.agent} from {line.start_date} overlaps the reference period")


def _experimental_period(
    rules: KineticsRules,
    timeline: Timeline,
    e2_tp: Timepoint | None,
    kinetic_targets: list[tuple[TrackedLesion, Decimal]],
    s1: Decimal | None,
    too_small_mm: Decimal,
    month_days: float,
    log: _Log,
) -> _ExperimentalPeriod:
    """Experimental period E1 → E2 over every kinetics target: S(E2), then TGR/TGK/pace when it is complete."""
    if e2_tp is None or s1 is None:
        return _ExperimentalPeriod()
    e1, e2 = timeline.established_baseline.scan_date, e2_tp.scan_date
    missing = []
    s2 = Decimal(0)
    for lesion, _ in kinetic_targets:
        d2, note = recist_diameter(e2_tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small_mm)
        if d2 is None:
            missing.append(f"{lesion_name(lesion)} ({note})")
        else:
            s2 += d2
    complete = not missing
    if missing:
        log.flag("E2_SUM_INCOMPLETE", "not assessed at E2: " + ", ".join(missing) + f" (partial S(E2) {mm(s2)})")
    interval = (e2 - e1).days
    if not rules.days_test("kinetics_min_interval_days", interval):
        log.flag("KINETICS_INTERVAL_TOO_SHORT", f"E1 → E2 is {interval} days")
    if not (complete and s1 > 0):
        return _ExperimentalPeriod(s2, complete)
    rates = _rates(s1, s2, e1, e2, month_days)
    if s2 == 0:
        log.flag("TGR_FLOOR", "S(E2) = 0 (complete disappearance): TGR_exp floored at −100")
    log.notes.append(_period_note("experimental", "exp", e1, e2, s1, s2, rates, month_days))
    return _ExperimentalPeriod(s2, complete, rates)


def _recist_at(recist: CriterionAssessment | None, day: dt.date | None) -> str | None:
    """RECIST 1.1 overall response on that day, from the assessment passed in."""
    if recist is None or day is None:
        return None
    response = recist.at(day)
    return response.category if response else None


def _time_to_treatment_failure(
    rules: KineticsRules, timeline: Timeline, c1d1: dt.date | None, log: _Log
) -> tuple[int | None, Component, str]:
    """TTF: C1D1 → discontinuation (stop date) or death, whichever first (spec §3.1); PENDING while undecided."""
    if c1d1 is None:
        return None, UNKNOWN, "treatment start unknown"
    facts = timeline.facts
    ends = [d for d in ((timeline.therapy.stop_date if timeline.therapy else None), facts.deceased_date) if d]
    if ends:
        ttf_days = (min(ends) - c1d1).days
        ttf_state = rules.days_test("ttf_two_months_days", ttf_days)
        return ttf_days, ttf_state, f"TTF {ttf_days} days ({'<' if ttf_state else 'not <'} 2 months)"
    last = _last_record_date(facts)
    followed = (last - c1d1).days if last else 0
    if not rules.days_test("ttf_two_months_days", followed):
        return None, False, f"no treatment stop recorded, on treatment at least {followed} days (record up to {last})"
    note = f"no treatment stop recorded and only {followed} days since C1D1: PENDING_TTF until C1D1 + 61 days"
    log.flag("PENDING_TTF", note)
    return None, PENDING, note


def _new_lesions(timeline: Timeline, e2_tp: Timepoint | None) -> NewLesionSummary:
    """New lesions at E2 and the organs involved at E1 (spec §2.6 rule 4)."""
    if e2_tp is None or timeline.baseline is None:
        return NewLesionSummary()
    unequivocal, _ = new_lesion_readings(e2_tp, timeline)
    baseline_lesions = [lesion for lesion in timeline.lesions.values() if lesion.role is not LesionRole.NEW]
    involved = frozenset(k for k in (_organ_key(lesion) for lesion in baseline_lesions) if k is not None)
    return NewLesionSummary(
        tuple((lesion_name(lesion), _organ_key(lesion)) for lesion in unequivocal),
        involved,
        any(_organ_key(lesion) is None for lesion in baseline_lesions),
    )


def _ecog_around_start(
    rules: KineticsRules, facts: PatientFacts, c1d1: dt.date | None
) -> tuple[Decimal | None, tuple[tuple[dt.date, Decimal], ...]]:
    """ECOG performance status: the latest on or before C1D1, and the values in the first 2 months (Lo Russo)."""
    if c1d1 is None:
        return None, ()
    ecog = sorted(
        (o for o in facts.observations if o.code.lower() == ECOG_CODE and o.value is not None),
        key=lambda o: o.effective_date,
    )
    before = [o for o in ecog if o.effective_date <= c1d1]
    window = [
        (o.effective_date, o.value)
        for o in ecog
        if o.value is not None
        and o.effective_date > c1d1
        and rules.days_test("lorusso_clinical_window_days", (o.effective_date - c1d1).days)
    ]
    return (before[-1].value if before else None), tuple(window)


def kinetic_quantities(
    engine: Engine, timeline: Timeline, recist: CriterionAssessment | None, overrides: Mapping[str, Any] | None = None
) -> KineticQuantities:
    """Pick E0/E2 (spec §2.4), build the paired sums (§2.6) and compute TGR, TGK and pace (§2.1, §2.3)."""
    rules = KineticsRules(engine, overrides)
    month_days = rules.month_days()
    too_small_mm = _too_small_mm(engine)
    log = _Log()
    c1d1 = timeline.treatment_start
    base = timeline.baseline
    e1 = base.scan_date if base else None
    _check_treatment_start(rules, c1d1, base, log)

    targets = timeline.lesions_with_role(LesionRole.TARGET) if base else []
    if base is not None and not targets:
        log.flag("NO_TARGET_LESIONS", "no target lesion at baseline: no sum of diameters")
    e2_tp, e2_window = _first_evaluation(rules, timeline, c1d1, log)
    e2 = e2_tp.scan_date if e2_tp else None
    e0_tp = _pre_baseline_scan(rules, timeline, targets, log)
    e0 = e0_tp.scan_date if e0_tp else None

    treated = _locally_treated(timeline, targets, e0 or e1, e2, (e0_tp, base, e2_tp))
    kinetic_targets = _kinetic_targets(timeline, targets, treated, too_small_mm, log)
    s1 = sum((d1 for _, d1 in kinetic_targets), Decimal(0)) if base is not None and targets else None
    ref = _reference_period(rules, timeline, e0_tp, kinetic_targets, s1, too_small_mm, month_days, log)
    exp = _experimental_period(rules, timeline, e2_tp, kinetic_targets, s1, too_small_mm, month_days, log)
    ttf_days, ttf_state, ttf_note = _time_to_treatment_failure(rules, timeline, c1d1, log)
    ecog_baseline, ecog_window = _ecog_around_start(rules, timeline.facts, c1d1)

    return KineticQuantities(
        c1d1=c1d1,
        e0=e0,
        e1=e1,
        e2=e2,
        month_days=month_days,
        reference=ref.status,
        reference_note=ref.note,
        s0_reference=ref.s0,
        s1_reference=ref.s1,
        s1=s1,
        s2=exp.s2,
        s2_complete=exp.complete,
        tgr_reference=ref.rates.tgr if ref.rates else None,
        tgr_experimental=exp.rates.tgr if exp.rates else None,
        tgk_reference=ref.rates.tgk if ref.rates else None,
        tgk_experimental=exp.rates.tgk if exp.rates else None,
        pace_reference=ref.rates.pace if ref.rates else None,
        pace_experimental=exp.rates.pace if exp.rates else None,
        e2_window=e2_window,
        recist_e2=_recist_at(recist, e2),
        ttf_days=ttf_days,
        ttf_state=ttf_state,
        ttf_note=ttf_note,
        new_lesions=_new_lesions(timeline, e2_tp),
        ecog_baseline=ecog_baseline,
        ecog_window=ecog_window,
        deceased=timeline.facts.deceased_date,
        death_from_progression=timeline.facts.death_from_progression,
        post_baseline_scan=bool(timeline.followups),
        flags=tuple(log.flags),
        notes=tuple(log.notes),
    )


__all__ = ["KineticQuantities", "NewLesionSummary", "kinetic_quantities"]
