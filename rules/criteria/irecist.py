"""iRECIST (Seymour 2017): the state machine of size spec §2.8 on top of RECIST 1.1's bookkeeping.

iRECIST keeps RECIST 1.1's measurements and thresholds (spec §2.1), so each follow-up is first measured by
``recist11.evaluate_timepoint`` (reused, not copied); this module adds what iRECIST changes: new lesions split
into NLT/NLNT with their own sum of measures (§2.2), unconfirmed progression (iUPD) that opens an *episode*
anchored at the iUPD (§2.3), confirmation (iCPD) measured cumulatively against that anchor (§2.4), the reset of
the bar (§2.5) and iBOR (§2.7). Every category comes from a decision table in ``rules/rulesets/irecist.yaml``;
this module only measures, keeps the episode state and passes booleans to the tables.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any

from rules.criteria import recist11
from rules.criteria.recist_family import (
    NODAL_ORGAN,
    NonTargetState,
    ResponseOrder,
    baseline_conformance,
    is_measurable,
    locally_treated_lesions,
    new_lesion_readings,
    nontarget_state,
    recist_diameter,
    target_sum,
)
from rules.criteria.recist_family import best_overall_response as family_best_overall_response
from rules.engine import Decision, Engine, RuleConflict, RuleSet, Threshold
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, NonTargetChange, NonTargetStatus
from rules.results import BestResponse, CriterionAssessment, TimepointResponse, fmt_mm, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "iRECIST"


class Category(str, Enum):
    """iRECIST timepoint categories (Seymour 2017 Table 2; spec §2.6–2.7)."""

    ICR = "iCR"
    """Complete response (iRECIST Table 2 row 1); with new lesions recorded, also all of them resolved [D]."""
    IPR = "iPR"
    """Partial response (iRECIST Table 2 rows 2–3)."""
    ISD = "iSD"
    """Stable disease (iRECIST Table 2 row 4)."""
    NON_ICR_NON_IUPD = "NON-iCR/NON-iUPD"
    """Non-target-only disease persisting without progression (iRECIST §2.7)."""
    IUPD = "iUPD"
    """Unconfirmed progression (iRECIST §2.3)."""
    ICPD = "iCPD"
    """Confirmed progression (iRECIST §2.4); final once assigned [D]."""
    NE = "NE"
    """Not evaluable."""


class NewLesionKind(str, Enum):
    """How a new lesion is followed (iRECIST §2.2)."""

    NLT = "NLT"
    """New lesion – target: measurable by RECIST 1.1, within the cap; measured in the NLT sum of measures."""
    NLNT = "NLNT"
    """New lesion – non-target: any other new lesion, graded qualitatively (NC/INC/NCLA/INCLA/UNE)."""


IRECIST_ORDER = ResponseOrder(
    complete=Category.ICR.value,
    partial=Category.IPR.value,
    stable=Category.ISD.value,
    non_cr_non_pd=Category.NON_ICR_NON_IUPD.value,
    progression=(Category.ICPD.value,),
    not_evaluable=Category.NE.value,
)
"""iBOR order iCR, iPR, iSD, non-iCR/non-iUPD, iCPD (spec §2.7, C-ADM); iUPD and NE are added by
``best_overall_response`` below, because the generic search takes the *first* progression timepoint and iCPD
must win over an earlier iUPD (Table 3 example 7)."""

CATEGORIES = ("target", "non-target", "new-lesions")
"""The three kinds of disease an iUPD can come from (spec §2.3–2.5); the ``category``/``cause`` input of the tables."""


# --- flags ----------------------------------------------------------------------------------------------


def _as_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


# --- new lesions: NLT / NLNT (spec §2.2) ----------------------------------------------------------------


@dataclass(frozen=True)
class NewLesionClass:
    """A new lesion's iRECIST class, fixed when it is first an unequivocal new lesion (like targets at baseline)."""

    lesion: TrackedLesion
    kind: NewLesionKind
    counted_from: dt.date
    """The first follow-up at which it was an unequivocal new lesion."""
    reason: str
    capped: bool = False
    """Measurable, but over the NLT cap (5 in total / 2 per organ, [U] limits): the assessment is provisional."""


def organ_of(lesion: TrackedLesion) -> str:
    """RECIST 1.1 §3.3.1 / WG: all lymph nodes count as one organ; an unknown organ counts on its own."""
    return NODAL_ORGAN if lesion.nodal else (lesion.organ or f"unknown organ ({lesion_name(lesion)})")


def classify_new_lesions(
    timeline: Timeline,
    ruleset: RuleSet,
    *,
    is_tumour: Callable[[TrackedLesion, LesionMeasurement], bool] | None = None,
) -> dict[str, NewLesionClass]:
    """iRECIST §2.2: NLT if measurable by RECIST 1.1 (LD ≥ 10 mm; node SA ≥ 15 mm) and within the cap, else NLNT.

    Lesions are classified in the order they become unequivocal; on the same scan the larger one first (targets
    are chosen by size, RECIST 1.1 §3.3.1), then by name, so the result never depends on the order of the facts.
    """
    max_total = ruleset.threshold("new_lesion_target_max_total")
    max_per_organ = ruleset.threshold("new_lesion_target_max_per_organ")
    classes: dict[str, NewLesionClass] = {}
    nlt_total = 0
    nlt_per_organ: Counter[str] = Counter()
    for tp in timeline.followups:
        present, _equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
        # new_lesion_readings returns only lesions with a reading at tp
        fresh = [
            (lesion, m)
            for lesion in present
            if lesion.lesion_id not in classes and (m := tp.of(lesion.lesion_id)) is not None
        ]
        fresh.sort(key=lambda pair: (-(pair[1].recist_diameter_mm or 0), lesion_name(pair[0]), pair[0].lesion_id))
        for lesion, m in fresh:
            axis = "short axis" if m.nodal else "longest diameter"
            size = fmt_mm(m.recist_diameter_mm) if m.status is LesionStatus.PRESENT else m.status.value
            organ = organ_of(lesion)
            if not is_measurable(m, ruleset, tp.scan.slice_thickness_mm):
                limit = ruleset.threshold(
                    "measurable_node_min_short_axis" if m.nodal else "measurable_lesion_min_longest_diameter"
                )
                classes[lesion.lesion_id] = NewLesionClass(
                    lesion,
                    NewLesionKind.NLNT,
                    tp.scan_date,
                    f"{lesion_name(lesion)}: {axis} {size}, not measurable (needs {limit.describe()}) → NLNT",
                )
            elif not max_total.holds(nlt_total + 1):
                classes[lesion.lesion_id] = NewLesionClass(
                    lesion,
                    NewLesionKind.NLNT,
                    tp.scan_date,
                    f"{lesion_name(lesion)}: measurable but already {nlt_total} NLT (cap {max_total.describe()} [U]) → NLNT",
                    capped=True,
                )
            elif not max_per_organ.holds(nlt_per_organ[organ] + 1):
                classes[lesion.lesion_id] = NewLesionClass(
                    lesion,
                    NewLesionKind.NLNT,
                    tp.scan_date,
                    f"{lesion_name(lesion)}: measurable but already {nlt_per_organ[organ]} NLT in {organ} "
                    f"(cap {max_per_organ.describe()} per organ [U]) → NLNT",
                    capped=True,
                )
            else:
                nlt_total += 1
                nlt_per_organ[organ] += 1
                classes[lesion.lesion_id] = NewLesionClass(
                    lesion, NewLesionKind.NLT, tp.scan_date, f"{lesion_name(lesion)}: {axis} {size}, measurable → NLT"
                )
    return classes


def _diameters(tp: Timepoint, lesions: Iterable[TrackedLesion], too_small_mm: Decimal) -> dict[str, Decimal | None]:
    """RECIST diameters (absent 0, too small 5 mm, not assessed ``None``) by lesion id."""
    return {
        lesion.lesion_id: recist_diameter(tp.of(lesion.lesion_id), nodal=lesion.nodal, too_small_mm=too_small_mm)[0]
        for lesion in lesions
    }


@dataclass(frozen=True)
class SumChange:
    """A like-for-like change of a sum since the episode's anchor: the lesions assessed at the anchor, now."""

    anchor_mm: Decimal
    """The sum at the anchor (the iUPD that opened the episode)."""
    now_mm: Decimal
    """The same lesions' sum now."""
    complete: bool
    """False when a lesion assessed at the anchor is not assessed now (counted as 0: a lower bound of the sum)."""

    @property
    def delta_mm(self) -> Decimal:
        return self.now_mm - self.anchor_mm


def change_since(anchor: Mapping[str, Decimal], now: Mapping[str, Decimal | None]) -> SumChange | None:
    """Cumulative change against the anchor (WG FAQ: '4 mm, then a further 2 mm, meets iCPD'), never the previous scan."""
    if not anchor:
        return None
    at_anchor = now_mm = Decimal(0)
    complete = True
    for lesion_id, value_at_anchor in anchor.items():
        value = now.get(lesion_id)
        if value is None:
            complete = False
            value = Decimal(0)
        at_anchor += value_at_anchor
        now_mm += value
    return SumChange(at_anchor, now_mm, complete)


def _graded(m: LesionMeasurement | None, *codes: NonTargetChange) -> bool:
    return m is not None and m.status is not LesionStatus.NOT_ASSESSED and m.nontarget_change in codes


def _unequivocal(m: LesionMeasurement | None) -> bool:
    return m is not None and (
        m.nontarget_change is NonTargetChange.UNE or m.nontarget_status is NonTargetStatus.UNEQUIVOCAL_PROGRESSION
    )


# --- the episode (spec §2.8) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """An iUPD and what it is confirmed or reset against (spec §2.8 'episode')."""

    anchor_date: dt.date
    """The iUPD that opened the episode: timing of the confirmation scan is counted from it."""
    progression_date: dt.date
    """Date of progression if confirmed: the anchor, or earlier when an equivocal new lesion later became
    unequivocal (RECIST 1.1 §4.3.2: PD dated to the first scan showing it)."""
    causes: tuple[str, ...]
    """Categories that progressed at the anchor: target, non-target, new-lesions."""
    cause_codes: tuple[str, ...]
    target_values: Mapping[str, Decimal]
    target_sum_mm: Decimal
    nlt_values: Mapping[str, Decimal]
    nlt_som_mm: Decimal | None
    response_without_new_lesions: str
    """The category the targets and non-targets showed at the anchor (input of reset policy (ii))."""
    new_lesions: tuple[str, ...]
    window_start: dt.date
    window_end: dt.date

    def describe(self, status: str) -> dict[str, Any]:
        return {
            "anchor_date": self.anchor_date.isoformat(),
            "progression_date": self.progression_date.isoformat(),
            "status": status,
            "causes": list(self.causes),
            "cause_codes": list(self.cause_codes),
            "anchor_sum_mm": self.target_sum_mm,
            "anchor_nlt_som_mm": self.nlt_som_mm,
        }

    def window(self) -> dict[str, str]:
        return {"start": self.window_start.isoformat(), "end": self.window_end.isoformat()}


@dataclass
class _State:
    """What the state machine carries from one timepoint to the next."""

    nadir_mm: Decimal
    prior_icr: bool = False
    prior_target_response: bool = False
    episode: Episode | None = None
    confirmed: Episode | None = None
    confirmed_on: dt.date | None = None
    known_new_lesions: set[str] = field(default_factory=set)
    """Unequivocal new lesions already recorded at an iUPD and not seen resolved since."""
    ever_recorded: set[str] = field(default_factory=set)
    nlt_reference_ids: frozenset[str] = frozenset()
    nlt_nadir_mm: Decimal | None = None
    """Smallest NLT sum of measures over the current NLT set (restarted when the set grows: like for like)."""


@dataclass(frozen=True)
class _Context:
    engine: Engine
    ruleset: RuleSet
    timeline: Timeline
    flags: Mapping[str, Any]
    baseline_mm: Decimal
    classes: Mapping[str, NewLesionClass]
    too_small_mm: Decimal
    is_tumour: Callable[[TrackedLesion, LesionMeasurement], bool] | None

    def decide(self, table: str, case: Mapping[str, Any], trace: list[str] | None = None) -> Decision:
        decision = self.engine.decide(CRITERION, table, case)
        if trace is not None:
            trace.append(decision.trace())
        return decision

    def threshold(self, name: str) -> Threshold:
        """A threshold after the iRECIST flags (a numeric policy flag sets the value of a flag-backed threshold)."""
        return self.ruleset.required_threshold(name, self.flags)


def _target_values(ctx: _Context, tp: Timepoint) -> dict[str, Decimal | None]:
    """Per-target RECIST diameters at ``tp`` (recist_family.target_sum, with the same locally-treated rule as RECIST)."""
    targets = ctx.timeline.lesions_with_role(LesionRole.TARGET)
    blocked = (
        locally_treated_lesions(ctx.timeline, tp.scan_date)
        if ctx.flags["locally_treated_target_not_assessable"]
        else set()
    )
    sums = target_sum(tp, targets, too_small_mm=ctx.too_small_mm, not_assessable=blocked)
    return {reading.lesion.lesion_id: reading.diameter_mm for reading in sums.readings}


def _sum_condition(ctx: _Context, condition: str, change: SumChange | None) -> bool:
    """A condition of irecist.yaml on a sum now against the anchor (``confirmation_increment_met``: a further
    ≥ 5 mm, iRECIST §2.4; ``reset_target_decrease_met``: reset policy (iii), §2.5); false without an anchor sum."""
    return ctx.ruleset.holds(
        condition,
        ctx.flags,
        now=change.now_mm if change else None,
        at_iupd=change.anchor_mm if change else None,
        complete=change.complete if change else None,
    )


def _evaluate(ctx: _Context, state: _State, tp: Timepoint) -> TimepointResponse:
    """One follow-up timepoint: size spec §2.8, one iteration."""
    timeline, ruleset, flags = ctx.timeline, ctx.ruleset, ctx.flags
    trace: list[str] = []
    warnings: list[str] = []
    after_icpd = state.confirmed is not None
    episode = state.episode

    # 1. RECIST 1.1 components against the iRECIST nadir (spec §2.1). After iCPD the target response is graded
    #    strictly (no sticky PR) so that a late response is visible (kinetics spec §4.1).
    c = recist11.evaluate_timepoint(
        ctx.engine,
        ruleset,
        timeline,
        tp,
        baseline_mm=ctx.baseline_mm,
        nadir_mm=state.nadir_mm,
        prior_overall_cr=state.prior_icr,
        prior_target_response=state.prior_target_response and not after_icpd,
        flags=flags,
        is_tumour=ctx.is_tumour,
    )
    trace.extend(c.trace)
    target = ctx.decide("target_component", {"recist_target": c.target}, trace)["target"]
    nontarget = ctx.decide("nontarget_component", {"recist_nontarget": c.nontarget}, trace)["nontarget"]
    nt = nontarget_state(tp, timeline.lesions_with_role(LesionRole.NON_TARGET), after_complete_response=state.prior_icr)
    target_now = _target_values(ctx, tp)

    # 2. New lesions (spec §2.2–2.3).
    present = set(c.new_unequivocal)
    additional = present - state.known_new_lesions
    classified = {i: k for i, k in ctx.classes.items() if k.counted_from <= tp.scan_date}
    for k in classified.values():
        if k.counted_from == tp.scan_date:
            trace.append(f"new lesion classified: {k.reason}")
            if k.capped:
                warnings.append(f"{k.reason}: the NLT cap is unverified [U]; assessment provisional")
    nlt = [k.lesion for k in classified.values() if k.kind is NewLesionKind.NLT]
    nlnt = [k.lesion for k in classified.values() if k.kind is NewLesionKind.NLNT]
    nlt_now = _diameters(tp, nlt, ctx.too_small_mm)
    nlt_som = sum((v for v in nlt_now.values() if v is not None), Decimal(0)) if nlt else None
    if nlt:
        parts = " + ".join(
            f"{lesion_name(lesion)} {fmt_mm(nlt_now[lesion.lesion_id])}" for lesion in sorted(nlt, key=lesion_name)
        )
        trace.append(f"NLT sum of measures {fmt_mm(nlt_som)} ({parts}); kept apart from the target sum (iRECIST §2.2)")
    if additional:
        trace.append(
            "new lesion(s) not recorded before: "
            + ", ".join(sorted(lesion_name(timeline.lesions[i]) for i in additional))
        )

    resolved_now = {
        i for i in state.known_new_lesions if (m := tp.of(i)) is not None and m.status is LesionStatus.ABSENT
    }
    recorded_unresolved = state.known_new_lesions - resolved_now
    # §2.3(d): after a reset, recorded new lesions progress like a RECIST category of their own.
    nlt_progressed = False
    if state.nlt_reference_ids and state.nlt_nadir_mm is not None:
        ref_values = {i: nlt_now.get(i) for i in state.nlt_reference_ids}
        ref_som = sum((v for v in ref_values.values() if v is not None), Decimal(0))
        nlt_progressed = ruleset.holds(
            "recorded_nlt_progressed",
            flags,
            som=ref_som,
            nadir=state.nlt_nadir_mm,
            complete=all(v is not None for v in ref_values.values()),
        )
        if nlt_progressed:
            trace.append(
                f"recorded NLT sum of measures {fmt_mm(ref_som)} is ≥ 20 % and ≥ 5 mm over its nadir {fmt_mm(state.nlt_nadir_mm)}"
            )
    nlnt_ids = {lesion.lesion_id for lesion in nlnt}
    nlnt_unequivocal = any(_unequivocal(tp.of(i)) for i in state.known_new_lesions & nlnt_ids)
    if nlnt_unequivocal:
        trace.append("a recorded new lesion-non-target is graded unequivocal progression")
    recorded_progressed = nlt_progressed or nlnt_unequivocal
    if additional or recorded_progressed:
        new_lesions = "progressed"
    elif recorded_unresolved:
        new_lesions = "recorded"
    else:
        new_lesions = "absent"

    # 3. The category the components show (Table 2, 'no previous iUPD' column).
    icr_flag = bool(flags["icr_requires_nl_resolved"])
    response = ctx.decide(
        "timepoint_response",
        {
            "target": target,
            "nontarget": nontarget,
            "new_lesions": new_lesions,
            "icr_requires_nl_resolved": icr_flag,
        },
        trace,
    )["response"]
    response_without_nl = ctx.decide(
        "timepoint_response",
        {
            "target": target,
            "nontarget": nontarget,
            "new_lesions": "absent",
            "icr_requires_nl_resolved": icr_flag,
        },
    )["response"]

    # 4. With an open episode: timing, confirmation per category, reset per cause.
    days = (tp.scan_date - episode.anchor_date).days if episode else None
    early = episode is not None and not ctx.threshold("early_scan_min_days").holds(days)
    confirmation_codes: list[str] = []
    reset = False
    if episode is not None and not after_icpd and early:
        if additional and tp.scan.symptom_driven:
            confirmation_codes.append("early-symptomatic-additional-new-lesion")
    elif episode is not None and not after_icpd:
        target_change = change_since(episode.target_values, target_now)
        nlt_change = change_since(episode.nlt_values, nlt_now)
        if target_change is not None:
            trace.append(
                f"target sum vs the iUPD of {episode.anchor_date} ({fmt_mm(episode.target_sum_mm)}): "
                f"{'+' if target_change.delta_mm > 0 else ''}{fmt_mm(target_change.delta_mm)}"
                f"{'' if target_change.complete else ' (a lesion not assessed counted as 0)'}"
            )
        if nlt_change is not None:
            trace.append(
                f"NLT sum of measures vs the iUPD ({fmt_mm(episode.nlt_som_mm)}): "
                f"{'+' if nlt_change.delta_mm > 0 else ''}{fmt_mm(nlt_change.delta_mm)}"
            )
        followed_nlnt = (set(episode.new_lesions) | state.known_new_lesions) & nlnt_ids
        evidence = {
            "target": dict(
                increment_met=_sum_condition(ctx, "confirmation_increment_met", target_change),
                further_increase=False,
                now_progressed=target == Category.IUPD.value,
            ),
            "non-target": dict(
                increment_met=False,
                further_increase=NonTargetChange.INCLA.value in nt.changes.values(),
                now_progressed=nontarget == Category.IUPD.value,
            ),
            "new-lesions": dict(
                increment_met=_sum_condition(ctx, "confirmation_increment_met", nlt_change),
                further_increase=any(
                    _graded(tp.of(i), NonTargetChange.INCLA, NonTargetChange.UNE) for i in followed_nlnt
                ),
                now_progressed=recorded_progressed,
            ),
        }
        for category in CATEGORIES:
            d = ctx.decide(
                "confirmation",
                {
                    "category": category,
                    "caused_iupd": category in episode.causes,
                    "additional_new_lesion": bool(additional),
                    **evidence[category],
                },
            )
            if d["confirms"]:
                trace.append(d.trace())
                confirmation_codes.append(d["code"])
        if not confirmation_codes:
            # §2.5: every cause of the episode must allow the reset.
            improved = ctx.decide(
                "improvement", {"at_iupd": episode.response_without_new_lesions, "now": response_without_nl}
            )["improved"]
            reset = True
            for cause in episode.causes:
                d = ctx.decide(
                    "reset",
                    {
                        "cause": cause,
                        "target": target,
                        "nontarget": nontarget,
                        "new_lesions_resolved": new_lesions == "absent",
                        "category_improved": improved,
                        "target_decrease_met": _sum_condition(ctx, "reset_target_decrease_met", target_change),
                    },
                    trace,
                )
                reset = reset and d["resolved"]

    # 5. The episode table decides the category.
    step = ctx.decide(
        "episode",
        {
            "icpd_assigned": after_icpd,
            "previous_iupd": episode is not None,
            "early_scan": early,
            "symptom_driven": bool(tp.scan.symptom_driven),
            "additional_new_lesion": bool(additional),
            "confirmation": bool(confirmation_codes) and not early,
            "reset": reset,
            "response": response,
        },
        trace,
    )
    category, transition, disregarded = step["category"], step["transition"], bool(step["disregarded"])
    if episode is not None and not after_icpd:
        if early:
            warnings.append(
                f"scan {days} days after the iUPD of {episode.anchor_date} "
                f"(< {ctx.threshold('early_scan_min_days').value} days): "
                + (
                    "an additional new lesion on a symptom-driven scan confirms progression"
                    if category == Category.ICPD.value
                    else "disregarded for confirmation; no nadir or anchor update (iRECIST WG FAQ)"
                )
            )
        elif not ctx.threshold("confirmation_window_max_days").holds(days):
            window = (
                f"{ctx.ruleset.threshold('confirmation_window_start_days').value}–"
                f"{ctx.threshold('confirmation_window_max_days').value} days"
            )
            warnings.append(
                f"confirmation scan {days} days after the iUPD of {episode.anchor_date}: evaluated, "
                f"but outside the confirmation window ({window}; iRECIST '4–8 weeks')"
            )

    # 6. State transitions.
    extra: dict[str, Any] = {"early_scan_disregarded": disregarded}
    reset_from: Episode | None = None
    if transition == "open":
        episode = _open_episode(
            ctx,
            state,
            tp,
            c,
            target,
            nontarget,
            nt,
            additional,
            recorded_progressed,
            target_now,
            nlt_now,
            response_without_nl,
            present,
            trace,
        )
        state.episode = episode
    elif transition == "confirm":
        state.confirmed, state.confirmed_on, state.episode = episode, tp.scan_date, None
    elif transition == "reset":
        reset_from, state.episode = episode, None

    current = state.confirmed or state.episode or reset_from
    if current is not None:
        status = "confirmed" if state.confirmed else ("reset" if reset_from else "open")
        extra["episode"] = current.describe(status)
        extra["confirmation_window"] = current.window()
        extra["days_since_iupd"] = (tp.scan_date - current.anchor_date).days
    else:
        extra["episode"] = None
        extra["confirmation_window"] = None
    if reset_from is not None:
        extra["reset_from_iupd"] = reset_from.anchor_date.isoformat()
    if confirmation_codes and category == Category.ICPD.value:
        extra["confirmation"] = confirmation_codes
    if after_icpd:
        extra["after_icpd_response"] = response
    extra["nlt_som_mm"] = nlt_som
    extra["nlt"] = sorted(lesion_name(lesion) for lesion in nlt)
    extra["nlnt"] = sorted(lesion_name(lesion) for lesion in nlnt)

    has_targets = c.target != "NA"
    nadir_used = state.nadir_mm
    if not disregarded:
        _update_state(ctx, state, tp, c, category, target, present, resolved_now, nlt, nlt_now, after_icpd)

    progression = state.confirmed.progression_date if category == Category.ICPD.value and state.confirmed else None
    return TimepointResponse(
        criterion=CRITERION,
        scan_date=tp.scan_date,
        category=category,
        target_response=target if has_targets else None,
        nontarget_response=nontarget,
        new_lesions="present" if present else ("equivocal" if c.new_equivocal else "absent"),
        sum_mm=c.sum_mm if has_targets else None,
        baseline_sum=ctx.baseline_mm if has_targets else None,
        nadir_sum=nadir_used if has_targets else None,
        percent_from_baseline=percent_change(c.sum_mm, ctx.baseline_mm) if has_targets and c.complete_sum else None,
        percent_from_nadir=percent_change(c.sum_mm, nadir_used) if has_targets and c.complete_sum else None,
        absolute_from_nadir=(c.sum_mm - nadir_used) if has_targets and c.complete_sum else None,
        confirmed={Category.IUPD.value: False, Category.ICPD.value: True}.get(category),
        progression_date=progression,
        trace=tuple(trace),
        warnings=tuple(warnings),
        extra=extra,
    )


def _open_episode(
    ctx: _Context,
    state: _State,
    tp: Timepoint,
    c: recist11.RecistComponents,
    target: str,
    nontarget: str,
    nt: NonTargetState,
    additional: set[str],
    recorded_progressed: bool,
    target_now: Mapping[str, Decimal | None],
    nlt_now: Mapping[str, Decimal | None],
    response_without_nl: str,
    present: set[str],
    trace: list[str],
) -> Episode:
    """Anchor a new episode at this iUPD (spec §2.8): sums, NLT sum of measures, causes, new lesions."""
    evidence = {
        "target": dict(progressed=target == Category.IUPD.value, reappearance_after_icr=state.prior_icr),
        "non-target": dict(
            progressed=nontarget == Category.IUPD.value,
            reappearance_after_icr=bool(nt.reappeared) and not nt.any_unequivocal_progression,
        ),
        "new-lesions": dict(progressed=recorded_progressed, reappearance_after_icr=False),
    }
    causes, codes = [], []
    for category in CATEGORIES:
        d = ctx.decide(
            "iupd_cause", {"category": category, "additional_new_lesion": bool(additional), **evidence[category]}
        )
        if d["cause"]:
            trace.append(d.trace())
            causes.append(category)
            codes.append(d["code"])
    if not causes:
        raise RuleConflict(f"{CRITERION}: iUPD at {tp.scan_date} but no row of iupd_cause names a cause")
    first_seen = [ctx.timeline.lesions[i].first_seen for i in additional if i not in state.ever_recorded]
    window_start = tp.scan_date + dt.timedelta(days=int(ctx.ruleset.threshold("confirmation_window_start_days").value))
    window_end = tp.scan_date + dt.timedelta(days=int(ctx.threshold("confirmation_window_max_days").value))
    return Episode(
        anchor_date=tp.scan_date,
        progression_date=min([tp.scan_date, *first_seen]),
        causes=tuple(causes),
        cause_codes=tuple(codes),
        target_values={i: v for i, v in target_now.items() if v is not None},
        target_sum_mm=c.sum_mm,
        nlt_values={i: v for i, v in nlt_now.items() if v is not None},
        nlt_som_mm=sum((v for v in nlt_now.values() if v is not None), Decimal(0)) if nlt_now else None,
        response_without_new_lesions=response_without_nl,
        new_lesions=tuple(sorted(present)),
        window_start=window_start,
        window_end=window_end,
    )


def _update_state(
    ctx: _Context,
    state: _State,
    tp: Timepoint,
    c: recist11.RecistComponents,
    category: str,
    target: str,
    present: set[str],
    resolved_now: set[str],
    nlt: Sequence[TrackedLesion],
    nlt_now: Mapping[str, Decimal | None],
    after_icpd: bool,
) -> None:
    """Bookkeeping after a timepoint that counts (not a disregarded early scan)."""
    # New lesions stay recorded until seen resolved; a recorded lesion that reappears is a new lesion again.
    state.known_new_lesions = (state.known_new_lesions | present) - resolved_now
    state.ever_recorded |= present
    nlt_ids = frozenset(lesion.lesion_id for lesion in nlt)
    nlt_complete = all(v is not None for v in nlt_now.values())
    nlt_som = sum((v for v in nlt_now.values() if v is not None), Decimal(0))
    if nlt_ids != state.nlt_reference_ids:
        state.nlt_reference_ids, state.nlt_nadir_mm = nlt_ids, (nlt_som if nlt_complete and nlt_ids else None)
    elif nlt_ids and nlt_complete:
        state.nlt_nadir_mm = nlt_som if state.nlt_nadir_mm is None else min(state.nlt_nadir_mm, nlt_som)
    if after_icpd:
        return
    # The nadir: smallest evaluable sum (NE never updates it; spec §0, §2.5).
    evaluable = c.target != "NA" and c.complete_sum and c.target != "NE"
    progression = category in (Category.IUPD.value, Category.ICPD.value)
    if evaluable and (ctx.flags["nadir_includes_iupd_timepoints"] or not progression):
        state.nadir_mm = min(state.nadir_mm, c.sum_mm)
    state.prior_icr = state.prior_icr or category == Category.ICR.value
    # Sticky PR (WG FAQ) holds 'until PD criteria are met': target iUPD ends it [D].
    if target == Category.IUPD.value:
        state.prior_target_response = False
    elif target in (Category.ICR.value, Category.IPR.value):
        state.prior_target_response = True


# --- iBOR (spec §2.7) -----------------------------------------------------------------------------------


def best_overall_response(
    responses: Sequence[TimepointResponse],
    *,
    anchor: dt.date | None,
    stable_min_days: int,
    confirm_min_days: int,
    confirmed: bool,
) -> BestResponse:
    """iBOR: iCR, iPR, iSD (≥ stable_min_days after day 0), non-iCR/non-iUPD, iCPD, then iUPD, then NE (C-ADM).

    The RECIST-family search does the response part and iCPD; iUPD is the iBOR only when progression was never
    confirmed and nothing better happened (Table 3 example 8: iUPD, NE, NE… → iUPD).
    """
    best = family_best_overall_response(
        responses,
        anchor=anchor,
        order=IRECIST_ORDER,
        stable_min_days=stable_min_days,
        confirm_min_days=confirm_min_days,
        confirmed=confirmed,
    )
    if best.category != Category.NE.value:
        return best
    unconfirmed = next((r for r in responses if r.category == Category.IUPD.value), None)
    if unconfirmed is not None:
        return BestResponse(
            Category.IUPD.value,
            unconfirmed.scan_date,
            confirmed,
            f"unconfirmed progression on {unconfirmed.scan_date}, never confirmed, and no response or "
            "stable disease of the minimum duration (iRECIST Table 3 example 8)",
        )
    return best


# --- entry point ----------------------------------------------------------------------------------------


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: Callable[[TrackedLesion, LesionMeasurement], bool] | None = None,
) -> CriterionAssessment:
    """iRECIST over the whole timeline (size spec §2)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",))
    warnings = baseline_conformance(timeline, ruleset)
    base, base_warnings = recist11.baseline_sum(timeline, ruleset)
    warnings += base_warnings
    classes = classify_new_lesions(timeline, ruleset, is_tumour=is_tumour)
    ctx = _Context(
        engine,
        ruleset,
        timeline,
        flags,
        base,
        classes,
        _as_decimal(ruleset.threshold("too_small_default_diameter").value),
        is_tumour,
    )
    state = _State(nadir_mm=base)
    responses = [_evaluate(ctx, state, tp) for tp in timeline.followups]
    kwargs: dict[str, Any] = dict(
        anchor=timeline.anchor_date,
        stable_min_days=int(ruleset.threshold("stable_disease_min_days").value),
        confirm_min_days=int(ruleset.threshold("confirmation_min_days").value),
    )
    provisional = any(k.capped for k in classes.values())
    if provisional:
        warnings.append(
            "a measurable new lesion was recorded as NLNT because of the NLT cap (5 in total / 2 per organ), "
            "which the spec marks unverified [U]"
        )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=best_overall_response(responses, confirmed=False, **kwargs),
        best_response_confirmed=best_overall_response(responses, confirmed=True, **kwargs),
        progression_date=state.confirmed.progression_date if state.confirmed else None,
        warnings=tuple(warnings),
        provisional=provisional,
    )
