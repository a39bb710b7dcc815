"""Findings from the iRECIST assessment: confirmation due, pseudoprogression, late response after iCPD.

- ``confirmation-due`` (warning): the latest timepoint leaves an iUPD episode open — a confirmation scan is due
  4–8 weeks after the iUPD (size spec §2.4). Dated to the iUPD, with the window's end.
- ``pseudoprogression`` (info): an iUPD was followed by iSD, iPR, iCR (or non-iCR/non-iUPD) without iCPD — the
  bar was reset (kinetics spec §4.1; size spec §2.5). The detail names RECIST 1.1 PD when RECIST called it:
  that divergence is what the report must show (size spec E7).
- ``late-response-after-icpd`` (info, never an alert): after iCPD, the lesions show a response again (kinetics
  spec §4.1: responses after confirmed progression occur; a retrospective registry label, iCPD stays final).

The categories come from ``rules/criteria/irecist.py``; severities and sources from ``parameters.findings`` of
``rules/rulesets/irecist.yaml``. Nothing is decided here that the iRECIST tables did not decide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.criteria import irecist as irecist_criterion
from rules.criteria.irecist import Category
from rules.engine import Engine, get_engine
from rules.results import CriterionAssessment, Finding, TimepointResponse
from rules.timeline import Timeline

RESET_CATEGORIES = frozenset(
    {Category.ICR.value, Category.IPR.value, Category.ISD.value, Category.NON_ICR_NON_IUPD.value}
)
"""What a reset shows (size spec §2.5; kinetics spec §4.1 names iSD, iPR and iCR; non-iCR/non-iUPD is their
non-target-only analogue, iRECIST §2.7 [D])."""
LATE_RESPONSE_CATEGORIES = frozenset({Category.ICR.value, Category.IPR.value})


def _definition(engine: Engine, code: str) -> Mapping[str, Any]:
    definition: Mapping[str, Any] = engine.rulebase[irecist_criterion.CRITERION].parameters["findings"][code]
    return definition


def _finding(
    engine: Engine,
    code: str,
    scan_date: dt.date,
    summary: str,
    detail: str,
    rule: str,
    *,
    key: str = "",
    window_end: dt.date | None = None,
) -> Finding:
    definition = _definition(engine, code)
    return Finding(
        code=code,
        scan_date=scan_date,
        severity=definition["severity"],
        summary=summary,
        detail=detail,
        rule=rule,
        source=definition["source"],
        alert=bool(definition["alert"]),
        key=key,
        window_end=window_end,
    )


def _weeks(days: int) -> str:
    return str(days // 7) if days % 7 == 0 else f"{days / 7:g}"


def confirmation_due(irecist: CriterionAssessment, *, engine: Engine) -> Finding | None:
    """An iUPD episode still open at the latest timepoint (iUPD, an early disregarded scan, or NE after iUPD)."""
    if not irecist.timepoints:
        return None
    latest = irecist.timepoints[-1]
    episode = latest.extra.get("episode")
    if not episode or episode.get("status") != "open":
        return None
    anchor = dt.date.fromisoformat(episode["anchor_date"])
    window = latest.extra["confirmation_window"]
    start, end = dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"])
    weeks = f"{_weeks((start - anchor).days)}–{_weeks((end - anchor).days)} weeks"
    detail = f"confirm {weeks} after {anchor.isoformat()}: {start.isoformat()}–{end.isoformat()}"
    if latest.scan_date != anchor:
        detail += f" (latest scan {latest.scan_date.isoformat()}: {latest.category}"
        detail += ", disregarded as too early)" if latest.extra.get("early_scan_disregarded") else ", not confirmed)"
    causes = ", ".join(episode.get("causes") or ())
    return _finding(
        engine,
        "confirmation-due",
        anchor,
        f"iRECIST iUPD of {anchor.isoformat()} ({causes}) needs a confirmation scan by {end.isoformat()}",
        detail,
        "irecist.confirmation-due",
        key=anchor.isoformat(),
        window_end=end,
    )


def _recist_pd_before(recist: CriterionAssessment | None, day: dt.date) -> dt.date | None:
    if recist is None or recist.progression_date is None or recist.progression_date > day:
        return None
    return recist.progression_date


def pseudoprogressions(
    irecist: CriterionAssessment, recist: CriterionAssessment | None, *, engine: Engine
) -> list[Finding]:
    """Every reset of an iUPD episode (kinetics spec §4.1): dated to the timepoint that shows the reset."""
    out = []
    for tp in irecist.timepoints:
        anchor_text = tp.extra.get("reset_from_iupd")
        if not anchor_text or tp.category not in RESET_CATEGORIES:
            continue
        anchor = dt.date.fromisoformat(anchor_text)
        days = (tp.scan_date - anchor).days
        detail = (
            f"iUPD on {anchor.isoformat()} not confirmed: {tp.category} on {tp.scan_date.isoformat()} "
            f"({days} days later), no iCPD in between; the bar is reset (iRECIST §2.5)"
        )
        recist_pd = _recist_pd_before(recist, tp.scan_date)
        if recist_pd is not None:
            detail += (
                f". RECIST 1.1 called PD on {recist_pd.isoformat()} and ended there; iRECIST continues "
                f"with {tp.category}"
            )
        out.append(
            _finding(
                engine,
                "pseudoprogression",
                tp.scan_date,
                f"Pseudoprogression: iUPD of {anchor.isoformat()} followed by {tp.category}",
                detail,
                "irecist.pseudoprogression",
                key=anchor.isoformat(),
            )
        )
    return out


def late_response_after_icpd(irecist: CriterionAssessment, *, engine: Engine) -> Finding | None:
    """The first timepoint after iCPD whose lesions show iPR or iCR (graded strictly, no sticky PR)."""
    icpd: TimepointResponse | None = None
    for tp in irecist.timepoints:
        if icpd is None:
            if tp.category == Category.ICPD.value:
                icpd = tp
            continue
        response = tp.extra.get("after_icpd_response")
        if response in LATE_RESPONSE_CATEGORIES:
            progression = irecist.progression_date.isoformat() if irecist.progression_date else "n/a"
            detail = (
                f"lesions show {response} on {tp.scan_date.isoformat()} after iCPD on {icpd.scan_date.isoformat()} "
                f"(progression date {progression}); retrospective label LATE_RESPONSE_AFTER_iCPD — iCPD stays "
                "final for endpoints (kinetics spec §4.1)"
            )
            return _finding(
                engine,
                "late-response-after-icpd",
                tp.scan_date,
                f"Response ({response}) after confirmed progression",
                detail,
                "irecist.late-response-after-icpd",
                key=icpd.scan_date.isoformat(),
            )
    return None


def findings(
    timeline: Timeline,
    irecist: CriterionAssessment,
    recist: CriterionAssessment | None = None,
    *,
    engine: Engine | None = None,
) -> list[Finding]:
    """The iRECIST pattern findings for one patient, in date order.

    ``timeline`` is the one the assessments were made on; a latest scan the iRECIST assessment did not grade
    (none today) would make a confirmation-due finding stale, so it is checked.
    """
    engine = engine or get_engine()
    out = pseudoprogressions(irecist, recist, engine=engine)
    late = late_response_after_icpd(irecist, engine=engine)
    if late is not None:
        out.append(late)
    due = confirmation_due(irecist, engine=engine)
    graded_latest = irecist.timepoints[-1].scan_date if irecist.timepoints else None
    timeline_latest = timeline.followups[-1].scan_date if timeline.followups else None
    if due is not None and graded_latest == timeline_latest:
        out.append(due)
    return sorted(out, key=lambda f: (f.scan_date, f.code))
