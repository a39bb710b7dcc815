"""Confirmation scan due: one alert per patient for every criterion whose latest timepoint awaits confirmation.

Each criterion with a confirmation rule records the open window on its timepoint (``TimepointResponse.extra``):

- iRECIST iUPD (size spec §2.4): ``episode`` (status ``open``) and ``confirmation_window`` — the next scan
  4–8 weeks after the iUPD (``confirmation_window_start_days`` / ``confirmation_window_max_days`` in
  ``rules/rulesets/irecist.yaml``);
- irRC, irRECIST and imRECIST unconfirmed progression (size spec §3.4, §4.2, §5): ``confirmation_due`` — the next
  assessment at least ``confirmation_min_days`` (28) later confirms or negates it; the sources set no latest date;
- iRANO provisional PD (size spec §10): ``confirmation_due`` — follow-up imaging at least ``confirm_min_days``
  (12 weeks [U]) later; no latest date;
- LYRIC indeterminate response (size spec §9.2): ``confirmation_due`` — re-imaging within about 12 weeks
  (``ir_reimaging_max_days`` [U]); no earliest date.

RECIST 1.1 has no confirmation of progression; itRECIST's overall response follows RECIST 1.1 (size spec §6.2).

One ``confirmation-due`` Finding (warning, from ``parameters.findings`` of ``rules/rulesets/irecist.yaml``) lists
every open window, so a patient whose iUPD is also an unconfirmed irPD gets one alert, not four (contract §9.4).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.engine import Engine, get_engine
from rules.results import CriterionAssessment, Finding, TimepointResponse

CODE = "confirmation-due"
CRITERIA = ("iRECIST", "irRECIST", "irRC", "imRECIST", "iRANO", "LYRIC")
"""The criteria with a confirmation rule, in report order."""
WINDOW_THRESHOLDS: Mapping[str, tuple[str, ...]] = {
    "iRECIST": ("confirmation_window_start_days", "confirmation_window_max_days"),
    "irRECIST": ("confirmation_min_days",),
    "irRC": ("confirmation_min_days",),
    "imRECIST": ("confirmation_min_days",),
    "iRANO": ("confirmation_min_days",),
    "LYRIC": ("ir_reimaging_max_days",),
}
"""Where each window comes from (its rule file's thresholds): named in the finding's source."""


@dataclass(frozen=True)
class ConfirmationWindow:
    """An unconfirmed category awaiting a confirmation scan."""

    criterion: str
    category: str
    """The unconfirmed category at the timepoint (``iUPD``, ``irPD``, ``PD``, ``IR1``…)."""
    since: dt.date
    """The scan that showed it first."""
    start: dt.date | None
    """The earliest scan date that can confirm it (None: any later scan)."""
    end: dt.date | None
    """The latest date the criterion's source names (None: the source names none)."""

    def describe(self) -> str:
        """``between 2024-06-03 and 2024-07-01`` | ``on or after 2024-06-03`` | ``by 2024-07-29``."""
        if self.start is not None and self.end is not None:
            return f"between {self.start.isoformat()} and {self.end.isoformat()}"
        if self.start is not None:
            return f"on or after {self.start.isoformat()}"
        if self.end is not None:
            return f"by {self.end.isoformat()}"
        return "at the next scan"


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value) if value else None


def _required_date(value: Any) -> dt.date:
    """A date the criterion always records (the scan that opened the episode)."""
    day = _date(value)
    if day is None:
        raise ValueError("a confirmation episode without the date of the scan that opened it")
    return day


def window_at(tp: TimepointResponse) -> ConfirmationWindow | None:
    """The window left open after this timepoint, if any."""
    extra = tp.extra
    episode = extra.get("episode")
    if episode:
        window = extra.get("confirmation_window") or {}
        if episode.get("status") != "open":
            return None
        return ConfirmationWindow(
            tp.criterion,
            "iUPD",
            _required_date(episode["anchor_date"]),
            _date(window.get("start")),
            _date(window.get("end")),
        )
    due = extra.get("confirmation_due")
    if not due:
        return None
    category = tp.category
    if tp.criterion == "LYRIC" and extra.get("ir_subtype"):
        category = str(extra["ir_subtype"])
    return ConfirmationWindow(
        tp.criterion, category, _required_date(due["since"]), _date(due.get("start")), _date(due.get("end"))
    )


def open_windows(criteria: Sequence[CriterionAssessment], latest: dt.date | None) -> list[ConfirmationWindow]:
    """Windows open at ``latest`` (the patient's latest follow-up): a criterion that did not grade that scan
    (e.g. after its progression) has none."""
    out = []
    for criterion in criteria:
        if criterion.criterion not in CRITERIA or not criterion.timepoints:
            continue
        tp = criterion.timepoints[-1]
        if latest is not None and tp.scan_date != latest:
            continue
        window = window_at(tp)
        if window is not None:
            out.append(window)
    return out


def confirmation_due(
    criteria: Sequence[CriterionAssessment], latest: dt.date | None, *, engine: Engine | None = None
) -> Finding | None:
    """One ``confirmation-due`` Finding listing every open window, dated to the earliest unconfirmed scan."""
    engine = engine or get_engine()
    windows = open_windows(criteria, latest)
    if not windows:
        return None
    definition = engine.rulebase["iRECIST"].parameters["findings"][CODE]
    first = min(w.since for w in windows)
    grouped: dict[str, list[str]] = {}
    for w in windows:  # criteria with the same window share one phrase
        grouped.setdefault(w.describe(), []).append(w.criterion)
    parts = [f"{', '.join(names)} {when}" for when, names in grouped.items()]
    lines = [
        f"{w.criterion}: {w.category} of {w.since.isoformat()} is unconfirmed — confirmation scan {w.describe()}."
        for w in windows
    ]
    sources = [
        f"{w.criterion}: {engine.rulebase[w.criterion].threshold(name).source}"
        for w in windows
        for name in WINDOW_THRESHOLDS[w.criterion]
    ]
    ends = [w.end for w in windows if w.end is not None]
    return Finding(
        code=CODE,
        scan_date=first,
        severity=definition["severity"],
        summary="Confirmation scan due: " + "; ".join(parts),
        detail="\n".join(lines),
        rule="; ".join(f"{w.criterion}.confirmation-due" for w in windows),
        source=" ".join([definition["source"], *sources]),
        alert=bool(definition["alert"]),
        key=first.isoformat(),
        window_end=max(ends) if ends else None,
    )


__all__ = ["CRITERIA", "ConfirmationWindow", "confirmation_due", "open_windows", "window_at"]
