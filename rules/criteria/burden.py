"""Tumour burden and progression confirmation shared by the immune-related criteria (irRC, irRECIST, imRECIST).

Size spec (clinical/criteria-size-pet.md) §3–§5:
- the burden is the sum over the baseline index (target) lesions **plus the new measurable lesions**
  (irRC Table 1 "tumour burden = SPD index lesions + SPD new, measurable lesions"; irRECIST/imRECIST TMTB);
- response is measured from the baseline burden, progression from the nadir burden (lowest so far, baseline
  included, not-evaluable timepoints excluded: spec §0);
- progression must be confirmed by a repeat assessment ≥ 4 weeks later against the same nadir, and is negated
  otherwise (spec §3.4 — ``ProgressionConfirmation``, the one implementation the three criteria use);
- a response counts in the best overall response only when seen again ≥ 28 days later (``immune_best_response``).

Each criterion module says how a lesion is measured (bidimensional product or RECIST diameter), which new
lesions are measurable and how many are counted; the categories come from the criterion's decision tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria.recist_family import (
    NODAL_ORGAN,
    NonTargetState,
    ResponseOrder,
    baseline_conformance,
    best_overall_response,
    is_measurable,
    locally_treated_lesions,
    new_lesion_readings,
    nontarget_state,
    recist_diameter,
)
from rules.engine import Decision, Engine, RuleSet, Threshold
from rules.facts import LesionMeasurement, LesionRole, NonTargetChange, NonTargetStatus
from rules.results import BestResponse, CriterionAssessment, TimepointResponse, fmt_pct, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

ZERO = Decimal("0")

LesionValueReader = Callable[[LesionMeasurement | None, TrackedLesion], tuple[Decimal | None, str]]
"""How a criterion measures one lesion at one scan: (value, how it was obtained); ``None`` = not assessed."""

TumourFilter = Callable[[TrackedLesion, LesionMeasurement], bool]
"""``is_tumour``: whether a new finding is tumour (an irAE or sarcoid-like pattern is not a new lesion)."""


# --- flags and flag-controlled thresholds ----------------------------------------------------------------


def threshold_int(threshold: Threshold) -> int:
    return int(threshold.value)


def fraction_as_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


# --- lesion groups for the new-lesion caps --------------------------------------------------------------


def organ_of(lesion: TrackedLesion) -> str:
    """RECIST 1.1 / WG: all lymph nodes count as one organ; an unknown organ is never merged with another."""
    if lesion.nodal:
        return NODAL_ORGAN
    return lesion.organ or f"unknown organ ({lesion_name(lesion)})"


@dataclass(frozen=True)
class CapRule:
    """At most ``limit`` counted new lesions in each group ``group(lesion)`` (a group of ``None`` is not capped)."""

    description: str
    limit: Threshold
    group: Callable[[TrackedLesion], str | None]


class NewLesionLedger:
    """Which new lesions are in the burden.

    A new lesion joins the burden at the first timepoint where it is measurable, if the caps still allow it,
    and stays in it: from then on it is measured like an index lesion (it may shrink, disappear or be missing).
    Among lesions that become measurable on the same scan the largest joins first [D: the spec does not say
    which lesions to count beyond the caps; largest first mirrors target selection].
    """

    def __init__(
        self,
        measurable: Callable[[LesionMeasurement, Timepoint], bool],
        caps: Sequence[CapRule],
        value: LesionValueReader,
    ) -> None:
        self._measurable = measurable
        self._caps = tuple(caps)
        self._value = value
        self.counted: list[TrackedLesion] = []
        self.joined: dict[str, dt.date] = {}

    def admit(
        self, tp: Timepoint, present: Iterable[TrackedLesion]
    ) -> tuple[list[TrackedLesion], list[tuple[TrackedLesion, str]]]:
        """Admit the present new lesions measurable at ``tp``; return (admitted, refused with the reason)."""
        candidates = []
        refused: list[tuple[TrackedLesion, str]] = []
        for lesion in present:
            if lesion.lesion_id in self.joined:
                continue
            m = tp.of(lesion.lesion_id)
            if m is None or not self._measurable(m, tp):
                refused.append((lesion, "not measurable"))
                continue
            value, _ = self._value(m, lesion)
            candidates.append((value or ZERO, lesion))
        admitted: list[TrackedLesion] = []
        for _, lesion in sorted(candidates, key=lambda vl: (-vl[0], vl[1].lesion_id)):
            full = next((cap for cap in self._caps if self._cap_reached(cap, lesion)), None)
            if full is not None:
                refused.append((lesion, f"measurable, but the cap of {full.description} is reached"))
                continue
            self.counted.append(lesion)
            self.joined[lesion.lesion_id] = tp.scan_date
            admitted.append(lesion)
        return admitted, refused

    def _cap_reached(self, cap: CapRule, lesion: TrackedLesion) -> bool:
        group = cap.group(lesion)
        if group is None:
            return False
        count = sum(1 for other in self.counted if cap.group(other) == group)
        return not cap.limit.holds(count + 1)


# --- the burden at one scan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BurdenReading:
    lesion: TrackedLesion
    value: Decimal | None
    note: str
    new: bool
    measurement: LesionMeasurement | None = None


@dataclass(frozen=True)
class TumourBurden:
    """Index (target) lesions plus counted new lesions at one scan; missing lesions count as 0 (partial burden)."""

    readings: tuple[BurdenReading, ...]
    total: Decimal
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def index_total(self) -> Decimal:
        return sum((r.value for r in self.readings if not r.new and r.value is not None), ZERO)

    @property
    def new_total(self) -> Decimal:
        return sum((r.value for r in self.readings if r.new and r.value is not None), ZERO)

    def describe(self, unit: str) -> str:
        parts = []
        for r in self.readings:
            name = lesion_name(r.lesion) + (" (new)" if r.new else "")
            if r.value is None:
                parts.append(f"{name} n/a ({r.note})" if r.note else f"{name} n/a")
            else:
                parts.append(f"{name} {fmt_amount(r.value, unit)}" + (f" ({r.note})" if r.note else ""))
        return " + ".join(parts) if parts else "no lesions"


def measure_burden(
    tp: Timepoint,
    index_lesions: Sequence[TrackedLesion],
    new_lesions: Sequence[TrackedLesion],
    value: LesionValueReader,
    *,
    not_assessable: Iterable[str] = (),
) -> TumourBurden:
    blocked = set(not_assessable)
    readings = []
    for lesion, is_new in [(index, False) for index in index_lesions] + [(new, True) for new in new_lesions]:
        if lesion.lesion_id in blocked:
            readings.append(BurdenReading(lesion, None, "locally treated: not assessable", is_new))
            continue
        m = tp.of(lesion.lesion_id)
        amount, note = value(m, lesion)
        readings.append(BurdenReading(lesion, amount, note, is_new, m))
    total = sum((r.value for r in readings if r.value is not None), ZERO)
    missing = tuple(lesion_name(r.lesion) for r in readings if r.value is None)
    return TumourBurden(tuple(readings), total, missing)


def fmt_amount(value: Decimal | Fraction | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, Fraction):
        value = fraction_as_decimal(value)
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return f"{text} {'mm²' if unit == 'mm2' else unit}"


def burden_line(label: str, current: Decimal, baseline: Decimal, nadir: Decimal, unit: str) -> str:
    change = current - nadir
    return (
        f"{label} {fmt_amount(current, unit)}: {fmt_pct(percent_change(current, baseline))} from baseline "
        f"{fmt_amount(baseline, unit)}, {fmt_pct(percent_change(current, nadir))} and "
        f"{'+' if change > 0 else ''}{fmt_amount(change, unit)} from nadir {fmt_amount(nadir, unit)}"
    )


def meets_progression(ruleset: RuleSet, flags: Mapping[str, Any], current: Decimal, nadir: Decimal) -> bool:
    """The condition ``burden_meets_progression`` of the criterion's rule file: burden ≥ a fraction × nadir (and,
    where the criterion has one, an absolute floor above it); a zero nadir makes any burden > 0 progression
    (size spec §3.2 [D])."""
    return ruleset.holds("burden_meets_progression", flags, burden=current, nadir=nadir)


# --- non-target lesions and new lesions -------------------------------------------------------------------


def nontarget_decision(
    engine: Engine, tp: Timepoint, nontargets: Sequence[TrackedLesion], *, all_absent_override: bool | None = None
) -> tuple[NonTargetState, Decision]:
    """Non-target (non-index) status through the RECIST 1.1 ``nontarget_response`` table.

    The immune-related criteria use non-target lesions only for complete response (irRC Table 1; spec §4.2, §5):
    reappearance after a complete response is *not* progression here (it is reported by the criterion).
    """
    nt = nontarget_state(tp, nontargets, after_complete_response=False)
    all_absent = nt.all_absent if all_absent_override is None else all_absent_override
    return nt, engine.decide(
        "RECIST-1.1",
        "nontarget_response",
        {
            "has_nontargets": nt.has_nontargets,
            "any_unequivocal_progression": nt.any_unequivocal_progression,
            "reappearance_after_cr": False,
            "all_nontargets_assessed": nt.all_assessed,
            "all_nontargets_absent": all_absent and nt.all_assessed,
        },
    )


def unequivocal_progression(m: LesionMeasurement | None) -> bool:
    """The reader's qualitative call of unequivocal progression (never inferred from diameters: spec §1.3 [D])."""
    if m is None:
        return False
    return m.nontarget_status is NonTargetStatus.UNEQUIVOCAL_PROGRESSION or m.nontarget_change is NonTargetChange.UNE


# --- confirmation of progression (spec §3.4) ---------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmationStep:
    """What the confirmation logic made of one timepoint."""

    progression: bool
    """The timepoint's category is progression (unconfirmed, confirmed or final)."""
    confirmed: bool | None
    """For a progression: confirmed or not; ``None`` otherwise."""
    progression_date: dt.date | None
    """The first timepoint of the confirmed progression, once confirmed."""
    note: str = ""
    final: bool = False
    """After confirmed progression: the category stays progression whatever the burden does (spec §3.2 [D])."""


@dataclass(frozen=True)
class _Candidate:
    scan_date: dt.date
    nadir: Decimal


class ProgressionConfirmation:
    """Size spec §3.4 [D], used by irRC, irRECIST and imRECIST (each with its own thresholds).

    - The first timepoint meeting progression is *unconfirmed* and remembered, with the nadir it was measured against.
    - The next timepoint ≥ ``window`` days later confirms it if it still meets progression against that same nadir
      (the progression is then dated to the first timepoint), otherwise it negates it and keeps its own category.
    - Timepoints fewer than ``window`` days after the candidate neither confirm nor negate it.
    - A not-evaluable timepoint neither confirms nor negates it [D: the spec is silent; C-ADM also lets NE pass].
    - Confirmed progression is final.
    """

    def __init__(
        self, window: Threshold, meets: Callable[[Decimal, Decimal], bool], label: str, unit: str = "mm"
    ) -> None:
        self._window = window
        self._meets = meets
        self._label = label
        self._unit = unit
        self._candidate: _Candidate | None = None
        self.progression_date: dt.date | None = None

    @property
    def open_candidate(self) -> dt.date | None:
        return self._candidate.scan_date if self._candidate else None

    def due(self) -> dict[str, str | None] | None:
        """The open confirmation after this step: ``{"since": unconfirmed date, "start": earliest confirming date,
        "end": None}`` (spec §3.4: the next assessment ≥ the window later confirms or negates; the sources set no
        latest date), or ``None`` when no progression awaits confirmation."""
        if self._candidate is None:
            return None
        since = self._candidate.scan_date
        start = since + dt.timedelta(days=threshold_int(self._window))
        return {"since": since.isoformat(), "start": start.isoformat(), "end": None}

    def step(
        self, scan_date: dt.date, *, progression: bool, not_evaluable: bool, burden: Decimal, nadir: Decimal
    ) -> ConfirmationStep:
        """``progression``: this timepoint meets progression against the running ``nadir`` (``burden`` may be partial)."""
        label = self._label

        def amount(value: Decimal) -> str:
            return fmt_amount(value, self._unit)

        if self.progression_date is not None:
            return ConfirmationStep(
                True,
                True,
                self.progression_date,
                f"{label} confirmed (progression dated {self.progression_date}) is final (spec §3.2 [D])",
                final=True,
            )
        candidate = self._candidate
        if candidate is not None:
            days = (scan_date - candidate.scan_date).days
            if not self._window.holds(days):
                note = (
                    f"{days} days after the unconfirmed {label} of {candidate.scan_date}: fewer than "
                    f"{self._window.describe()}, neither confirms nor negates it (spec §3.4)"
                )
                return ConfirmationStep(progression, False if progression else None, None, note)
            if not_evaluable:
                return ConfirmationStep(
                    False,
                    None,
                    None,
                    f"not evaluable: neither confirms nor negates the unconfirmed {label} of {candidate.scan_date} [D]",
                )
            if progression and self._meets(burden, candidate.nadir):
                self._candidate = None
                self.progression_date = candidate.scan_date
                return ConfirmationStep(
                    True,
                    True,
                    candidate.scan_date,
                    f"confirms the {label} of {candidate.scan_date}: {days} days later "
                    f"({self._window.describe()}), still {label} against the same nadir "
                    f"{amount(candidate.nadir)} (spec §3.4)",
                )
            self._candidate = None
            note = (
                f"negates the unconfirmed {label} of {candidate.scan_date}: {days} days later "
                f"({self._window.describe()}) and not {label} against its nadir {amount(candidate.nadir)} (spec §3.4)"
            )
            if progression:
                self._candidate = _Candidate(scan_date, nadir)
                note += f"; {label} against the current nadir {amount(nadir)} starts a new unconfirmed {label}"
                return ConfirmationStep(True, False, None, note)
            return ConfirmationStep(False, None, None, note)
        if progression:
            self._candidate = _Candidate(scan_date, nadir)
            return ConfirmationStep(
                True,
                False,
                None,
                f"unconfirmed {label}: needs a repeat assessment {self._window.describe()} later "
                f"against the nadir {amount(nadir)} (spec §3.4)",
            )
        return ConfirmationStep(False, None, None)


# --- best overall response ---------------------------------------------------------------------------------

UNCONFIRMED_PROGRESSION = "unconfirmed-progression"


def immune_best_response(
    responses: Sequence[TimepointResponse],
    *,
    order: ResponseOrder,
    anchor: dt.date | None,
    stable_min_days: int,
    confirm_min_days: int,
    progression_date: dt.date | None,
    confirmed: bool,
) -> BestResponse:
    """Best overall response with the RECIST 1.1 search (``recist_family.best_overall_response``), except that
    progression counts only once confirmed (spec §3.4): an unconfirmed or negated progression is neither a
    progression nor stable disease, and it interrupts a response's confirmation.
    """
    relabelled = [
        dataclasses.replace(r, category=UNCONFIRMED_PROGRESSION)
        if r.category in order.progression and (progression_date is None or r.scan_date < progression_date)
        else r
        for r in responses
    ]
    best = best_overall_response(
        relabelled,
        anchor=anchor,
        order=order,
        stable_min_days=stable_min_days,
        confirm_min_days=confirm_min_days,
        confirmed=confirmed,
    )
    if best.category == order.not_evaluable:
        pending = [r for r in relabelled if r.category == UNCONFIRMED_PROGRESSION]
        if pending:
            return dataclasses.replace(
                best, because=best.because + f"; {order.progression[0]} on {pending[-1].scan_date} is not confirmed"
            )
    return best


# --- the shared timepoint loop -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BurdenCriterion:
    """What an immune-related burden criterion plugs into the shared loop (irRC, irRECIST, imRECIST)."""

    criterion: str
    categories: Mapping[str, str]
    """The criterion's names for ``CR``, ``PR``, ``SD``, ``PD`` and ``NE`` (the outputs of its tables)."""
    sum_unit: str
    lesion_value: LesionValueReader
    new_lesion_measurable: Callable[[LesionMeasurement, Timepoint], bool]
    caps: tuple[CapRule, ...]
    burden_disappeared: Callable[[TumourBurden], bool]
    """All index and counted new lesions gone (or normal nodes): the burden part of a complete response."""
    nontargets_absent: Callable[[Timepoint, Sequence[TrackedLesion]], bool] | None = None
    """Overrides "all non-targets absent" (irRC node normalisation); ``None``: the reader's status."""
    reader_review_table: bool = False
    """The rule file has a ``reader_review`` table (irRECIST: non-target or new non-measurable progression)."""

    @property
    def order(self) -> ResponseOrder:
        c = self.categories
        return ResponseOrder(c["CR"], c["PR"], c["SD"], f"NON-{c['CR']}/NON-{c['PD']}", (c["PD"],), c["NE"])


@dataclass(frozen=True)
class BurdenAssessment:
    timepoints: tuple[TimepointResponse, ...]
    baseline_burden: Decimal
    progression_date: dt.date | None
    warnings: tuple[str, ...]


def baseline_burden(timeline: Timeline, spec: BurdenCriterion) -> tuple[Decimal, list[str]]:
    """Baseline burden: the index (target) lesions at the baseline scan (no new lesions exist at baseline)."""
    targets = timeline.lesions_with_role(LesionRole.TARGET)
    burden = measure_burden(timeline.established_baseline, targets, (), spec.lesion_value)
    warnings = [
        f"baseline index lesion {name} has no measurement: left out of the baseline burden" for name in burden.missing
    ]
    return burden.total, warnings


def assess_burden(
    engine: Engine,
    ruleset: RuleSet,
    timeline: Timeline,
    spec: BurdenCriterion,
    flags: Mapping[str, Any],
    *,
    is_tumour: TumourFilter | None = None,
) -> BurdenAssessment:
    """Every follow-up timepoint of an immune-related burden criterion (spec §3–§5), with §3.4 confirmation."""
    cats = spec.categories
    targets = timeline.lesions_with_role(LesionRole.TARGET)
    nontargets = timeline.lesions_with_role(LesionRole.NON_TARGET)
    base, warnings = baseline_burden(timeline, spec)
    partial_response = ruleset.threshold("partial_response_fraction_of_baseline")

    def meets(current: Decimal, nadir: Decimal) -> bool:
        return meets_progression(ruleset, flags, current, nadir)

    confirmation = ProgressionConfirmation(ruleset.threshold("confirmation_min_days"), meets, cats["PD"], spec.sum_unit)
    ledger = NewLesionLedger(spec.new_lesion_measurable, spec.caps, spec.lesion_value)
    nadir = base
    prior_complete = False
    responses: list[TimepointResponse] = []
    for tp in timeline.followups:
        trace: list[str] = []
        tp_warnings: list[str] = []
        new_present, equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
        admitted, refused = ledger.admit(tp, new_present)
        for lesion in admitted:
            trace.append(
                f"new lesion {lesion_name(lesion)} is measurable: added to the tumour burden from {tp.scan_date}"
            )
        blocked = (
            locally_treated_lesions(timeline, tp.scan_date)
            if flags.get("locally_treated_target_not_assessable", True)
            else set()
        )
        burden = measure_burden(tp, targets, ledger.counted, spec.lesion_value, not_assessable=blocked)
        counted_ids = set(ledger.joined)
        outside = [lesion for lesion in new_present if lesion.lesion_id not in counted_ids]
        for lesion, reason in refused:
            trace.append(f"new lesion {lesion_name(lesion)} {reason}: not in the burden, precludes {cats['CR']}")
        if equivocal:
            trace.append(
                "equivocal new lesion(s) followed, not counted: "
                + ", ".join(lesion_name(lesion) for lesion in equivocal)
            )
        trace.append(f"burden: {burden.describe(spec.sum_unit)}")
        if targets:
            trace.append(
                burden_line(
                    "tumour burden" if burden.complete else "partial burden (missing counted as 0)",
                    burden.total,
                    base,
                    nadir,
                    spec.sum_unit,
                )
            )
        if blocked & {lesion.lesion_id for lesion in targets}:
            trace.append("a target lesion was irradiated during follow-up: not assessable (flag for manual review)")

        progression = meets(burden.total, nadir)
        disappeared = burden.complete and spec.burden_disappeared(burden)
        burden_decision = engine.decide(
            spec.criterion,
            "tumour_burden_response",
            {
                "has_baseline_burden": bool(targets),
                "all_burden_assessed": burden.complete,
                "burden_meets_progression": progression,
                "ne_partial_pd": bool(flags["ne_partial_pd"]),
                "burden_disappeared": disappeared,
                "burden_meets_partial_response": partial_response.holds(burden.total, base),
            },
        )
        trace.append(burden_decision.trace())

        absent_override = spec.nontargets_absent(tp, nontargets) if spec.nontargets_absent else None
        nt, nt_decision = nontarget_decision(engine, tp, nontargets, all_absent_override=absent_override)
        if nt.has_nontargets:
            trace.append(nt_decision.trace())
        overall = engine.decide(
            spec.criterion,
            "overall_response",
            {
                "burden": burden_decision["burden"],
                "nontarget": nt_decision["nontarget"],
                "new_lesion_outside_burden": bool(outside),
            },
        )
        trace.append(overall.trace())
        raw = overall["overall"]

        elsewhere = [lesion_name(lesion) for lesion in nontargets if unequivocal_progression(tp.of(lesion.lesion_id))]
        elsewhere += [lesion_name(lesion) for lesion in outside if unequivocal_progression(tp.of(lesion.lesion_id))]
        review = False
        if spec.reader_review_table:
            review_decision = engine.decide(
                spec.criterion,
                "reader_review",
                {"unequivocal_progression_outside_burden": bool(elsewhere), "overall": raw},
            )
            review = bool(review_decision["reader_review"])
            if review:
                trace.append(review_decision.trace())
                tp_warnings.append(
                    f"reader review: possible unequivocal {cats['PD']} "
                    f"({', '.join(elsewhere)}: unequivocal progression outside the measured burden)"
                )
        elif elsewhere:
            trace.append(
                f"unequivocal progression outside the measured burden ({', '.join(elsewhere)}) does not "
                f"define {cats['PD']} under {spec.criterion}"
            )

        if prior_complete and raw not in (cats["CR"], cats["NE"]):
            # Reappearance after a complete response is not defined by the sources: the category comes from the
            # burden only, and the reappearance is flagged (spec §4.2 policy [D], Example E4).
            tp_warnings.append(
                f"disease reappeared after {cats['CR']}: category from the tumour burden only; reader review"
            )

        step = confirmation.step(
            tp.scan_date,
            progression=raw == cats["PD"],
            not_evaluable=raw == cats["NE"],
            burden=burden.total,
            nadir=nadir,
        )
        category = cats["PD"] if step.progression else raw
        if step.note:
            trace.append(step.note)
        if step.final and raw != cats["PD"]:
            trace.append(f"the burden alone would give {raw} at this timepoint")
        responses.append(
            TimepointResponse(
                criterion=spec.criterion,
                scan_date=tp.scan_date,
                category=category,
                target_response=burden_decision["burden"] if targets else None,
                nontarget_response=nt_decision["nontarget"],
                new_lesions="present" if new_present else ("equivocal" if equivocal else "absent"),
                sum_mm=burden.total,
                sum_unit=spec.sum_unit,
                baseline_sum=base,
                nadir_sum=nadir,
                percent_from_baseline=percent_change(burden.total, base) if burden.complete else None,
                percent_from_nadir=percent_change(burden.total, nadir) if burden.complete else None,
                absolute_from_nadir=(burden.total - nadir) if burden.complete else None,
                confirmed=step.confirmed if step.progression else None,
                progression_date=step.progression_date,
                trace=tuple(trace),
                warnings=tuple(tp_warnings),
                extra={
                    "raw_category": raw,
                    "index_sum": burden.index_total,
                    "new_lesion_sum": burden.new_total,
                    "new_lesions_in_burden": tuple(lesion_name(lesion) for lesion in ledger.counted),
                    "new_lesions_outside_burden": tuple(lesion_name(lesion) for lesion in outside),
                    "reader_review": review,
                    "confirmation_due": confirmation.due(),
                },
            )
        )
        if burden.complete and raw != cats["NE"]:
            nadir = min(nadir, burden.total)
        prior_complete = prior_complete or category == cats["CR"]
    if confirmation.open_candidate is not None:
        window = int(ruleset.threshold("confirmation_min_days").value)
        warnings.append(
            f"{cats['PD']} on {confirmation.open_candidate} is unconfirmed: a confirmation assessment is due "
            f"on or after {confirmation.open_candidate + dt.timedelta(days=window)}"
        )
    return BurdenAssessment(tuple(responses), base, confirmation.progression_date, tuple(warnings))


# --- total measured tumour burden (irRECIST, imRECIST) ---------------------------------------------------------


def tmtb_lesion_value(too_small_mm: Decimal) -> LesionValueReader:
    """RECIST 1.1 diameters (LD; nodes short axis; too small to measure → 5 mm) for the TMTB (spec §4.2, §5)."""

    def value(m: LesionMeasurement | None, lesion: TrackedLesion) -> tuple[Decimal | None, str]:
        return recist_diameter(m, nodal=lesion.nodal, too_small_mm=too_small_mm)

    return value


def tmtb_disappeared(burden: TumourBurden, node_normal: Threshold) -> bool:
    """Targets as RECIST 1.1 CR (non-nodal 0 mm, nodes < 10 mm short axis: the sum may be > 0) and every new
    measurable lesion gone (spec §4.2 irCR)."""
    for reading in burden.readings:
        if reading.value is None:
            return False
        if reading.lesion.nodal and not reading.new:
            if not node_normal.holds(reading.value):
                return False
        elif reading.value != 0:
            return False
    return True


def tmtb_caps(ruleset: RuleSet, flags: Mapping[str, Any]) -> tuple[CapRule, ...]:
    """New measurable lesions counted in the TMTB: at most ``new_lesion_cap.total`` in all and
    ``new_lesion_cap.per_organ`` per organ (spec §12, by analogy with iRECIST NLT [D]); a null cap counts all."""
    caps = []
    total = ruleset.configured_threshold("new_lesions_max_total", flags)
    if total is not None:
        caps.append(CapRule(f"{threshold_int(total)} in total", total, lambda lesion: "all"))
    per_organ = ruleset.configured_threshold("new_lesions_max_per_organ", flags)
    if per_organ is not None:
        caps.append(CapRule(f"{threshold_int(per_organ)} per organ", per_organ, organ_of))
    return tuple(caps)


def tmtb_criterion(
    ruleset: RuleSet, flags: Mapping[str, Any], categories: Mapping[str, str], *, reader_review_table: bool
) -> BurdenCriterion:
    """irRECIST / imRECIST: TMTB = target SoD + new measurable lesions (RECIST 1.1 measurability: LD ≥ 10 mm,
    nodes SA ≥ 15 mm, slice-thickness rule), spec §4.2 and §5."""
    too_small = fraction_as_decimal(ruleset.threshold("too_small_default_diameter").value)

    def measurable(m: LesionMeasurement, tp: Timepoint) -> bool:
        return is_measurable(m, ruleset, tp.scan.slice_thickness_mm)

    node_normal = ruleset.threshold("node_normal_short_axis")
    return BurdenCriterion(
        criterion=ruleset.criterion,
        categories=categories,
        sum_unit=str(ruleset.parameters.get("sum_unit", "mm")),
        lesion_value=tmtb_lesion_value(too_small),
        new_lesion_measurable=measurable,
        caps=tmtb_caps(ruleset, flags),
        burden_disappeared=lambda burden: tmtb_disappeared(burden, node_normal),
        reader_review_table=reader_review_table,
    )


def assess_tmtb(
    engine: Engine,
    timeline: Timeline,
    criterion: str,
    categories: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    *,
    is_tumour: TumourFilter | None = None,
    reader_review_table: bool = False,
    provisional: bool = False,
) -> CriterionAssessment:
    """A TMTB-based immune-related criterion over the whole timeline (irRECIST §4, imRECIST §5).

    Both best overall responses are computed, as for RECIST 1.1: without and with confirmation of the response;
    progression counts in either only once confirmed (spec §3.4).
    """
    ruleset = engine.rulebase[criterion]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",), provisional=provisional)
    spec = tmtb_criterion(ruleset, flags, categories, reader_review_table=reader_review_table)
    result = assess_burden(engine, ruleset, timeline, spec, flags, is_tumour=is_tumour)
    kwargs: dict[str, Any] = dict(
        order=spec.order,
        anchor=timeline.anchor_date,
        stable_min_days=threshold_int(ruleset.threshold("stable_disease_min_days")),
        confirm_min_days=threshold_int(ruleset.threshold("confirmation_min_days")),
        progression_date=result.progression_date,
    )
    conformance = [f"{criterion} baseline (RECIST 1.1 rules): {w}" for w in baseline_conformance(timeline, ruleset)]
    if not timeline.lesions_with_role(LesionRole.TARGET):
        conformance.append(f"no target lesion at baseline: {criterion} needs measurable disease")
    return CriterionAssessment.of(
        ruleset,
        flags,
        result.timepoints,
        best_response=immune_best_response(result.timepoints, confirmed=False, **kwargs),
        best_response_confirmed=immune_best_response(result.timepoints, confirmed=True, **kwargs),
        progression_date=result.progression_date,
        warnings=tuple(conformance) + result.warnings,
        provisional=provisional,
    )
