"""Immune-related adverse events on imaging: what must not count as a new lesion, and the irAE alerts.

- ``is_tumour(lesion, measurement)``: the hook the size criteria call before counting a NEW lesion
  (``recist11.assess(engine, timeline, is_tumour=is_tumour)``). A finding reported with an irAE code is
  suppressed or qualified per kinetics spec §5.3 Q1–Q9; an ordinary new lesion still counts (Q10).
- ``findings(timeline, criteria)``: an ``irae`` Finding per coded irAE pattern (onset from C1D1 against the
  pattern's typical window, the CTCAE hook of §5.4, the pattern's code as a second coding) and one
  ``sarcoid-like-reaction`` Finding when sarcoid-like nodes appear (§5.3 Q1), naming the criteria that did
  not count them.

Codes come from ``rules/codes.py`` (§5.5, verified codes only); every decision comes from
``rules/rulesets/irae.yaml`` (criterion ``irAE-imaging``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from rules import codes
from rules.engine import Decision, Engine, RuleSet, get_engine
from rules.facts import LesionMeasurement, LesionStatus
from rules.results import CriterionAssessment, Finding, TimepointResponse, round2
from rules.timeline import Timeline, TrackedLesion, lesion_name

CRITERION = "irAE-imaging"
SARCOID_WORDING = "possible sarcoid-like reaction — not counted as progression; consider tissue sampling or follow-up"
"""Differential wording of §5.3 Q1 (the report and the Flag carry it verbatim)."""
FLARE_CONFOUNDER = "flare-confounder"
"""Finding code of Q8/Q9 records (never an alert, so never a Flag: not an ``{C}/CodeSystem/alert`` code)."""
PROGRESSION_CATEGORIES = frozenset({"PD", "iUPD", "iCPD", "irPD"})
"""Categories that mean 'not stable or responding elsewhere' for the Q1 context (contract §5 names)."""


# --- site and pattern ----------------------------------------------------------------------------------


def site_class(organ: str | None) -> str:
    """The ``site`` input of ``new_lesion_action``: ``hilar-mediastinal`` (Q1 stations), ``other`` or ``unknown``.

    A missing or bare "lymph node" site (59441001) says nothing about the station, so it is ``unknown``; a node
    named with another station ("inguinal lymph node") is ``other`` [D].
    """
    site = codes.site_for(organ)
    if site is None:
        return "unknown" if not organ or not organ.strip() else "other"
    if site.key == "lymph-node":
        bare = (codes.normalise_code(organ) or "").strip().lower()
        return "unknown" if bare == site.coding.code or bare in site.synonyms else "other"
    return "hilar-mediastinal" if site.thoracic_nodal_station else "other"


@dataclass(frozen=True)
class NewLesionDecision:
    """What §5.3 says about one finding: its pattern, the action, and whether it counts as a new lesion."""

    pattern: str
    """Pattern key (``rules/codes.py``) or ``none`` for an ordinary lesion."""
    site: str
    action: str
    """``suppress`` | ``qualify`` | ``differential-alert`` | ``count``."""
    counts_as_new_lesion: bool
    alert: str
    """``irae`` | ``sarcoid-like-reaction`` | ``none``."""
    rule: str
    """Q1…Q10, or the §5.1 row."""
    label: str
    decision: Decision


def decide_finding(
    pattern: str, site: str, *, engine: Engine | None = None, overrides: Mapping[str, Any] | None = None
) -> NewLesionDecision:
    engine = engine or get_engine()
    ruleset = engine.rulebase[CRITERION]
    decision = engine.decide(
        CRITERION,
        "new_lesion_action",
        {
            "pattern": pattern,
            "site": site,
            "exclude_pneumonitis": bool(ruleset.flag("q2_exclude_pneumonitis_from_new_lesions", overrides)),
        },
    )
    return NewLesionDecision(
        pattern,
        site,
        decision["action"],
        bool(decision["counts_as_new_lesion"]),
        decision["alert"],
        str(decision["rule"]),
        decision["label"],
        decision,
    )


def classify(
    lesion: TrackedLesion,
    measurement: LesionMeasurement,
    *,
    engine: Engine | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NewLesionDecision:
    """§5.3 for one lesion at one scan: the code reported with this measurement, else the lesion's first code."""
    pattern = codes.pattern_for_code(measurement.finding_code or lesion.finding_code)
    return decide_finding(
        pattern.key if pattern else codes.NO_PATTERN,
        site_class(measurement.organ or lesion.organ),
        engine=engine,
        overrides=overrides,
    )


def is_tumour(lesion: TrackedLesion, measurement: LesionMeasurement) -> bool:
    """May this new lesion count as tumour (RECIST 1.1 §4.3.2 'new lesion')? §5.3 Q1–Q10.

    False for sarcoid-like nodes (Q1), pneumonitis patterns (Q2), thyroiditis (Q3), hypophysitis (Q4),
    pancreatitis pending confirmation (Q5), colitis (Q6), musculoskeletal irAEs (Q7), marrow/splenic uptake
    (Q8), draining nodes (Q9), hepatitis periportal nodes and myocarditis (§5.1); True for an ordinary new
    lesion (Q10). A pure function of its arguments and the loaded rule base (flags at their defaults).
    """
    return classify(lesion, measurement).counts_as_new_lesion


def tumour_hook(overrides: Mapping[str, Any] | None = None) -> Callable[[TrackedLesion, LesionMeasurement], bool]:
    """``is_tumour`` honouring configured ``irae.*`` flags (for ``evaluate_patient`` with overrides)."""
    if not overrides:
        return is_tumour

    def hook(lesion: TrackedLesion, measurement: LesionMeasurement) -> bool:
        return classify(lesion, measurement, overrides=overrides).counts_as_new_lesion

    return hook


# --- onset ---------------------------------------------------------------------------------------------


def exact_parameter(text: Any) -> Fraction:
    """``"365.25/12"`` or ``"2.2"`` as an exact fraction (rule-file parameters are strings)."""
    parts = str(text).split("/")
    value = Fraction(parts[0].strip())
    for part in parts[1:]:
        value /= Fraction(part.strip())
    return value


def _unit_days(unit: str, ruleset: RuleSet) -> Fraction:
    return {"days": Fraction(1), "weeks": Fraction(7), "months": exact_parameter(ruleset.parameters["days_per_month"])}[
        unit
    ]


@dataclass(frozen=True)
class Onset:
    days: int | None
    in_window: bool | None
    """``None`` when not determinable (no C1D1)."""
    text: str
    unverified: bool


def onset(pattern: str, day: dt.date, timeline: Timeline, ruleset: RuleSet) -> Onset:
    """Onset from C1D1 (§5.1) against the pattern's typical window, or the generic pooled irAE window."""
    config = ruleset.parameters["onset"]
    spec = config["patterns"].get(pattern, {})
    if timeline.treatment_start is None:
        return Onset(None, None, "onset not determinable: immunotherapy start (C1D1) unknown", False)
    days = (day - timeline.treatment_start).days
    own = "from" in spec
    window = spec if own else config["generic_window"]
    unit = window["unit"]
    value = Fraction(days) / _unit_days(unit, ruleset)
    low, high = exact_parameter(window["from"]), exact_parameter(window["to"])
    inside = low <= value <= high
    evidence = str(window.get("evidence", ""))
    unverified = evidence == "U" or str(spec.get("evidence", "")) == "U"
    months = Fraction(days) / _unit_days("months", ruleset)
    text = (
        f"onset day {days} after C1D1 ({round2(Fraction(days, 7))} weeks, {round2(months)} months): "
        f"{'within' if inside else 'outside'} the "
        f"{'typical' if own else 'generic pooled irAE'} window {window['from']}–{window['to']} {unit} "
        f"({window['source']}{'; [U] unverified' if evidence == 'U' else ''})"
    )
    if spec.get("median") and spec["median"] != "not stated":
        text += f"; reported median {spec['median']}"
        if not own:
            text += f" ({spec.get('source', '')}{'; [U] unverified' if str(spec.get('evidence', '')) == 'U' else ''})"
    if days < 0:
        text += "; the finding predates immunotherapy"
    return Onset(days, inside, text, unverified)


# --- CTCAE hook ----------------------------------------------------------------------------------------


def ctcae(day: dt.date, timeline: Timeline, engine: Engine) -> tuple[Decision, str]:
    """§5.4: imaging-only → 'grade not determinable from imaging' unless clinical fields exist on/after onset."""
    names = engine.rulebase[CRITERION].parameters["clinical_observation_codes"]
    after = sorted(
        (o for o in timeline.facts.observations if o.effective_date >= day and o.value is not None),
        key=lambda o: o.effective_date,
    )
    graded = [o for o in after if o.code == names["grade"]]
    symptomatic = [o for o in after if o.code == names["symptomatic"]]
    if graded:
        clinical, extra = "clinician-graded", f" (grade {graded[-1].value} on {graded[-1].effective_date})"
    elif symptomatic:
        clinical = "asymptomatic" if symptomatic[-1].value == 0 else "symptomatic"
        extra = f" (chart on {symptomatic[-1].effective_date})"
    else:
        clinical, extra = "none", ""
    decision = engine.decide(CRITERION, "ctcae_hook", {"clinical": clinical})
    return decision, f"CTCAE grade: {decision['grade']}{extra} — {decision['statement']}"


# --- occurrences ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One coded irAE (or flare) finding: from a FindingReport or from a lesion measurement."""

    pattern: codes.IraePattern
    day: dt.date
    code: str
    decision: NewLesionDecision
    where: str
    lesion_id: str | None = None


def occurrences(timeline: Timeline, *, engine: Engine, overrides: Mapping[str, Any] | None = None) -> list[Occurrence]:
    found: list[Occurrence] = []
    for report in timeline.facts.findings:
        pattern = codes.pattern_for_code(report.finding_code)
        if pattern is None:
            continue
        organ = report.body_site
        if organ is None and report.lesion_id is not None and report.lesion_id in timeline.lesions:
            organ = timeline.lesions[report.lesion_id].organ
        decision = decide_finding(pattern.key, site_class(organ), engine=engine, overrides=overrides)
        found.append(
            Occurrence(
                pattern,
                report.effective_date,
                codes.normalise_code(report.finding_code) or "",
                decision,
                f"reported finding {report.finding_code}",
                report.lesion_id,
            )
        )
    for m in timeline.facts.measurements:
        pattern = codes.pattern_for_code(m.finding_code)
        if pattern is None or m.status not in (LesionStatus.PRESENT, LesionStatus.TOO_SMALL):
            continue
        lesion = timeline.lesions.get(m.lesion_id)
        name = lesion_name(lesion) if lesion else (m.label or f"lesion …{m.lesion_id[-6:]}")
        decision = decide_finding(
            pattern.key, site_class(m.organ or (lesion.organ if lesion else None)), engine=engine, overrides=overrides
        )
        found.append(
            Occurrence(
                pattern,
                m.scan_date,
                codes.normalise_code(m.finding_code) or "",
                decision,
                f"measured finding {name}",
                m.lesion_id,
            )
        )
    return sorted(found, key=lambda o: (o.day, o.pattern.key, o.where))


def _coding_for(pattern: codes.IraePattern, reported: str) -> Mapping[str, str]:
    """The reported code when it is a verified SNOMED CT code of the pattern, else the pattern's primary code."""
    for coding in pattern.snomed:
        if coding.usable and coding.code == reported:
            return coding.as_fhir()
    return pattern.primary_coding.as_fhir()


# --- findings ------------------------------------------------------------------------------------------


def findings(
    timeline: Timeline,
    criteria: Sequence[CriterionAssessment],
    *,
    engine: Engine | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """``irae`` Findings per coded pattern, one ``sarcoid-like-reaction`` Finding, and flare records (§5)."""
    engine = engine or get_engine()
    ruleset = engine.rulebase[CRITERION]
    by_alert: dict[str, dict[str, list[Occurrence]]] = {}
    for occurrence in occurrences(timeline, engine=engine, overrides=overrides):
        by_alert.setdefault(occurrence.decision.alert, {}).setdefault(occurrence.pattern.key, []).append(occurrence)

    out: list[Finding] = []
    for items in by_alert.get("irae", {}).values():
        out.append(_irae_finding(items, timeline, engine, ruleset))
    sarcoid = sorted(
        (o for items in by_alert.get("sarcoid-like-reaction", {}).values() for o in items),
        key=lambda o: (o.day, o.pattern.key, o.where),
    )
    if sarcoid:
        out.append(_sarcoid_finding(sarcoid, timeline, criteria, engine, ruleset))
    for items in by_alert.get("none", {}).values():
        if not items[0].pattern.is_irae:
            out.append(_flare_record(items, ruleset))
    return sorted(out, key=lambda f: (f.scan_date, f.code, f.key))


def _where(items: Sequence[Occurrence]) -> str:
    """Each reported finding once, with the scans that show it."""
    dates: dict[str, list[dt.date]] = {}
    for o in items:
        dates.setdefault(o.where, [])
        if o.day not in dates[o.where]:
            dates[o.where].append(o.day)
    return "; ".join(f"{where} on {', '.join(str(d) for d in days)}" for where, days in dates.items())


def _irae_finding(items: list[Occurrence], timeline: Timeline, engine: Engine, ruleset: RuleSet) -> Finding:
    first = items[0]
    pattern = first.pattern
    severity = engine.decide(CRITERION, "alert_severity", {"pattern": pattern.key})
    timing = onset(pattern.key, first.day, timeline, ruleset)
    hook, grade_text = ctcae(first.day, timeline, engine)
    effect = first.decision.decision
    urgent = severity["severity"] == "critical"
    summary = (
        f"{'URGENT: ' if urgent else ''}radiological findings consistent with immune-related "
        f"{pattern.term[0].lower() + pattern.term[1:]} ({first.decision.label}); CTCAE grade {hook['grade']}"
    )
    detail = "\n".join(
        [
            f"{pattern.term}: {_where(items)}.",
            timing.text + ".",
            f"Effect on 'new lesion = progression': {first.decision.action} — {effect.because}.",
            grade_text + ".",
            f"Severity: {severity.because}.",
        ]
    )
    return Finding(
        code="irae",
        scan_date=first.day,
        severity=severity["severity"],
        summary=summary,
        detail=detail,
        rule=f"{effect.trace()}; {severity.trace()}; {hook.trace()}",
        source=f"{ruleset.source} Onset: {ruleset.parameters['onset']['patterns'].get(pattern.key, {}).get('source', '')}",
        alert=True,
        key=pattern.key,
        distinct_by_key=True,
        codings=(_coding_for(pattern, first.code),),
    )


def _counted_by(tp: TimepointResponse, names: Sequence[str]) -> bool:
    """Did this criterion count any of the named lesions as a new lesion at this timepoint (its trace)?"""
    if tp.new_lesions in (None, "absent"):
        return False
    return any(name in line for line in tp.trace for name in names)


def _sarcoid_finding(
    items: list[Occurrence],
    timeline: Timeline,
    criteria: Sequence[CriterionAssessment],
    engine: Engine,
    ruleset: RuleSet,
) -> Finding:
    first = items[0]
    lesion_ids = sorted({o.lesion_id for o in items if o.lesion_id and o.lesion_id in timeline.lesions})
    names = [lesion_name(timeline.lesions[i]) for i in lesion_ids]
    severity = engine.decide(CRITERION, "alert_severity", {"pattern": first.pattern.key})
    timing = onset(first.pattern.key, first.day, timeline, ruleset)
    not_counted, counted, context = [], [], []
    for assessment in criteria:
        tp = assessment.at(first.day)
        if tp is None:
            continue
        if names and _counted_by(tp, names):
            counted.append(f"{assessment.criterion} ({tp.category})")
            continue
        not_counted.append(f"{assessment.criterion} ({tp.category})")
        if tp.category in PROGRESSION_CATEGORIES:
            context.append(f"{assessment.criterion} {tp.category}")
    lines = [
        f"{SARCOID_WORDING}.",
        f"Nodes: {_where(items)} — {len(lesion_ids) or len(items)} finding(s); Q1 expects symmetric bilateral "
        f"hilar ± mediastinal nodes, absent at baseline, emerging on ICI.",
        timing.text + ".",
    ]
    if not_counted:
        lines.append("Not counted as new lesions by: " + ", ".join(not_counted) + ".")
    if counted:
        lines.append("Counted as new lesions by: " + ", ".join(counted) + " (criterion run without the irAE hook).")
    if not criteria or not (not_counted or counted):
        lines.append("No response criterion was evaluated at that scan.")
    if context:
        lines.append(
            "Disease elsewhere is progressing (" + ", ".join(context) + "): the Q1 context (stable or "
            "responding disease elsewhere) does not hold; the differential stays open."
        )
    elif not_counted:
        lines.append(
            "Disease elsewhere is stable or responding: 92 % of patients with a sarcoid-like reaction "
            "were responding (MSK-SLR). Under iRECIST this is at most a flagged iUPD."
        )
    effect = first.decision.decision
    return Finding(
        code="sarcoid-like-reaction",
        scan_date=first.day,
        severity=severity["severity"],
        summary=SARCOID_WORDING,
        detail="\n".join(lines),
        rule=f"{effect.trace()}; {severity.trace()}",
        source=f"{ruleset.source} Onset: {ruleset.parameters['onset']['patterns']['sarcoid-like']['source']}",
        alert=True,
        key="sarcoid-like",
        codings=(_coding_for(first.pattern, first.code),),
    )


def _flare_record(items: list[Occurrence], ruleset: RuleSet) -> Finding:
    """Q8/Q9: recorded so the report says why a finding was not counted; never an alert (§4.5)."""
    first = items[0]
    effect = first.decision.decision
    return Finding(
        code=FLARE_CONFOUNDER,
        scan_date=first.day,
        severity="info",
        summary=f"{first.pattern.term}: {first.decision.action}, not counted as a new lesion ({first.decision.label})",
        detail=f"{_where(items)}. {effect.because}.",
        rule=effect.trace(),
        source=ruleset.source,
        alert=False,
        key=first.pattern.key,
        codings=(first.pattern.primary_coding.as_fhir(),),
    )
