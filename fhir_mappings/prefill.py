"""The pre-filled "Response assessment" section as a radiologist signs it (contract §9.4; ``presentedForm``).

Plain text (``text/plain``), in this order:

1. **Impression** (first paragraph, at most :data:`IMPRESSION_MAX` characters): the primary criterion's category
   with the sum and its change, the criteria that read differently, the active alerts, patterns that hold.
2. A short **lesion table**: sites in words (SNOMED CT code meanings), the RECIST measure at baseline, the
   previous follow-up and this scan (lymph nodes by their short axis; both axes for bidimensional-only
   criteria, e.g. lymphoma).
3. **One line per criterion**, then a short line on growth kinetics and the treatment start.

No internal identifiers, rule or specification references, evidence tags, reason codes or bare code numbers;
dates in one format (``11 Mar 2024``). Rule traces, not-evaluable reasons and the full measurement table are
in the HTML form's collapsible ``<details>`` (:mod:`fhir_mappings.prefill_details`) and in the Observations'
notes. The text never names the patient.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fhir_mappings import codes
from fhir_mappings.alerts import AlertState
from fhir_mappings.prefill_details import (
    burden_name,
    criterion_headline,
    details_html,
    format_date,
    format_number,
    format_percent,
    format_signed,
    is_latest_timepoint,
    iso_date,
    lesion_cell_text,
    site_display,
    tracer_uptake_line,
    unit_words,
)
from rules.findings.confirmation import ConfirmationWindow, open_windows, window_at
from rules.findings.irae import SARCOID_WORDING
from rules.results import CriterionAssessment, Finding, PatientAssessment, TimepointResponse, round2

__all__ = [
    "IMPRESSION_MAX",
    "criterion_headline",
    "impression_of",
    "format_date",
    "format_number",
    "format_percent",
    "format_signed",
    "is_latest_timepoint",
    "lesion_cell_text",
    "render_prefill",
    "site_display",
]

TITLE = "Response assessment"
IMPRESSION_MAX = 600
"""Contract §9.4: the impression paragraph is at most 600 characters."""
TABLE_MAX_ROWS = 10
PRIMARY_FALLBACK = ("iRECIST", "RECIST-1.1", "LYRIC", "Lugano-2014", "iRANO", "RANO")
"""When the configured primary criterion does not apply: the immunotherapy criterion of each disease family
(the same order as the mCODE CancerDiseaseStatus of :mod:`fhir_mappings.outbound`)."""
PLAIN_CATEGORIES = frozenset({"CR", "PR", "SD", "PD", "NE"})
"""Categories whose words say it all; others keep their code after the words, e.g. ``(iUPD)``."""
COMPLETE = frozenset({"CR", "iCR", "irCR", "CMR"})


# ---------------------------------------------------------------------------------------------------------------
# Wording
# ---------------------------------------------------------------------------------------------------------------
def change(value: Fraction | Decimal | None) -> str:
    """A percent change as a reader writes it: ``−30 %``, ``+5.17 %``, ``0 %`` (2 decimals at most)."""
    if value is None:
        return "n/a"
    rounded = round2(value) if isinstance(value, Fraction) else Decimal(value).quantize(Decimal("0.01"))
    text = format_number(rounded.normalize() if rounded != 0 else Decimal(0))
    return f"{'+' if rounded > 0 else ''}{text} %"


def category_text(category: str) -> str:
    """``partial response``, ``unconfirmed progressive disease (iUPD)``, ``indeterminate response IR1``."""
    words = codes.RESPONSE_CATEGORIES.get(category) or codes.RESPONSE_NON_CATEGORY_WORDS.get(category) or category
    if category in PLAIN_CATEGORIES or category in words or category == words:
        return words
    return f"{words} ({category})"


def reading(tp: TimepointResponse) -> str:
    """The category in words, saying when a progression still awaits confirmation (irPD, iRANO's provisional PD)."""
    text = category_text(tp.category)
    worsened = codes.DISEASE_STATUS_BY_CATEGORY.get(tp.category) is codes.SCT_WORSENED
    if worsened and tp.confirmed is False:
        return f"unconfirmed {text}"
    if worsened and tp.confirmed is True and "confirmed" not in text:
        return f"{text}, confirmed"
    return text


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def response_class(tp: TimepointResponse) -> str:
    """What a category means for the patient, to compare criteria: complete, partial, stable, progression,
    unconfirmed progression, not evaluable."""
    status = codes.DISEASE_STATUS_BY_CATEGORY.get(tp.category)
    if tp.category in codes.UNCONFIRMED_PROGRESSION_CATEGORIES or (
        status is codes.SCT_WORSENED and tp.confirmed is False
    ):
        return "unconfirmed progression"
    if status is codes.SCT_IMPROVED:
        return "complete" if tp.category in COMPLETE else "partial"
    if status is codes.SCT_STABLE:
        return "stable"
    if status is codes.SCT_WORSENED:
        return "progression"
    return "not evaluable"


def _amount(value: Decimal | None, unit: str) -> str:
    return f"{format_number(value)} {unit_words(unit)}"


def burden_text(tp: TimepointResponse) -> str | None:
    """``sum of diameters 63 mm, −30 % from baseline (90 mm)``; for progression the change from the nadir."""
    if tp.sum_mm is not None:
        text = f"{burden_name(tp).lower()} {_amount(tp.sum_mm, tp.sum_unit)}"
        progression = response_class(tp) in ("progression", "unconfirmed progression")
        grew = tp.percent_from_nadir is not None and tp.percent_from_nadir > 0
        if progression and grew and tp.nadir_sum is not None:
            text += f", {change(tp.percent_from_nadir)} from nadir ({_amount(tp.nadir_sum, tp.sum_unit)})"
        elif tp.baseline_sum is not None and tp.percent_from_baseline is not None:
            text += f", {change(tp.percent_from_baseline)} from baseline ({_amount(tp.baseline_sum, tp.sum_unit)})"
        return text
    extra = tp.extra
    for key, label in (("sul_peak_sum", "sum of SULpeak"), ("hottest_sul_peak", "hottest lesion SULpeak")):
        value = extra.get(key)
        if value is not None:
            text = f"{label} {format_number(Decimal(str(value)))}"
            if tp.percent_from_baseline is not None:
                text += f", {change(tp.percent_from_baseline)} from baseline"
            return text
    return None


def window_text(window: ConfirmationWindow) -> str:
    if window.start is not None and window.end is not None:
        return f"between {format_date(window.start)} and {format_date(window.end)}"
    if window.start is not None:
        return f"on or after {format_date(window.start)}"
    if window.end is not None:
        return f"by {format_date(window.end)}"
    return "at the next scan"


# ---------------------------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------------------------
def primary_criterion(
    assessment: PatientAssessment, scan_date: dt.date, configured: str
) -> tuple[CriterionAssessment, TimepointResponse | None] | None:
    """The configured primary criterion if it applies, else the disease family's immunotherapy criterion, else
    the first criterion graded at this scan."""
    for name in dict.fromkeys((configured, *PRIMARY_FALLBACK)):
        criterion = assessment.criterion(name)
        if criterion is None:
            continue
        tp = criterion.at(scan_date)
        if tp is not None or (criterion.progression_date is not None and criterion.progression_date <= scan_date):
            return criterion, tp
    for criterion in assessment.criteria:
        tp = criterion.at(scan_date)
        if tp is not None:
            return criterion, tp
    return None


def _primary_sentence(criterion: CriterionAssessment, tp: TimepointResponse | None) -> str:
    name = codes.criterion_display(criterion.criterion)
    if tp is None:
        return (
            f"Progression by {name} since "
            f"{format_date(criterion.progression_date) if criterion.progression_date else 'an earlier scan'}; "
            f"{name} is not re-graded after progression."
        )
    text = f"{capitalised(reading(tp))} by {name}"
    burden = burden_text(tp)
    if burden:
        text += f": {burden}"
    if tp.new_lesions == "present":
        text += "; new lesions present"
    return text + "."


def _differing_sentence(
    assessment: PatientAssessment, scan_date: dt.date, primary: CriterionAssessment, tp: TimepointResponse | None
) -> str:
    """``iRECIST reads unconfirmed progressive disease (iUPD); irRC reads stable disease (irSD).``"""
    reference = response_class(tp) if tp is not None else "progression"
    readings: dict[str, list[str]] = {}
    for criterion in assessment.criteria:
        other = criterion.at(scan_date)
        if criterion is primary or other is None or response_class(other) == reference:
            continue
        readings.setdefault(reading(other), []).append(codes.criterion_display(criterion.criterion))
    if not readings:
        return ""
    parts = [
        f"{' and '.join(names) if len(names) < 3 else ', '.join(names)} {'read' if len(names) > 1 else 'reads'} {words}"
        for words, names in readings.items()
    ]
    return "; ".join(parts) + "."  # starts with a criterion's name, spelt as it is (irRC, iRECIST)


def _short_title(definition_code: str) -> str:
    return codes.definition_display(definition_code).split(" (")[0]


def alert_phrase(finding: Finding, assessment: PatientAssessment, scan_date: dt.date) -> str:
    """An active alert in a few plain words (the Flag and the card carry the detail)."""
    code = finding.code
    if code == "hyperprogression":
        return (
            f"hyperprogressive disease ({_short_title(finding.key)} definition met)"
            if finding.key
            else ("hyperprogressive disease")
        )
    if code == "fast-progression":
        return f"fast progression ({_short_title(finding.key)})" if finding.key else "fast progression"
    if code == "early-death":
        return "early death from progression"
    if code == "kinetics-acceleration":
        return "tumour growth accelerated on treatment without RECIST progression"
    if code == "confirmation-due":
        grouped: dict[str, list[str]] = {}
        for window in open_windows(assessment.criteria, scan_date):
            grouped.setdefault(window_text(window), []).append(codes.criterion_display(window.criterion))
        windows = "; ".join(f"{', '.join(names)} {when}" for when, names in grouped.items())
        return f"confirmation scan due ({windows})" if windows else "confirmation scan due"
    if code == "pseudoprogression":
        anchor = iso_date(finding.key)
        return (
            f"pseudoprogression (the unconfirmed progression of {format_date(anchor)} was not confirmed)"
            if anchor
            else "pseudoprogression"
        )
    if code == "dissociated-response":
        return "dissociated response: consider local therapy of the growing lesions and confirmation imaging"
    if code == "abscopal-response":
        return "possible abscopal response of untreated lesions after local therapy"
    if code == "irae":
        urgent = "urgent: " if finding.severity == "critical" else ""
        return f"{urgent}findings consistent with an immune-related {finding.key.replace('-', ' ')}"
    if code == "sarcoid-like-reaction":
        return SARCOID_WORDING  # verbatim (kinetics spec §5.3 Q1)
    if code == "hpd-not-evaluable":
        return "hyperprogression could not be assessed"
    return codes.alert_display(code).lower()


PATTERN_PHRASES: Mapping[str, str] = {
    "durable-response": "durable response by {criteria}",
    "late-response-after-icpd": "response after confirmed progression (iRECIST; the progression stands)",
}
"""Findings recorded without an alert that the report shows where they hold (issue 15); ``{criteria}`` lists the
criteria the finding was found by (its key)."""


def _pattern_phrases(assessment: PatientAssessment, scan_date: dt.date) -> list[str]:
    by_code: dict[str, list[str]] = {}
    for finding in assessment.findings:
        if finding.code not in PATTERN_PHRASES or finding.alert or finding.scan_date > scan_date:
            continue
        names = by_code.setdefault(finding.code, [])
        if finding.key and finding.key in codes.RESPONSE_CRITERIA:
            names.append(codes.criterion_display(finding.key))
    return [
        PATTERN_PHRASES[code].format(criteria=" and ".join(dict.fromkeys(names)) or "the criteria")
        for code, names in by_code.items()
    ]


def impression(
    assessment: PatientAssessment, scan_date: dt.date, alerts: Sequence[AlertState], primary: str = "iRECIST"
) -> str:
    """The first paragraph, at most :data:`IMPRESSION_MAX` characters."""
    chosen = primary_criterion(assessment, scan_date, primary)
    head = "Impression: "
    if chosen is None:
        return head + "No response criterion could be evaluated at this scan."
    criterion, tp = chosen
    first = _primary_sentence(criterion, tp)
    differing = _differing_sentence(assessment, scan_date, criterion, tp)
    phrases = [alert_phrase(a.finding, assessment, scan_date) for a in alerts]
    phrases = list(dict.fromkeys(phrases))
    alert_text = f"{'Alert' if len(phrases) == 1 else 'Alerts'}: {'; '.join(phrases)}." if phrases else ""
    patterns = _pattern_phrases(assessment, scan_date)
    pattern_text = capitalised("; ".join(patterns)) + "." if patterns else ""
    parts = [first, differing, alert_text, pattern_text]
    text = head + " ".join(p for p in parts if p)
    if len(text) > IMPRESSION_MAX and differing:
        parts[1] = "Other criteria read differently (below)."
        text = head + " ".join(p for p in parts if p)
    if len(text) > IMPRESSION_MAX:
        text = text[: IMPRESSION_MAX - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


def _bidimensional_only(assessment: PatientAssessment) -> bool:
    """Lymphoma and neuro criteria measure products: show both axes when no RECIST-family criterion applies."""
    return not any(c.criterion in ("RECIST-1.1", "iRECIST") for c in assessment.criteria)


def _cell(cell: Mapping[str, Any] | None, both_axes: bool) -> str:
    if not cell:
        return "—"
    status = cell.get("status")
    ld, sa = _decimal(cell.get("long_axis_mm")), _decimal(cell.get("short_axis_mm"))
    if status == "absent":
        text = "disappeared"
    elif status == "too-small":
        text = "too small"
    elif status == "not-assessed":
        text = "not assessed"
    elif both_axes and ld is not None and sa is not None:
        text = f"{format_number(ld)} × {format_number(sa)}"
    elif (axis := _decimal(cell.get("recist_axis_mm"))) is not None:
        text = format_number(axis)  # the axis the core chose (rules.facts.recist_axis_mm)
    elif ld is not None or sa is not None:
        text = format_number(ld if ld is not None else sa)
    elif cell.get("nontarget_status"):
        text = str(cell["nontarget_status"]).replace("-", " ")
    else:
        text = "present"
    suv = _decimal(cell.get("suv_max"))
    return f"{text} (SUVmax {format_number(suv)})" if suv is not None else text


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


_ROLE_WORDS = {"target": "target", "non-target": "non-target", "new": "new"}


@dataclass(frozen=True)
class LesionTable:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    more: int = 0
    """Lesions left out (the full table is in the details)."""

    def plain(self) -> str:
        widths = [max(len(r[i]) for r in (self.header, *self.rows)) for i in range(len(self.header))]
        lines = [self.caption]
        lines += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in (self.header, *self.rows)]
        if self.more > 0:
            lines.append(self.more_text())
        return "\n".join(lines)

    def more_text(self) -> str:
        return f"… and {self.more} more lesions (full table in the report details)."


def lesion_table(assessment: PatientAssessment, scan_date: dt.date) -> LesionTable | None:
    """The short table: lesion, site and kind, then baseline, previous follow-up and this scan."""
    previous = [d for d in assessment.followup_dates if d < scan_date]
    dates = [d for d in (assessment.baseline_date, max(previous) if previous else None, scan_date) if d is not None]
    both_axes = _bidimensional_only(assessment)
    rows = []
    for index, row in enumerate(assessment.lesion_table, start=1):
        cells: Mapping[str, Any] = row.get("cells") or {}
        first_seen = iso_date(str(row.get("first_seen") or ""))
        if first_seen is not None and first_seen > scan_date:
            continue
        label = str(row.get("lesion") or "")
        if not label or "…" in label:  # no reader label: never our internal identifier
            label = f"Lesion {index}"
        nodal = bool(row.get("nodal"))
        kind = _ROLE_WORDS.get(str(row.get("role")), str(row.get("role") or ""))
        site = site_display(row.get("organ"))
        if nodal and "node" not in site.lower():
            kind += " node"
        rows.append((label, f"{site}, {kind}", *(_cell(cells.get(d.isoformat()), both_axes) for d in dates)))
    if not rows:
        return None
    unit = "mm, long × short axis" if both_axes else "mm; lymph nodes: short axis"
    return LesionTable(
        f"Lesions ({unit}):",
        ("Lesion", "Site", *(format_date(d) for d in dates)),
        tuple(rows[:TABLE_MAX_ROWS]),
        max(0, len(rows) - TABLE_MAX_ROWS),
    )


def criterion_line(criterion: CriterionAssessment, scan_date: dt.date, stated: str | None = None) -> str | None:
    """``RECIST 1.1: partial response; sum of diameters 63 mm, −30 % from baseline (90 mm).`` The burden is left out
    when it is ``stated`` already (the primary criterion's, in the impression); new lesions are in the table."""
    name = codes.criterion_display(criterion.criterion)
    if criterion.provisional:
        name += " (provisional)"
    tp = criterion.at(scan_date)
    if tp is None:
        if criterion.progression_date is not None and criterion.progression_date <= scan_date:
            return f"{name}: progression since {format_date(criterion.progression_date)}; not re-graded."
        return None
    text = f"{name}: {reading(tp)}"
    burden = burden_text(tp)
    if burden and burden != stated:
        text += f"; {burden}"
    window = window_at(tp)
    if window is not None:
        text += f"; confirm {window_text(window)}"
    return text + "."


def kinetics_line(assessment: PatientAssessment, scan_date: dt.date) -> str | None:
    """At the first on-treatment scan (and whenever a definition is met): the growth rates and what they mean."""
    kinetics = assessment.kinetics
    if kinetics is None or kinetics.e2_date is None or kinetics.e2_date > scan_date:
        return None
    met = [_short_title(d.code) for d in kinetics.definitions if d.status == "met"]
    if kinetics.e2_date != scan_date and not met:
        return None
    rates = []
    if kinetics.tgr_reference is not None:
        rates.append(f"{format_signed(round(kinetics.tgr_reference, 1), '%/month')} before treatment")
    if kinetics.tgr_experimental is not None:
        rates.append(f"{format_signed(round(kinetics.tgr_experimental, 1), '%/month')} on treatment")
    text = "Growth kinetics: tumour growth rate " + (", ".join(rates) if rates else "not measurable") + "."
    primary = next((f for f in assessment.findings if f.code == "hpd-not-evaluable"), None)
    if met:
        text += f" Hyperprogression or fast-progression definitions met: {', '.join(met)}."
    elif primary is not None:
        text += " Hyperprogression could not be assessed."
    else:
        text += " No hyperprogression definition met."
    return text


def _footer(assessment: PatientAssessment, scan_date: dt.date) -> str | None:
    parts = []
    if assessment.treatment_start is not None:
        days = (scan_date - assessment.treatment_start).days
        parts.append(f"Immunotherapy started {format_date(assessment.treatment_start)} (day {days} at this scan).")
    assumed = any(
        (cells.get(scan_date.isoformat()) or {}).get("tracer_assumed")
        for cells in (row.get("cells") or {} for row in assessment.lesion_table)
    )
    if assumed:
        parts.append("PET tracer not stated: FDG assumed.")
    return " ".join(parts) or None


# ---------------------------------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------------------------------
def impression_of(plain: str) -> str:
    """The impression of a rendered pre-fill, without its label: the DiagnosticReport ``conclusion``."""
    return plain.split("\n\n", 1)[0].removeprefix("Impression: ").strip()


def render_prefill(
    assessment: PatientAssessment,
    scan_date: dt.date,
    alerts: Sequence[AlertState] = (),
    *,
    primary: str = "iRECIST",
    signatures: Sequence[str] = (),
) -> tuple[str, str]:
    """The "Response assessment" section for the follow-up at ``scan_date``, as ``(plain_text, html)``.

    ``alerts`` are the alerts that hold at this scan (active ones are stated in the impression); ``primary`` is
    ``IMMUNORAD_PRIMARY_CRITERION``."""
    if not isinstance(scan_date, dt.date):
        raise TypeError(f"scan_date must be a datetime.date, not {type(scan_date).__name__}")
    active = [a for a in alerts if a.status == "active" and a.finding.alert]
    first = impression(assessment, scan_date, active, primary)
    table = lesion_table(assessment, scan_date)
    chosen = primary_criterion(assessment, scan_date, primary)
    stated = burden_text(chosen[1]) if chosen is not None and chosen[1] is not None else None
    criteria = [line for line in (criterion_line(c, scan_date, stated) for c in assessment.criteria) if line]
    # Contract §9.6: a non-FDG tracer's uptake at this scan, one line beside the criteria (FDG is read by them).
    criteria += [tracer_uptake_line(u) for u in assessment.tracer_uptake if u.scan_date == scan_date]
    closing = [line for line in (kinetics_line(assessment, scan_date), _footer(assessment, scan_date)) if line]
    paragraphs = [first]
    if table is not None:
        paragraphs.append(table.plain())
    if criteria:
        paragraphs.append("\n".join(criteria))
    if closing:
        paragraphs.append("\n".join(closing))
    plain = "\n\n".join(paragraphs) + "\n"
    return plain, _html(first, table, criteria, closing, details_html(assessment, scan_date, alerts, signatures))


def _html(first: str, table: LesionTable | None, criteria: list[str], closing: list[str], details: str) -> str:
    e = html.escape
    out = ['<section class="immunorad-response-assessment">', f"<h2>{e(TITLE)}</h2>", f"<p>{e(first)}</p>"]
    if table is not None:
        out.append(f"<p>{e(table.caption)}</p>")
        out.append("<table>")
        out.append("<thead><tr>" + "".join(f'<th scope="col">{e(h)}</th>' for h in table.header) + "</tr></thead>")
        out.append("<tbody>")
        for row in table.rows:
            out.append(
                "<tr>" + f'<th scope="row">{e(row[0])}</th>' + "".join(f"<td>{e(c)}</td>" for c in row[1:]) + "</tr>"
            )
        out.append("</tbody></table>")
        if table.more > 0:
            out.append(f"<p>{e(table.more_text())}</p>")
    if criteria:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in criteria) + "</ul>")
    out += [f"<p>{e(line)}</p>" for line in closing]
    out.append("<details><summary>Rule traces, not-evaluable reasons and all measurements</summary>")
    out.append(details)
    out.append("</details>")
    out.append("</section>")
    return "\n".join(out) + "\n"
