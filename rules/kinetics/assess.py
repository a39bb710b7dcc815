"""Tumour growth kinetics for one patient: measured quantities, every definition, and the flags and notes around
them (spec §2–§3, §8)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria.recist_family import NODAL_ORGAN, new_lesion_readings, recist_diameter
from rules.engine import Decision, Engine, RuleSet, Threshold, format_fraction
from rules.facts import LesionRole, LesionStatus, PatientFacts
from rules.kinetics.growth import (
    FERTE_MONTH_DAYS,
    growth_ratio,
    months_between,
    progression_pace,
    tumour_growth_kinetics,
    tumour_growth_rate,
)
from rules.results import CriterionAssessment, DefinitionResult, KineticsResult
from rules.therapy_classes import class_label
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "tumour-kinetics"
RECIST_CRITERION = "RECIST-1.1"

UNKNOWN = "unknown"
"""A component whose facts are missing (three-valued logic: true / false / unknown)."""
UNDEFINED = "undefined"
"""A ratio whose reference rate is ≤ 0 (spec §3.2.1: UNDEFINED_RATIO, never 'not HPD')."""
PENDING = "pending"
"""TTF not decided yet: still on treatment, less than 61 days since C1D1 (spec §3.2.3 PENDING_TTF)."""

Component = bool | str

MET, NOT_MET, NOT_EVALUABLE = "met", "not-met", "not-evaluable"

DEFINITION_CODES = (
    "champiat-2017",
    "saada-bouzid-2017",
    "kato-2017",
    "ferrara-2018",
    "kanjanapan-2019",
    "lo-russo-2019",
    "matos-2020",
    "kim-2019",
    "kas-2020",
    "fast-progression-oak",
    "fast-progression-ferrara-2020",
    "early-death",
)
"""Contract §5 codes in ``{C}/CodeSystem/hyperprogression``, in the order they are reported."""

ECOG_CODE = "ecog"


# --- measured quantities ----------------------------------------------------------------------------------


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


# --- rule-file access ---------------------------------------------------------------------------------


class KineticsRules:
    """The ``tumour-kinetics`` rule file with the configured overrides applied (thresholds, flags, tables)."""

    def __init__(self, engine: Engine, overrides: Mapping[str, Any] | None = None) -> None:
        self.engine = engine
        self.ruleset: RuleSet = engine.rulebase[CRITERION]
        self.overrides = dict(overrides or {})
        self._flags = self.ruleset.flag_values(self.overrides)

    def flag(self, name: str) -> Any:
        return self.ruleset.flag(name, self.overrides)

    def flags(self) -> dict[str, Any]:
        return dict(self._flags)

    def threshold(self, name: str) -> Threshold:
        """A threshold after the §8 flags that set its value or inclusiveness (``RuleSet.required_threshold``)."""
        return self.ruleset.required_threshold(name, self._flags)

    def month_days(self) -> float:
        return float(Fraction(str(self.flag("MONTH_DAYS"))))

    def definition(self, code: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self.ruleset.parameters["definitions"][code]
        return found

    def decide(self, table: str, case: Mapping[str, Any]) -> Decision:
        return self.engine.decide(CRITERION, table, case)

    # Comparisons -------------------------------------------------------------------------------------

    def float_test(self, name: str, value: float | None) -> tuple[Component, bool]:
        """A float threshold test with the §0 tolerance: (true/false/unknown, borderline)."""
        if value is None:
            return UNKNOWN, False
        threshold = self.threshold(name)
        tolerance = float(self.threshold("float_comparison_tolerance").value)
        limit = float(threshold.value)
        if threshold.direction == "at-least":
            holds = value >= limit - tolerance if threshold.inclusive else value > limit + tolerance
        else:
            holds = value <= limit + tolerance if threshold.inclusive else value < limit - tolerance
        return holds, self.borderline(value, limit)

    def borderline(self, value: float | Fraction, limit: float | Fraction) -> bool:
        """Spec §0: within ±BORDERLINE_REL_TOL (relative) of the threshold."""
        relative = self.threshold("borderline_relative_tolerance")
        return relative.holds(abs(Fraction(value) - Fraction(limit)), abs(Fraction(limit)))

    def sum_increase_test(
        self, name: str, s1: Decimal | None, s2: Decimal | None, complete: bool
    ) -> tuple[Component, bool]:
        """RECIST-type percent threshold on S(E2) against S(E1), exact (``S2·2 ≥ S1·3`` for +50 %).

        A partial S(E2) (a target not assessed) can only grow when completed, so it already proves an
        'at least' threshold it meets; otherwise the test is unknown.
        """
        if s1 is None or s2 is None or s1 == 0:
            return UNKNOWN, False
        threshold = self.threshold(name)
        holds = threshold.holds(s2, s1)
        if not complete:
            return (True, False) if holds and threshold.direction == "at-least" else (UNKNOWN, False)
        percent = (Fraction(s2) - Fraction(s1)) / Fraction(s1) * 100
        return holds, self.borderline(percent, (threshold.value - 1) * 100)

    def days_test(self, name: str, days: int | None) -> Component:
        return UNKNOWN if days is None else self.threshold(name).holds(days)


# --- measuring ----------------------------------------------------------------------------------------


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


def _fmt(value: float | Fraction | Decimal | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.2f}{(' ' + unit) if unit else ''}"


def _mm(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{format(value.normalize(), 'f')} mm"


def kinetic_quantities(
    engine: Engine, timeline: Timeline, recist: CriterionAssessment | None, overrides: Mapping[str, Any] | None = None
) -> KineticQuantities:
    """Pick E0/E2 (spec §2.4), build the paired sums (§2.6) and compute TGR, TGK and pace (§2.1, §2.3)."""
    rules = KineticsRules(engine, overrides)
    month_days = rules.month_days()
    facts = timeline.facts
    flags: list[str] = []
    notes: list[str] = []
    c1d1 = timeline.treatment_start
    base = timeline.baseline
    e1 = base.scan_date if base else None
    recist_rules = engine.rulebase[RECIST_CRITERION]
    too_small = recist_rules.threshold("too_small_default_diameter").value
    too_small_mm = Decimal(too_small.numerator) / Decimal(too_small.denominator)

    def add_flag(code: str, note: str | None = None) -> None:
        if code not in flags:
            flags.append(code)
        if note:
            notes.append(f"{code}: {note}")

    if c1d1 is None:
        add_flag("TREATMENT_START_UNKNOWN", "no immunotherapy start date: windows, TTF and the OAK anchor are unknown")
    if base is not None and c1d1 is not None:
        e1 = base.scan_date
        days = (c1d1 - e1).days
        if days < 0:
            add_flag("BASELINE_AFTER_TREATMENT_START", f"baseline scan {e1} is {-days} days after C1D1 {c1d1}")
        elif not rules.days_test("baseline_max_days_before_c1d1", days):
            add_flag(
                "BASELINE_STALE",
                f"E1 {e1} is {days} days before C1D1 (at most "
                f"{format_fraction(rules.threshold('baseline_max_days_before_c1d1').value)})",
            )

    targets = timeline.lesions_with_role(LesionRole.TARGET) if base else []
    if base is not None and not targets:
        add_flag("NO_TARGET_LESIONS", "no target lesion at baseline: no sum of diameters")

    # E2: the first on-treatment scan with measurements (spec §2.4).
    e2_tp = next((tp for tp in timeline.followups if tp.measurements), None)
    e2 = e2_tp.scan_date if e2_tp else None
    e2_window = "missing"
    if e2 is not None:
        if c1d1 is None:
            e2_window = "atypical-window"
        else:
            days = (e2 - c1d1).days
            inside = rules.days_test("e2_min_days_after_c1d1", days) and rules.days_test("e2_max_days_after_c1d1", days)
            e2_window = "in-window" if inside else "atypical-window"
        if e2_window == "atypical-window":
            add_flag(
                "WINDOW_ATYPICAL",
                f"E2 {e2} is {'?' if c1d1 is None else (e2 - c1d1).days} days after C1D1 "
                f"(window {format_fraction(rules.threshold('e2_min_days_after_c1d1').value)}–"
                f"{format_fraction(rules.threshold('e2_max_days_after_c1d1').value)} days): computed, flagged",
            )
    elif base is not None:
        add_flag("E2_MISSING", "no on-treatment evaluation scan yet")

    # E0: latest pre-baseline scan 14–180 days before E1, preferring one ≥ 28 days before (spec §2.4).
    e0_tp: Timepoint | None = None
    if base is not None and targets:
        e1 = base.scan_date
        candidates = []
        for tp in timeline.prebaseline:
            if not _has_reading(tp, targets):
                continue
            if tp.scan.modalities and set(tp.scan.modalities) <= {"PT"}:
                notes.append(
                    f"pre-baseline scan {tp.scan_date} is PET only: not usable for diameter kinetics (spec §2.6 rule 7)"
                )
                continue
            candidates.append(tp)
        in_window = [
            tp
            for tp in candidates
            if rules.days_test("e0_min_days_before_e1", (e1 - tp.scan_date).days)
            and rules.days_test("e0_max_days_before_e1", (e1 - tp.scan_date).days)
        ]
        preferred = [
            tp for tp in in_window if rules.days_test("e0_preferred_min_days_before_e1", (e1 - tp.scan_date).days)
        ]
        usable = preferred or in_window
        e0_tp = usable[-1] if usable else None
        if e0_tp is None:
            if candidates:
                add_flag(
                    "E0_OUTSIDE_WINDOW",
                    "pre-baseline scan(s) "
                    + ", ".join(f"{tp.scan_date} ({(e1 - tp.scan_date).days} days before E1)" for tp in candidates)
                    + " outside the E0 window "
                    f"{format_fraction(rules.threshold('e0_min_days_before_e1').value)}–"
                    f"{format_fraction(rules.threshold('e0_max_days_before_e1').value)} days",
                )
            add_flag("E0_MISSING", "no usable pre-baseline scan: reference-period kinetics not available")
    e0 = e0_tp.scan_date if e0_tp else None

    # Lesion set: E1 targets measured at E1, minus locally treated ones (spec §2.6 rules 1, 6, 8).
    treated = _locally_treated(timeline, targets, e0 or e1, e2, (e0_tp, base, e2_tp))
    for lesion_id, how in treated.items():
        add_flag(
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
            add_flag("BASELINE_TARGET_UNMEASURED", f"{lesion_name(lesion)} has no diameter at E1: excluded")
            continue
        kinetic_targets.append((lesion, d1))
    s1 = sum((d1 for _, d1 in kinetic_targets), Decimal(0)) if base is not None and targets else None

    # Reference period E0 → E1: paired sums over the lesions assessed at E0 (spec §2.6 rules 1–3).
    reference = "missing"
    reference_note = "no usable pre-baseline scan E0"
    s0_ref = s1_ref = None
    tgr_ref = tgk_ref = pace_ref = None
    if e0_tp is not None and s1 is not None:
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
                    add_flag("ABSENT_AT_E0_AS_ZERO", f"{lesion_name(lesion)} imaged and absent at E0: counted as 0 mm")
                else:
                    d0, note = None, "absent at E0 (kinetics.ABSENT_AT_E0_AS_ZERO = false: dropped)"
            if d0 is None:
                dropped.append(f"{lesion_name(lesion)} ({note})")
                dropped_mm += d1
                continue
            s0_ref += d0
            s1_ref += d1
        reference = "evaluable"
        reference_note = f"S(E0) {_mm(s0_ref)} on {e0}, S(E1) {_mm(s1_ref)} on {e1}"
        if dropped:
            add_flag(
                "REF_SUM_REDUCED",
                f"{len(dropped)} lesion(s) not assessed at E0, dropped from S(E0) and S(E1): " + ", ".join(dropped),
            )
            if s1 == 0 or not rules.threshold("ref_sum_max_dropped_fraction").holds(dropped_mm, s1):
                reference = "not-evaluable"
                reference_note = (
                    f"{_mm(dropped_mm)} of the baseline sum {_mm(s1)} dropped (more than "
                    f"{format_fraction(rules.threshold('ref_sum_max_dropped_fraction').value)})"
                )
        if reference == "evaluable" and s0_ref == 0:
            reference = "not-evaluable"
            reference_note = "D0 = S(E0) = 0: ln(D1/D0) undefined (spec §2.6 rule 3)"
        if reference == "not-evaluable":
            add_flag("TGR_REF_NOT_EVALUABLE", reference_note)
        else:
            interval = (e1 - e0).days
            if not rules.days_test("kinetics_min_interval_days", interval):
                add_flag("KINETICS_INTERVAL_TOO_SHORT", f"E0 → E1 is {interval} days")
            if (
                e0_tp.scan.modalities
                and timeline.established_baseline.scan.modalities
                and set(e0_tp.scan.modalities) != set(timeline.established_baseline.scan.modalities)
            ):
                add_flag(
                    "MODALITY_CHANGE",
                    f"E0 {'/'.join(e0_tp.scan.modalities)} → E1 "
                    f"{'/'.join(timeline.established_baseline.scan.modalities)}",
                )
            for line in facts.therapy_lines:
                if line.start_date < e1 and (line.stop_date is None or line.stop_date > e0):
                    add_flag(
                        "REF_PERIOD_ON_THERAPY", f"{line.agent} from {line.start_date} overlaps the reference period"
                    )
            tgr_ref = tumour_growth_rate(s0_ref, s1_ref, e0, e1, month_days=month_days)
            if s1_ref == 0:
                add_flag("TGR_FLOOR", "S(E1) = 0 in the reference period: TGR_ref floored at −100")
            tgk_ref = tumour_growth_kinetics(s0_ref, s1_ref, e0, e1, month_days=month_days)
            pace_ref = progression_pace(s0_ref, s1_ref, e0, e1, month_days=month_days)
            notes.append(
                f"reference period {e0} → {e1} ({interval} days = {months_between(e0, e1, month_days):.4f} months): "
                f"S {_mm(s0_ref)} → {_mm(s1_ref)}; TGR_ref {_fmt(tgr_ref, '%/month')}, "
                f"TGK_ref {_fmt(tgk_ref, 'mm/month')}, pace_ref {_fmt(pace_ref, '%/month')}"
            )

    # Experimental period E1 → E2 over every kinetics target.
    s2 = None
    s2_complete = False
    tgr_exp = tgk_exp = pace_exp = None
    if e2_tp is not None and s1 is not None:
        e1, e2 = timeline.established_baseline.scan_date, e2_tp.scan_date
        missing = []
        s2 = Decimal(0)
        for lesion, _ in kinetic_targets:
            d2, note = recist_diameter(e2_tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small_mm)
            if d2 is None:
                missing.append(f"{lesion_name(lesion)} ({note})")
            else:
                s2 += d2
        s2_complete = not missing
        if missing:
            add_flag("E2_SUM_INCOMPLETE", "not assessed at E2: " + ", ".join(missing) + f" (partial S(E2) {_mm(s2)})")
        interval = (e2 - e1).days
        if not rules.days_test("kinetics_min_interval_days", interval):
            add_flag("KINETICS_INTERVAL_TOO_SHORT", f"E1 → E2 is {interval} days")
        if s2_complete and s1 > 0:
            tgr_exp = tumour_growth_rate(s1, s2, e1, e2, month_days=month_days)
            if s2 == 0:
                add_flag("TGR_FLOOR", "S(E2) = 0 (complete disappearance): TGR_exp floored at −100")
            tgk_exp = tumour_growth_kinetics(s1, s2, e1, e2, month_days=month_days)
            pace_exp = progression_pace(s1, s2, e1, e2, month_days=month_days)
            notes.append(
                f"experimental period {e1} → {e2} ({interval} days = {months_between(e1, e2, month_days):.4f} months): "
                f"S {_mm(s1)} → {_mm(s2)}; TGR_exp {_fmt(tgr_exp, '%/month')}, "
                f"TGK_exp {_fmt(tgk_exp, 'mm/month')}, pace_exp {_fmt(pace_exp, '%/month')}"
            )

    # RECIST 1.1 at E2 (from the assessment passed in).
    recist_e2 = None
    if recist is not None and e2 is not None:
        response = recist.at(e2)
        recist_e2 = response.category if response else None

    # Time to treatment failure: C1D1 → discontinuation (stop date) or death, whichever first (spec §3.1).
    ttf_days: int | None = None
    ttf_state: bool | str = UNKNOWN
    ttf_note = "treatment start unknown"
    if c1d1 is not None:
        ends = [d for d in ((timeline.therapy.stop_date if timeline.therapy else None), facts.deceased_date) if d]
        if ends:
            ttf_days = (min(ends) - c1d1).days
            ttf_state = rules.days_test("ttf_two_months_days", ttf_days)
            ttf_note = f"TTF {ttf_days} days ({'<' if ttf_state else 'not <'} 2 months)"
        else:
            last = _last_record_date(facts)
            followed = (last - c1d1).days if last else 0
            if not rules.days_test("ttf_two_months_days", followed):
                ttf_state = False
                ttf_note = f"no treatment stop recorded, on treatment at least {followed} days (record up to {last})"
            else:
                ttf_state = PENDING
                ttf_note = (
                    f"no treatment stop recorded and only {followed} days since C1D1: PENDING_TTF until C1D1 + 61 days"
                )
                add_flag("PENDING_TTF", ttf_note)

    # New lesions at E2 and organs involved at E1 (spec §2.6 rule 4).
    summary = NewLesionSummary()
    if e2_tp is not None and base is not None:
        unequivocal, _ = new_lesion_readings(e2_tp, timeline)
        baseline_lesions = [lesion for lesion in timeline.lesions.values() if lesion.role is not LesionRole.NEW]
        involved = frozenset(k for k in (_organ_key(lesion) for lesion in baseline_lesions) if k is not None)
        summary = NewLesionSummary(
            tuple((lesion_name(lesion), _organ_key(lesion)) for lesion in unequivocal),
            involved,
            any(_organ_key(lesion) is None for lesion in baseline_lesions),
        )

    # ECOG performance status: latest on or before C1D1, and values in the first 2 months (Lo Russo).
    ecog_baseline = None
    ecog_window: list[tuple[dt.date, Decimal]] = []
    if c1d1 is not None:
        ecog = sorted(
            (o for o in facts.observations if o.code.lower() == ECOG_CODE and o.value is not None),
            key=lambda o: o.effective_date,
        )
        before = [o for o in ecog if o.effective_date <= c1d1]
        ecog_baseline = before[-1].value if before else None
        ecog_window = [
            (o.effective_date, o.value)
            for o in ecog
            if o.value is not None
            and o.effective_date > c1d1
            and rules.days_test("lorusso_clinical_window_days", (o.effective_date - c1d1).days)
        ]

    return KineticQuantities(
        c1d1=c1d1,
        e0=e0,
        e1=e1,
        e2=e2,
        month_days=month_days,
        reference=reference,
        reference_note=reference_note,
        s0_reference=s0_ref,
        s1_reference=s1_ref,
        s1=s1,
        s2=s2,
        s2_complete=s2_complete,
        tgr_reference=tgr_ref,
        tgr_experimental=tgr_exp,
        tgk_reference=tgk_ref,
        tgk_experimental=tgk_exp,
        pace_reference=pace_ref,
        pace_experimental=pace_exp,
        e2_window=e2_window,
        recist_e2=recist_e2,
        ttf_days=ttf_days,
        ttf_state=ttf_state,
        ttf_note=ttf_note,
        new_lesions=summary,
        ecog_baseline=ecog_baseline,
        ecog_window=tuple(ecog_window),
        deceased=facts.deceased_date,
        death_from_progression=facts.death_from_progression,
        post_baseline_scan=bool(timeline.followups),
        flags=tuple(flags),
        notes=tuple(notes),
    )


# --- definitions (spec §3.2) ----------------------------------------------------------------------------


def _recist_pd(q: KineticQuantities) -> Component:
    """RECIST 1.1 PD at E2: true / false, unknown when NE or not assessed."""
    if q.recist_e2 is None or q.recist_e2 == "NE":
        return UNKNOWN
    return q.recist_e2 == "PD"


def _ratio_component(
    rules: KineticsRules, threshold: str, ratio: float | None, reference: float | None
) -> tuple[Component, bool]:
    """A growth-ratio test: undefined when the reference rate is ≤ 0 (K4 logic), unknown when not computed."""
    if reference is not None and reference <= 0:
        return UNDEFINED, False
    if ratio is None:
        return UNKNOWN, False
    return rules.float_test(threshold, ratio)


def _result(
    rules: KineticsRules,
    code: str,
    decision: Decision,
    details: str,
    inputs: Mapping[str, Any],
    borderline: bool = False,
    extra: str = "",
) -> DefinitionResult:
    reason = f"{decision['code']}: {decision.because}. {details}"
    if borderline:
        tolerance = rules.threshold("borderline_relative_tolerance").value * 100
        reason += f" BORDERLINE: a value is within ±{format_fraction(tolerance)} % of its threshold."
    if extra:
        reason += " " + extra
    return DefinitionResult(
        code=code,
        status=decision["status"],
        reason=reason.strip(),
        source=rules.definition(code)["source"],
        inputs={**inputs, "rule": decision.trace()},
        borderline=borderline,
    )


def _scope(rules: KineticsRules, code: str, q: KineticQuantities) -> DefinitionResult | None:
    """Not evaluable before looking at the definition when its scans are missing (table definition_scope)."""
    decision = rules.decide(
        "definition_scope",
        {
            "first_evaluation": "present" if q.e2 is not None else "missing",
            "needs_reference": bool(rules.definition(code)["needs_reference"]),
            "reference": q.reference,
        },
    )
    if decision["in_scope"]:
        return None
    details = q.reference_note if decision["code"] != "E2_MISSING" else "no first evaluation E2"
    return DefinitionResult(
        code=code,
        status=NOT_EVALUABLE,
        reason=f"{decision['code']}: {decision.because}. {details}.",
        source=rules.definition(code)["source"],
        inputs={"e0": q.e0, "e1": q.e1, "e2": q.e2, "reference": q.reference, "rule": decision.trace()},
    )


def _tgr_numbers(q: KineticQuantities) -> str:
    return (
        f"TGR_ref {_fmt(q.tgr_reference)} %/month, TGR_exp {_fmt(q.tgr_experimental)} %/month, "
        f"ratio {_fmt(q.tgr_ratio) if q.tgr_ratio is not None else 'undefined' if q.tgr_reference is not None and q.tgr_reference <= 0 else 'n/a'}, "
        f"ΔTGR {_fmt(q.tgr_difference)}"
    )


def _percent_threshold(threshold: Threshold) -> str:
    """A fraction-of-reference threshold (6/5) as the percent change it means ("> 20 %")."""
    op = {("at-least", True): "≥", ("at-least", False): ">", ("at-most", True): "≤", ("at-most", False): "<"}
    return f"{op[(threshold.direction, threshold.inclusive)]} {format_fraction((threshold.value - 1) * 100)} %"


def _pct(q: KineticQuantities) -> str:
    if q.percent_e1_e2 is not None:
        return f"{'+' if q.percent_e1_e2 > 0 else ''}{_fmt(q.percent_e1_e2)} %"
    return f"n/a (partial S(E2) {_mm(q.s2)})" if q.s2 is not None else "n/a"


def _recist_ratio_definition(rules: KineticsRules, q: KineticQuantities, code: str, threshold: str) -> DefinitionResult:
    """H1 Champiat 2017 and H4b Kanjanapan 2019: RECIST PD at E2 AND TGR ratio ≥ 2."""
    out = _scope(rules, code, q)
    if out:
        return out
    pd = _recist_pd(q)
    ratio, borderline = _ratio_component(rules, threshold, q.tgr_ratio, q.tgr_reference)
    decision = rules.decide("recist_pd_and_tgr_ratio", {"recist_pd": pd, "tgr_ratio_at_least_2": ratio})
    details = (
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} "
        f"(threshold {rules.threshold(threshold).describe()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_ratio": q.tgr_ratio,
            "threshold": rules.threshold(threshold).describe(),
            "e0": q.e0,
            "e1": q.e1,
            "e2": q.e2,
        },
        borderline,
    )


def champiat_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H1 (spec §3.2.1): RECIST PD at E2 and TGR_exp/TGR_ref ≥ 2."""
    return _recist_ratio_definition(rules, q, "champiat-2017", "champiat_tgr_ratio")


def kanjanapan_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4b (spec §3.1): as H1 (RECIST PD at E2 and TGR ratio ≥ 2)."""
    return _recist_ratio_definition(rules, q, "kanjanapan-2019", "kanjanapan_tgr_ratio")


def saada_bouzid_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H2 (spec §3.2.2): TGKR ≥ 2; RECIST PD too when ``H2_REQUIRE_PD``."""
    code = "saada-bouzid-2017"
    out = _scope(rules, code, q)
    if out:
        return out
    ratio, borderline = _ratio_component(rules, "saada_bouzid_tgk_ratio", q.tgk_ratio, q.tgk_reference)
    require = bool(rules.flag("H2_REQUIRE_PD"))
    decision = rules.decide(
        "saada_bouzid_2017", {"require_pd": require, "recist_pd": _recist_pd(q), "tgk_ratio_at_least_2": ratio}
    )
    details = (
        f"TGK_ref {_fmt(q.tgk_reference)} mm/month, TGK_exp {_fmt(q.tgk_experimental)} mm/month, "
        f"TGKR {_fmt(q.tgk_ratio) if q.tgk_ratio is not None else 'undefined' if ratio == UNDEFINED else 'n/a'} "
        f"(threshold {rules.threshold('saada_bouzid_tgk_ratio').describe()}); RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} "
        f"(H2_REQUIRE_PD = {str(require).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "tgk_reference": q.tgk_reference,
            "tgk_experimental": q.tgk_experimental,
            "tgk_ratio": q.tgk_ratio,
            "recist_e2": q.recist_e2,
            "require_pd": require,
        },
        borderline,
    )


def kato_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H3 (spec §3.2.3): TTF < 2 months AND %Δ(E1→E2) > 50 AND pace ratio > 2."""
    code = "kato-2017"
    out = _scope(rules, code, q)
    if out:
        return out
    burden, b1 = rules.sum_increase_test("kato_burden_increase", q.s1, q.s2, q.s2_complete)
    pace, b2 = _ratio_component(rules, "kato_pace_ratio", q.pace_ratio, q.pace_reference)
    decision = rules.decide(
        "kato_2017", {"ttf_under_two_months": q.ttf_state, "burden_over_50": burden, "pace_ratio_over_2": pace}
    )
    details = (
        f"{q.ttf_note}; %Δ(E1→E2) {_pct(q)} ({_percent_threshold(rules.threshold('kato_burden_increase'))} "
        f"required); pace_ref {_fmt(q.pace_reference)} %/month, "
        f"pace_exp {_fmt(q.pace_experimental)} %/month, pace ratio "
        f"{_fmt(q.pace_ratio) if q.pace_ratio is not None else 'undefined' if pace == UNDEFINED else 'n/a'} "
        f"({rules.threshold('kato_pace_ratio').describe()} required)."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "ttf_days": q.ttf_days,
            "ttf": q.ttf_state,
            "percent_e1_e2": q.percent_e1_e2,
            "pace_reference": q.pace_reference,
            "pace_experimental": q.pace_experimental,
            "pace_ratio": q.pace_ratio,
        },
        b1 or b2,
    )


def ferrara_2018(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4 (spec §3.2.4): RECIST PD at E2 AND ΔTGR > 50."""
    code = "ferrara-2018"
    out = _scope(rules, code, q)
    if out:
        return out
    delta, borderline = rules.float_test("ferrara_delta_tgr", q.tgr_difference)
    decision = rules.decide("ferrara_2018", {"recist_pd": _recist_pd(q), "delta_tgr_over_50": delta})
    details = f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} (ΔTGR {rules.threshold('ferrara_delta_tgr').describe()} required)."
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_difference": q.tgr_difference,
        },
        borderline,
    )


def _ecog_component(rules: KineticsRules, q: KineticQuantities) -> tuple[Component, str]:
    """Lo Russo criterion 5 by ``LR_ECOG_MODE`` (spec §3.2.5)."""
    mode = rules.flag("LR_ECOG_MODE")
    if not q.ecog_window:
        return UNKNOWN, "no ECOG recorded in the first 2 months"
    worst = max(value for _, value in q.ecog_window)
    if mode == "reaches_ge_2":
        reaches = rules.threshold("lorusso_ecog_level").holds(worst)
        worse = q.ecog_baseline is None or worst > q.ecog_baseline
        return (
            reaches and worse,
            f"ECOG {q.ecog_baseline if q.ecog_baseline is not None else '?'} → {worst} (reaches_ge_2)",
        )
    if q.ecog_baseline is None:
        return UNKNOWN, f"ECOG {worst} in the first 2 months but no baseline ECOG (delta_ge_2)"
    return (
        rules.threshold("lorusso_ecog_worsening").holds(worst - q.ecog_baseline),
        f"ECOG {q.ecog_baseline} → {worst} (delta_ge_2)",
    )


def _new_lesions_in_involved_organ(rules: KineticsRules, threshold: str, q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    counts = summary.per_involved_organ()
    organ, most = counts.most_common(1)[0] if counts else (None, 0)
    limit = rules.threshold(threshold)
    if limit.holds(most):
        return True, f"{most} new lesions in {organ} (involved at E1)"
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, f"{summary.count} new lesion(s); at most {most} in one involved organ"


def _new_organ(q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    organs = summary.new_organs()
    if organs:
        return True, "new organ(s): " + ", ".join(organs)
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, "no new organ"


def lo_russo_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H5 (spec §3.2.5): ≥ 3 of 5 clinical-radiological criteria; RECIST PD too when ``H5_REQUIRE_PD``."""
    code = "lo-russo-2019"
    out = _scope(rules, code, q)
    if out:
        return out
    ttf = q.ttf_state if isinstance(q.ttf_state, bool) else UNKNOWN
    burden, borderline = rules.sum_increase_test("lorusso_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = _new_lesions_in_involved_organ(rules, "lorusso_new_lesions_in_involved_organ", q)
    new_organ, organ_note = _new_organ(q)
    ecog, ecog_note = _ecog_component(rules, q)
    criteria = {
        "ttf_under_two_months": ttf,
        "burden_increase_at_least_50": burden,
        "two_new_lesions_in_involved_organ": involved,
        "new_organ": new_organ,
        "ecog_worsening": ecog,
    }
    met = sum(1 for v in criteria.values() if v is True)
    possible = met + sum(1 for v in criteria.values() if v == UNKNOWN)
    require = bool(rules.flag("H5_REQUIRE_PD"))
    decision = rules.decide(
        "lo_russo_2019",
        {"criteria_met": met, "criteria_possible": possible, "recist_pd": _recist_pd(q), "require_pd": require},
    )
    mark = {True: "✓", False: "✗", UNKNOWN: "?"}
    details = (
        f"{met}/5 met ({possible - met} unknown): 1 {q.ttf_note} {mark[ttf]}; 2 %Δ(E1→E2) {_pct(q)} "
        f"{_percent_threshold(rules.threshold('lorusso_burden_increase'))} "
        f"{mark[burden]}; 3 {involved_note} {mark[involved]}; 4 {organ_note} {mark[new_organ]}; 5 {ecog_note} "
        f"{mark[ecog]}; RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} (H5_REQUIRE_PD = {str(require).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            **criteria,
            "criteria_met": met,
            "criteria_possible": possible,
            "recist_e2": q.recist_e2,
            "require_pd": require,
        },
        borderline,
    )


def matos_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H6 (spec §3.2.6, engine default [D]; combination [U]): first evaluation ≤ 2 months, RECIST PD, and
    > 40 % target increase or (≥ 20 % and new-lesion spread) when ``MATOS_NEWLESION_BRANCH``."""
    code = "matos-2020"
    out = _scope(rules, code, q)
    if out:
        return out
    days = q.days_from_c1d1(q.e2)
    within = rules.days_test("matos_first_evaluation_max_days", days)
    over_40, b1 = rules.sum_increase_test("matos_burden_increase", q.s1, q.s2, q.s2_complete)
    at_least_20, b2 = rules.sum_increase_test("matos_branch_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = _new_lesions_in_involved_organ(rules, "matos_new_lesions_in_involved_organ", q)
    new_organ, organ_note = _new_organ(q)
    spread = rules.decide(
        "matos_new_lesion_spread", {"new_lesions_in_involved_organ": involved, "new_organ": new_organ}
    )
    branch = bool(rules.flag("MATOS_NEWLESION_BRANCH"))
    growth = rules.decide(
        "matos_early_growth",
        {
            "burden_over_40": over_40,
            "newlesion_branch": branch,
            "burden_at_least_20": at_least_20,
            "new_lesion_spread": spread["spread"],
        },
    )
    decision = rules.decide(
        "matos_2020",
        {"first_evaluation_within_two_months": within, "recist_pd": _recist_pd(q), "early_growth": growth["growth"]},
    )
    details = (
        f"first evaluation {days if days is not None else '?'} days after C1D1 "
        f"({rules.threshold('matos_first_evaluation_max_days').describe()} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; %Δ(E1→E2) {_pct(q)} "
        f"({_percent_threshold(rules.threshold('matos_burden_increase'))} for the 40 % rule, "
        f"{_percent_threshold(rules.threshold('matos_branch_burden_increase'))} for the new-lesion branch); "
        f"{involved_note}; {organ_note}; early growth: {growth.because} "
        f"(MATOS_NEWLESION_BRANCH = {str(branch).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_c1d1_to_e2": days,
            "recist_e2": q.recist_e2,
            "percent_e1_e2": q.percent_e1_e2,
            "burden_over_40": over_40,
            "burden_at_least_20": at_least_20,
            "new_lesion_spread": spread["spread"],
            "newlesion_branch": branch,
            "early_growth": growth["growth"],
        },
        b1 or b2,
        extra="Provisional: the Matos 2020 combination logic is unverified [U] (spec §3.2.6).",
    )


def kim_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H7 (spec §3.1) PROVISIONAL [U]: TGR/TGK ratios and TTF < 2 months within 12-week windows; verdicts only
    where every reading of the unverified conjunction agrees (table kim_2019)."""
    code = "kim-2019"
    provisional = (
        "Provisional [U]: Kim 2019's exact conjunction and ratio cut-offs are unverified (spec §3.1 H7); "
        "only its stated pieces are implemented."
    )
    out = _scope(rules, code, q)
    if out:
        return dataclasses.replace(out, reason=f"{out.reason} {provisional}")
    before = None if q.c1d1 is None or q.e0 is None else (q.c1d1 - q.e0).days
    after = q.days_from_c1d1(q.e2)
    if before is None or after is None:
        windows: Component = UNKNOWN
    else:
        windows = rules.days_test("kim_reference_window_days", before) and rules.days_test(
            "kim_experimental_window_days", after
        )
    tgr, b1 = _ratio_component(rules, "kim_ratio", q.tgr_ratio, q.tgr_reference)
    tgk, b2 = _ratio_component(rules, "kim_ratio", q.tgk_ratio, q.tgk_reference)
    ratios = rules.decide("kim_ratios", {"tgr_ratio_at_least_2": tgr, "tgk_ratio_at_least_2": tgk})
    decision = rules.decide(
        "kim_2019", {"windows": windows, "ttf_under_two_months": q.ttf_state, "ratios": ratios["ratios"]}
    )
    details = (
        f"E0 {before if before is not None else '?'} days before and E2 {after if after is not None else '?'} days "
        f"after C1D1 ({rules.threshold('kim_reference_window_days').describe()} and "
        f"{rules.threshold('kim_experimental_window_days').describe()}); {q.ttf_note}; "
        f"TGR ratio {_fmt(q.tgr_ratio)}, TGKR {_fmt(q.tgk_ratio)} "
        f"(cut-off {rules.threshold('kim_ratio').describe()} assumed): {ratios.because}."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_e0_before_c1d1": before,
            "days_c1d1_to_e2": after,
            "windows": windows,
            "ttf": q.ttf_state,
            "tgr_ratio": q.tgr_ratio,
            "tgk_ratio": q.tgk_ratio,
            "ratios": ratios["ratios"],
            "provisional": True,
        },
        b1 or b2,
        extra=provisional,
    )


def kas_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H8 (spec §3.2.7): RECIST increase > 20 % (``KAS_PROGRESSION_COMPONENT``) AND ΔTGR > 100."""
    code = "kas-2020"
    out = _scope(rules, code, q)
    if out:
        return out
    over_20, b1 = rules.sum_increase_test("kas_burden_increase", q.s1, q.s2, q.s2_complete)
    delta, b2 = rules.float_test("kas_delta_tgr", q.tgr_difference)
    component = rules.flag("KAS_PROGRESSION_COMPONENT")
    decision = rules.decide(
        "kas_2020",
        {
            "progression_component": component,
            "target_sum_over_20": over_20,
            "recist_pd": _recist_pd(q),
            "delta_tgr_over_100": delta,
        },
    )
    details = (
        f"%Δ(E1→E2) {_pct(q)} ({_percent_threshold(rules.threshold('kas_burden_increase'))} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} "
        f"(ΔTGR {rules.threshold('kas_delta_tgr').describe()} required; KAS_PROGRESSION_COMPONENT = {component})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "percent_e1_e2": q.percent_e1_e2,
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_difference": q.tgr_difference,
            "progression_component": component,
        },
        b1 or b2,
    )


def _fp_scan_branch(
    rules: KineticsRules, q: KineticQuantities, anchor: dt.date | None, anchor_name: str
) -> tuple[Decision, int | None, bool, str]:
    """The scan branch of both fast-progression definitions, with its arithmetic."""
    days = None if anchor is None or q.e2 is None else (q.e2 - anchor).days
    within = rules.days_test("fast_progression_max_days", days)
    if q.e2 is None and q.deceased is not None:
        within = False  # died without any post-baseline scan: the scan branch can no longer happen
    increase, borderline = rules.sum_increase_test("fast_progression_sum_increase", q.s1, q.s2, q.s2_complete)
    decision = rules.decide(
        "fast_progression_scan_branch", {"scan_within_42_days": within, "sum_increase_at_least_50": increase}
    )
    if q.e2 is None:
        return decision, days, borderline, "no post-baseline scan" + (" before death" if q.deceased else "")
    limit = rules.threshold("fast_progression_sum_increase").value
    cross = ""
    if q.s1 is not None and q.s2 is not None:
        # Spec §3.2.8 integer-safe form of the 50 % test: S2·2 ≥ S1·3.
        left, right = q.s2 * limit.denominator, q.s1 * limit.numerator
        cross = (
            f" ({format(q.s2.normalize(), 'f')}·{limit.denominator} = {format(left.normalize(), 'f')} vs "
            f"{format(q.s1.normalize(), 'f')}·{limit.numerator} = {format(right.normalize(), 'f')})"
        )
    text = (
        f"E2 {days if days is not None else '?'} days after {anchor_name} "
        f"({rules.threshold('fast_progression_max_days').describe()} required); %Δ(E1→E2) {_pct(q)}{cross}"
    )
    return decision, days, borderline, text


def _death_branch(
    rules: KineticsRules,
    q: KineticQuantities,
    anchor: dt.date | None,
    threshold: str,
    table: str,
    extra: Mapping[str, Any],
) -> Decision:
    days = None if anchor is None or q.deceased is None else (q.deceased - anchor).days
    cause = UNKNOWN if q.death_from_progression is None else bool(q.death_from_progression)
    return rules.decide(
        table,
        {
            "deceased": q.deceased is not None,
            "death_within_84_days": rules.days_test(threshold, days),
            "death_from_progression": cause,
            **extra,
        },
    )


def fast_progression_oak(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP (Gandara 2021, OAK; spec §3.2.8): (E2 ≤ 42 days after C1D1 and S2 ≥ 1.5·S1) or (death from progression
    ≤ 84 days after C1D1 with no post-baseline scan)."""
    code = "fast-progression-oak"
    scan, days, borderline, scan_text = _fp_scan_branch(rules, q, q.c1d1, "C1D1")
    death = _death_branch(
        rules,
        q,
        q.c1d1,
        "fast_progression_death_max_days",
        "fast_progression_death_branch",
        {"post_baseline_scan": q.post_baseline_scan},
    )
    decision = rules.decide("fast_progression_oak", {"scan_branch": scan["branch"], "death_branch": death["branch"]})
    death_days = q.days_from_c1d1(q.deceased)
    details = (
        f"scan branch: {scan_text} → {scan.because}; death branch: "
        + (
            f"death {q.deceased} ({death_days if death_days is not None else '?'} days after C1D1, cause "
            f"{'progression' if q.death_from_progression else 'unknown' if q.death_from_progression is None else 'other'}) → "
            if q.deceased
            else ""
        )
        + f"{death.because}."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_c1d1_to_e2": days,
            "percent_e1_e2": q.percent_e1_e2,
            "scan_branch": scan["branch"],
            "death_branch": death["branch"],
            "deceased": q.deceased,
            "days_c1d1_to_death": death_days,
            "post_baseline_scan": q.post_baseline_scan,
        },
        borderline,
    )


def fast_progression_ferrara_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP′ (Ferrara 2020; spec §3.2.8): E2 ≤ 42 days after E1 and S2 ≥ 1.5·S1."""
    code = "fast-progression-ferrara-2020"
    scan, days, borderline, scan_text = _fp_scan_branch(rules, q, q.e1, "E1")
    decision = rules.decide("fast_progression_ferrara_2020", {"scan_branch": scan["branch"]})
    details = f"{scan_text} → {scan.because}."
    return _result(
        rules,
        code,
        decision,
        details,
        {"days_e1_to_e2": days, "percent_e1_e2": q.percent_e1_e2, "scan_branch": scan["branch"]},
        borderline,
    )


def early_death(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """ED (Ferrara 2020; spec §3.2.8): death from progression ≤ 84 days after the baseline CT (E1)."""
    code = "early-death"
    decision = _death_branch(rules, q, q.e1, "early_death_max_days", "early_death", {})
    days = None if q.e1 is None or q.deceased is None else (q.deceased - q.e1).days
    details = (
        f"death {q.deceased}, {days if days is not None else '?'} days after E1 {q.e1} "
        f"({rules.threshold('early_death_max_days').describe()} required), cause "
        f"{'progression' if q.death_from_progression else 'unknown' if q.death_from_progression is None else 'other'}."
        if q.deceased
        else ""
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {"deceased": q.deceased, "days_e1_to_death": days, "death_from_progression": q.death_from_progression},
    )


DEFINITIONS = {
    "champiat-2017": champiat_2017,
    "saada-bouzid-2017": saada_bouzid_2017,
    "kato-2017": kato_2017,
    "ferrara-2018": ferrara_2018,
    "kanjanapan-2019": kanjanapan_2019,
    "lo-russo-2019": lo_russo_2019,
    "matos-2020": matos_2020,
    "kim-2019": kim_2019,
    "kas-2020": kas_2020,
    "fast-progression-oak": fast_progression_oak,
    "fast-progression-ferrara-2020": fast_progression_ferrara_2020,
    "early-death": early_death,
}


def evaluate_definitions(
    engine: Engine, q: KineticQuantities, overrides: Mapping[str, Any] | None = None
) -> tuple[DefinitionResult, ...]:
    """Every definition of spec §3.1 on measured quantities, in contract order."""
    rules = KineticsRules(engine, overrides)
    return tuple(DEFINITIONS[code](rules, q) for code in DEFINITION_CODES)


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
            f"TGR ratio {_fmt(q.tgr_ratio)}, ΔTGR {_fmt(q.tgr_difference)}, TGKR {_fmt(q.tgk_ratio)}, "
            f"pace ratio {_fmt(q.pace_ratio)}"
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
    "CRITERION",
    "DEFINITION_CODES",
    "KineticQuantities",
    "KineticsRules",
    "assess_kinetics",
    "definition",
    "evaluate_definitions",
    "kinetic_quantities",
    "reason_code",
    "required_definition",
]
