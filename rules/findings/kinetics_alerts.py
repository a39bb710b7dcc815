"""Alerts from tumour growth kinetics (spec ``clinical/criteria-kinetics-irae.md`` §3.4).

- ``hyperprogression`` (critical): the primary definition (``kinetics.PRIMARY_HPD_DEFINITION``, Kas 2020 by
  default) is met. The detail names every definition that was met, so the clinician sees any disagreement,
  and never says a bare "HPD" (spec §1.2).
- ``fast-progression`` (critical): the fast-progression definition of ``kinetics.FP_ANCHOR`` (OAK by default)
  is met, including its retrospective death branch (K11).
- ``early-death`` (info, registry): early death (Ferrara 2020) or the OAK death branch.
- ``kinetics-acceleration`` (warning): ΔTGR > 50 without RECIST PD at E2 (K5).
- ``hpd-not-evaluable`` (info, recorded, never an alert — contract §9.4): E0 missing, TGR_ref not evaluable, an
  undefined ratio, or E2 outside the window, with the reason code. The report and the kinetics Observation state it;
  the service turns it into an ``info`` card only when ``IMMUNORAD_ALERT_NOT_EVALUABLE=true``.

Each is one alert per patient (contract §9.4; ``Finding.identity``): ``key`` records which definition or reason
applied, and a later scan updates the same alert.

Every raise/no-raise comes from a decision table (``alert_*`` in ``rules/rulesets/kinetics.yaml``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.engine import Engine, get_engine
from rules.kinetics.assess import definition, reason_code, required_definition
from rules.kinetics.ruleset import MET, NOT_EVALUABLE, NOT_MET, UNKNOWN, KineticsRules
from rules.results import CriterionAssessment, Finding, KineticsResult
from rules.timeline import Timeline

CONFLICT_NOTE = (
    "HPD decided on E2 kinetics; pseudoprogression can only be decided on the confirmation scan "
    "(spec §3.4: both can begin as iUPD)."
)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _recist_e2(kinetics: KineticsResult) -> str | None:
    """RECIST 1.1 overall response at E2, as the definitions recorded it."""
    for result in kinetics.definitions:
        if "recist_e2" in result.inputs:
            value = result.inputs["recist_e2"]
            return None if value is None else str(value)
    return None


def _e2(kinetics: KineticsResult) -> dt.date:
    """E2, for the alerts whose decision rows all require a first evaluation (``first_evaluation`` present)."""
    if kinetics.e2_date is None:
        raise LookupError("a kinetics alert that needs E2 was raised without one")
    return kinetics.e2_date


def _first_date(*candidates: dt.date | None) -> dt.date:
    """The alert's date: the first known of its candidates (the event's date, else the baseline scan)."""
    for candidate in candidates:
        if candidate is not None:
            return candidate
    raise LookupError("a kinetics alert was raised without any date (no event date and no baseline scan)")


def _first_evaluation(kinetics: KineticsResult) -> str:
    if kinetics.e2_date is None:
        return "missing"
    return "atypical-window" if "WINDOW_ATYPICAL" in kinetics.flags else "in-window"


def _numbers(kinetics: KineticsResult) -> str:
    return (
        f"TGR_ref {_fmt(kinetics.tgr_reference)} %/month, TGR_exp {_fmt(kinetics.tgr_experimental)} %/month, "
        f"TGR ratio {_fmt(kinetics.tgr_ratio)}, ΔTGR {_fmt(kinetics.tgr_difference)}; "
        f"TGK_ref {_fmt(kinetics.tgk_reference)} mm/month, TGK_exp {_fmt(kinetics.tgk_experimental)} mm/month, "
        f"TGKR {_fmt(kinetics.tgk_ratio)}"
    )


def _title(rules: KineticsRules, code: str) -> str:
    return str(rules.definition(code)["title"])


def _definitions_by_status(rules: KineticsRules, kinetics: KineticsResult) -> str:
    parts = []
    for status, label in ((MET, "Met"), (NOT_MET, "Not met"), (NOT_EVALUABLE, "Not evaluable")):
        names = [_title(rules, d.code) for d in kinetics.definitions if d.status == status]
        if names:
            parts.append(f"{label}: " + ", ".join(names) + ".")
    return " ".join(parts)


def _iupd_at_e2(kinetics: KineticsResult, irecist: CriterionAssessment | None) -> bool:
    """iUPD at E2: from iRECIST when given; otherwise RECIST 1.1 PD at E2, which iRECIST labels iUPD until confirmed."""
    if kinetics.e2_date is None:
        return False
    if irecist is not None:
        response = irecist.at(kinetics.e2_date)
        return response is not None and response.category == "iUPD"
    return _recist_e2(kinetics) == "PD"


def _finding(
    rules: KineticsRules,
    code: str,
    scan_date: dt.date,
    summary: str,
    detail: str,
    rule: str,
    source: str,
    key: str = "",
    *,
    raises_alert: bool = True,
) -> Finding:
    alert = rules.ruleset.parameters["alerts"][code]
    return Finding(
        code=code,
        scan_date=scan_date,
        severity=alert["severity"],
        summary=summary,
        detail=detail,
        rule=rule,
        source=f"{source} {alert['source']}".strip(),
        alert=raises_alert,
        key=key,
    )


def findings(
    kinetics: KineticsResult,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    engine: Engine | None = None,
    irecist: CriterionAssessment | None = None,
) -> list[Finding]:
    """The §3.4 alerts for one patient's kinetics (``rules.kinetics.assess_kinetics``).

    ``irecist`` (optional) is the iRECIST assessment; when given, its E2 category decides the HPD /
    pseudoprogression conflict note, otherwise RECIST 1.1 PD at E2 (= iUPD under iRECIST) does.
    """
    rules = KineticsRules(engine or get_engine(), overrides)
    out: list[Finding] = []
    baseline_date = kinetics.e1_date or (timeline.baseline.scan_date if timeline.baseline else None)

    # Hyperprogression (primary definition) and HPD not evaluable.
    primary_code = rules.flag("PRIMARY_HPD_DEFINITION")
    primary = definition(kinetics, primary_code)
    if primary is None:
        raise ValueError(f"kinetics.PRIMARY_HPD_DEFINITION = {primary_code!r} is not a definition code")
    first_evaluation = _first_evaluation(kinetics)
    hpd = rules.decide(
        "alert_hyperprogression", {"primary_status": primary.status, "first_evaluation": first_evaluation}
    )
    if hpd["hyperprogression"]:
        detail = [
            f"Primary definition {_title(rules, primary_code)}: {primary.reason}",
            _definitions_by_status(rules, kinetics),
            _numbers(kinetics) + ".",
        ]
        if first_evaluation == "atypical-window":
            detail.append("WINDOW_ATYPICAL: E2 is outside the 21–120-day window after C1D1.")
        if _iupd_at_e2(kinetics, irecist):
            detail.append(f"Conflict flag: iUPD at E2. {CONFLICT_NOTE}")
        out.append(
            _finding(
                rules,
                "hyperprogression",
                _e2(kinetics),
                f"Hyperprogressive disease by {_title(rules, primary_code)}",
                "\n".join(d for d in detail if d),
                hpd.trace(),
                primary.source,
                key=primary_code,
            )
        )
    if hpd["hpd_not_evaluable"]:
        code = reason_code(primary) if primary.status == NOT_EVALUABLE else "WINDOW_ATYPICAL"
        detail = [f"{_title(rules, primary_code)}: {primary.reason}"]
        flags = [f for f in kinetics.flags if f not in ("BORDERLINE",)]
        if flags:
            detail.append("Kinetics flags: " + ", ".join(flags) + ".")
        detail.append(_definitions_by_status(rules, kinetics))
        out.append(
            _finding(
                rules,
                "hpd-not-evaluable",
                _e2(kinetics),
                f"Hyperprogression could not be evaluated by {_title(rules, primary_code)}",
                "\n".join([f"Reason: {code}.", *(d for d in detail if d)]),
                hpd.trace(),
                primary.source,
                key=code,
                raises_alert=False,
            )
        )

    # Fast progression (anchor by flag) and early death.
    oak = required_definition(kinetics, "fast-progression-oak")
    ferrara = required_definition(kinetics, "fast-progression-ferrara-2020")
    fp = rules.decide(
        "alert_fast_progression",
        {"fp_anchor": rules.flag("FP_ANCHOR"), "oak_status": oak.status, "ferrara_status": ferrara.status},
    )
    if fp["raise"]:
        fired = required_definition(kinetics, fp["definition"])
        death_branch = fired.inputs.get("scan_branch") is not True and fired.inputs.get("death_branch") is True
        when = fired.inputs.get("deceased") if death_branch else kinetics.e2_date
        text = fired.reason
        if death_branch:
            text += "\nRetrospective (for audit): death from progression with no post-baseline scan."
        out.append(
            _finding(
                rules,
                "fast-progression",
                _first_date(when, baseline_date),
                _title(rules, fired.code) + (" — death branch (retrospective)" if death_branch else ""),
                text,
                fp.trace(),
                fired.source,
                key=fired.code,
            )
        )

    early = required_definition(kinetics, "early-death")
    death_branch = oak.inputs.get("death_branch", UNKNOWN)
    ed = rules.decide("alert_early_death", {"early_death_status": early.status, "fp_death_branch": death_branch})
    if ed["raise"]:
        when = early.inputs.get("deceased") or oak.inputs.get("deceased")
        text = f"{_title(rules, 'early-death')}: {early.reason}\n{_title(rules, 'fast-progression-oak')}: {oak.reason}"
        out.append(
            _finding(
                rules,
                "early-death",
                _first_date(when, baseline_date),
                "Early death from progression (registry)",
                text,
                ed.trace(),
                early.source,
            )
        )

    # Kinetic acceleration without RECIST PD.
    delta, _ = rules.float_test("acceleration_delta_tgr", kinetics.tgr_difference)
    recist = _recist_e2(kinetics)
    recist_pd = UNKNOWN if recist in (None, "NE") else recist == "PD"
    acceleration = rules.decide(
        "alert_kinetics_acceleration",
        {"delta_tgr_over_50": delta, "recist_pd": recist_pd, "hyperprogression_raised": bool(hpd["hyperprogression"])},
    )
    if acceleration["raise"]:
        out.append(
            _finding(
                rules,
                "kinetics-acceleration",
                _e2(kinetics),
                f"Tumour growth acceleration (ΔTGR {_fmt(kinetics.tgr_difference)} > 50) without RECIST progression",
                f"RECIST 1.1 at E2: {recist}. {_numbers(kinetics)}. {acceleration.because}.",
                acceleration.trace(),
                rules.ruleset.threshold("acceleration_delta_tgr").source,
            )
        )
    return out


__all__ = ["CONFLICT_NOTE", "findings"]
