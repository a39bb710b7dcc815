"""The full "Response assessment" detail behind the pre-fill: what the HTML form keeps in its collapsible
``<details>`` (contract §9.4: rule traces and not-evaluable reasons live there and in the Observations' notes).

One follow-up timepoint: the lesion table with both axes at every scan up to it, each criterion's category with
the numbers and criterion-specific reasoning, growth kinetics with every hyperprogression definition and its
reason, every alert with its rule and source, baseline biomarkers and warnings. Also the number wording shared
with the short pre-fill (:mod:`fhir_mappings.prefill`) and the DiagnosticReport conclusion. Every value is
escaped in the HTML. It never names the patient: :class:`rules.results.PatientAssessment` carries no identifier.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from fhir_mappings import codes
from fhir_mappings.alerts import AlertState
from fhir_mappings.site_words import SNOMED_SITE_WORDS
from rules.codes import normalise_code, site_for
from rules.results import CriterionAssessment, KineticsResult, PatientAssessment, TimepointResponse, round2

if TYPE_CHECKING:  # pragma: no cover - import for type checkers only
    from rules.tracer_uptake import TracerUptake

MINUS = "\u2212"
TITLE = "Response assessment"


# ---------------------------------------------------------------------------------------------------------------
# Number wording shared with the DiagnosticReport conclusion
# ---------------------------------------------------------------------------------------------------------------
def format_number(value: Decimal | Fraction | float | int | None, places: int | None = None) -> str:
    """A number as a person writes it: ``63``, ``-35.56`` → ``−35.56`` (typographic minus), trailing zeros of an
    exact Decimal dropped unless ``places`` is given."""
    if value is None:
        return "n/a"
    if isinstance(value, Fraction):
        value = round2(value)
        places = 2 if places is None else places
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, int):
        value = Decimal(value)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
        text = format(value, "f")
    else:
        text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return text.replace("-", MINUS)


def format_date(day: dt.date) -> str:
    """``11 Mar 2024``: the one date format of the report (contract §9.4), unambiguous in every locale."""
    return f"{day.day} {day:%b} {day.year}"


ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def dates_in_words(text: str) -> str:
    """Every ISO date in ``text`` (rule traces write them) in the report's one format."""

    def one(match: re.Match[str]) -> str:
        try:
            return format_date(dt.date(int(match[1]), int(match[2]), int(match[3])))
        except ValueError:
            return match[0]

    return ISO_DATE.sub(one, text)


def format_signed(value: Decimal | Fraction | float | int | None, unit: str, places: int | None = None) -> str:
    """``+5.17 %``, ``−27 mm``, ``0.00 %``; ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    text = format_number(value, places)
    sign = "+" if not text.startswith(MINUS) and Decimal(text.replace(MINUS, "-")) != 0 else ""
    return f"{sign}{text} {unit}".rstrip()


def format_percent(value: Fraction | Decimal | float | None) -> str:
    return format_signed(value, "%", 2)


def format_length(value: Decimal | float | int | None, unit: str = "mm") -> str:
    return "n/a" if value is None else f"{format_number(value)} {unit_words(unit)}"


def unit_words(unit: str) -> str:
    code = codes.ucum(unit)
    return codes.UCUM_UNITS[code] if code else unit


def burden_name(tp: TimepointResponse) -> str:
    """What the criterion's ``sum_mm`` is: SoD in mm, SPD in mm²."""
    return "Sum of products of diameters" if codes.ucum(tp.sum_unit) == "mm2" else "Sum of diameters"


def criterion_headline(tp: TimepointResponse) -> str:
    """``PR (−30.00 % from baseline)`` — the category and the number that decided it, for the conclusion."""
    details = []
    progression = codes.DISEASE_STATUS_BY_CATEGORY.get(tp.category) is codes.SCT_WORSENED or (
        tp.category in codes.UNCONFIRMED_PROGRESSION_CATEGORIES
    )
    if progression and tp.percent_from_nadir is not None:
        details.append(f"{format_percent(tp.percent_from_nadir)} from nadir")
    elif tp.percent_from_baseline is not None:
        details.append(f"{format_percent(tp.percent_from_baseline)} from baseline")
    if tp.confirmed is True:
        details.append("confirmed")
    elif tp.confirmed is False:
        details.append("unconfirmed")
    return f"{tp.category} ({', '.join(details)})" if details else tp.category


# ---------------------------------------------------------------------------------------------------------------
# Document model: a few block types rendered twice
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Heading:
    text: str


@dataclass(frozen=True)
class _Paragraph:
    text: str


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Item:
    text: str
    sub: tuple[str, ...] = ()


@dataclass(frozen=True)
class _List:
    items: tuple[_Item, ...]


_Block = _Heading | _Paragraph | _Table | _List


def details_html(
    assessment: PatientAssessment,
    scan_date: dt.date,
    alerts: Sequence[AlertState] = (),
    signatures: Sequence[str] = (),
) -> str:
    """The detail sections for the follow-up at ``scan_date`` as HTML blocks (no wrapper element)."""
    if not isinstance(scan_date, dt.date):
        raise TypeError(f"scan_date must be a datetime.date, not {type(scan_date).__name__}")
    return _html(_blocks(assessment, scan_date, alerts, signatures))


def _blocks(
    assessment: PatientAssessment, scan_date: dt.date, alerts: Sequence[AlertState], signatures: Sequence[str] = ()
) -> list[_Block]:
    blocks: list[_Block] = [_Paragraph(_intro(assessment, scan_date))]
    table = _lesion_table(assessment, scan_date)
    if table is not None:
        blocks += [
            _Heading("Lesion measurements"),
            _Paragraph(
                "Long axis × short axis in mm (nodes: the short axis is the RECIST diameter); "
                "non-target lesions by their qualitative status."
            ),
            table,
        ]
    items = [item for c in assessment.criteria if (item := _criterion_item(c, scan_date)) is not None]
    blocks.append(_Heading("Response by criterion"))
    blocks.append(
        _List(tuple(items)) if items else _Paragraph("No response criterion could be evaluated at this scan.")
    )
    if assessment.kinetics is not None:
        blocks += [_Heading("Tumour growth kinetics"), *_kinetics_blocks(assessment.kinetics)]
    alert_items = _alert_items(alerts)
    if alert_items:
        blocks += [_Heading("Alerts"), _List(tuple(alert_items))]
    biomarker_items = _biomarker_items(assessment)
    if biomarker_items:
        blocks += [
            _Heading("Baseline prognostic biomarkers"),
            _Paragraph("Cut-offs are cohort-derived (retrospective); informative only, never an alert."),
            _List(tuple(biomarker_items)),
        ]
    uptake = [u for u in assessment.tracer_uptake if u.scan_date <= scan_date]
    if uptake:
        blocks += [
            _Heading("Tracer-specific uptake"),
            _Paragraph(
                "Uptake of non-FDG tracers per lesion and its spread across lesions; informational, no validated "
                "cut-off exists and no FDG criterion reads these values."
            ),
            _List(tuple(_uptake_item(u) for u in uptake)),
        ]
    if signatures:
        # Beside the biomarkers: the multilevel integration of imaging signatures with the clinical scores.
        blocks += [
            _Heading("Imaging signatures"),
            _Paragraph("Scores per lesion; a provisional signature is not validated and not for clinical decisions."),
            _List(tuple(_Item(line) for line in signatures)),
        ]
    warnings = _warnings(assessment, scan_date)
    if warnings:
        blocks += [_Heading("Warnings"), _List(tuple(_Item(w) for w in warnings))]
    return blocks


def _intro(assessment: PatientAssessment, scan_date: dt.date) -> str:
    parts = [f"Follow-up imaging of {scan_date.isoformat()}"]
    if assessment.baseline_date is not None:
        parts.append(f"compared with the baseline of {assessment.baseline_date.isoformat()}")
    text = " ".join(parts)
    if assessment.treatment_start is not None:
        days = (scan_date - assessment.treatment_start).days
        text += f"; immunotherapy started {assessment.treatment_start.isoformat()} (day {days} at this scan)"
    previous = [d for d in assessment.followup_dates if d < scan_date]
    if previous:
        text += f"; previous follow-up {max(previous).isoformat()}"
    return text + "."


# -- lesion table ------------------------------------------------------------------------------------------------
def _lesion_table(assessment: PatientAssessment, scan_date: dt.date) -> _Table | None:
    if not assessment.lesion_table:
        return None
    dates = sorted(
        {d for d in (assessment.baseline_date, *assessment.followup_dates) if d is not None and d <= scan_date}
    )
    if not dates:
        return None
    rows = []
    for row in assessment.lesion_table:
        first_seen = iso_date(row.get("first_seen"))
        if first_seen is not None and first_seen > scan_date:
            continue
        cells: Mapping[str, Any] = row.get("cells") or {}
        role = str(row.get("role") or "")
        if row.get("nodal"):
            role += " (node)"
        rows.append(
            (
                str(row.get("lesion") or "?"),
                role,
                site_display(row.get("organ")),
                *(lesion_cell_text(cells.get(d.isoformat())) for d in dates),
            )
        )
    if not rows:
        return None
    return _Table(("Lesion", "Role", "Site", *(d.isoformat() for d in dates)), tuple(rows))


def iso_date(value: Any) -> dt.date | None:
    """A date as this package stores it in results (ISO ``YYYY-MM-DD``), or ``None``; a ``date`` passes through.
    (FHIR input dates are read by ``inbound.parse_date``.)"""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def site_display(organ: str | None) -> str:
    """A finding site in words: a SNOMED CT code by its name (``39607008`` → ``Lung``; the project's site table,
    then DICOM's code meanings in :mod:`fhir_mappings.site_words`), free text as the reader wrote it, and an
    unknown code as "site not named" — never a bare number (contract §9.4)."""
    if not organ:
        return "—"
    text = str(organ).strip()
    code = normalise_code(text)
    site = site_for(text)
    if site is not None and code == site.coding.code:
        return site.coding.display
    if code is not None and code in SNOMED_SITE_WORDS:
        return sentence_case(SNOMED_SITE_WORDS[code])
    if code is not None and (code.isdigit() or code != text):
        return "site not named"
    return site.coding.display if site is not None else text


def sentence_case(words: str) -> str:
    """DICOM code meanings are title case (``Apex of Lung``): a capital first letter, the rest as in a sentence
    (acronyms and tokens with digits kept)."""
    parts = words.split(" ")
    out = [parts[0][:1].upper() + parts[0][1:]]
    for part in parts[1:]:
        keep = part.isupper() or any(ch.isdigit() for ch in part)
        out.append(part if keep else part.lower())
    return " ".join(out)


def lesion_cell_text(cell: Mapping[str, Any] | None) -> str:
    """One lesion at one scan in a radiologist's shorthand: ``28 × 21`` (mm), ``disappeared``, ``too small to
    measure``, ``not assessed``, a non-target status; PET values appended. Accepts stored (JSON) cells, whose
    numbers are strings, as well as the assessment's own."""
    if not cell:
        return "—"
    status = cell.get("status")
    if status == "absent":
        text = "disappeared"
    elif status == "too-small":
        text = "too small to measure"
    elif status == "not-assessed":
        text = "not assessed"
    else:
        ld, sa = _decimal(cell.get("long_axis_mm")), _decimal(cell.get("short_axis_mm"))
        if ld is not None and sa is not None:
            text = f"{format_number(ld)} × {format_number(sa)}"
        elif ld is not None or sa is not None:
            text = format_number(ld if ld is not None else sa)
        elif cell.get("nontarget_status"):
            text = str(cell["nontarget_status"]).replace("-", " ")
        else:
            text = "present"
    if cell.get("nontarget_change"):
        text += f" ({cell['nontarget_change']})"
    pet = []
    if _decimal(cell.get("suv_max")) is not None:
        pet.append(f"SUVmax {format_number(_decimal(cell['suv_max']))}")
    if _decimal(cell.get("sul_peak")) is not None:
        pet.append(f"SULpeak {format_number(_decimal(cell['sul_peak']))}")
    return f"{text}; {', '.join(pet)}" if pet else text


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


# -- criteria ----------------------------------------------------------------------------------------------------
def is_latest_timepoint(criterion: CriterionAssessment, scan_date: dt.date) -> bool:
    """True when ``scan_date`` is the criterion's last graded timepoint: the one that carries its best overall
    response (a best response may rest on later scans, so earlier reports do not show it)."""
    return bool(criterion.timepoints) and max(tp.scan_date for tp in criterion.timepoints) == scan_date


def _criterion_item(criterion: CriterionAssessment, scan_date: dt.date) -> _Item | None:
    name = codes.criterion_display(criterion.criterion)
    tp = criterion.at(scan_date)
    if tp is None:
        if criterion.progression_date is not None and criterion.progression_date <= scan_date:
            return _Item(
                f"{name}: not graded after progression dated {criterion.progression_date.isoformat()} "
                f"(the criterion ends at progression)."
            )
        return None
    headline = f"{name}: {codes.category_words(tp.category)}."
    if criterion.provisional:
        headline += " Provisional: this criterion rests on rules the specification marks unverified."
    sub = []
    if tp.sum_mm is not None:
        numbers = [f"{burden_name(tp)} {format_length(tp.sum_mm, tp.sum_unit)}"]
        if tp.baseline_sum is not None:
            numbers.append(
                f"baseline {format_length(tp.baseline_sum, tp.sum_unit)} ({format_percent(tp.percent_from_baseline)})"
            )
        elif tp.percent_from_baseline is not None:
            numbers.append(f"{format_percent(tp.percent_from_baseline)} from baseline")
        if tp.nadir_sum is not None:
            nadir = f"nadir {format_length(tp.nadir_sum, tp.sum_unit)} ({format_percent(tp.percent_from_nadir)}"
            if tp.absolute_from_nadir is not None:
                nadir += f", {format_signed(tp.absolute_from_nadir, unit_words(tp.sum_unit))}"
            numbers.append(nadir + ")")
        sub.append("; ".join(numbers) + ".")
    lesions = []
    if tp.target_response:
        lesions.append(f"Target lesions: {codes.category_words(tp.target_response)}")
    if tp.nontarget_response:
        lesions.append(f"non-target lesions: {codes.category_words(tp.nontarget_response)}")
    if tp.new_lesions:
        lesions.append(f"new lesions: {tp.new_lesions}")
    if lesions:
        sub.append(", ".join(lesions) + ".")
    extra_lines, handled = _criterion_extra_lines(tp)
    if tp.confirmed is not None and "episode" not in handled:
        sub.append(f"{tp.category} is {'confirmed' if tp.confirmed else 'not yet confirmed'}.")
    sub += extra_lines
    if tp.progression_date is not None:
        sub.append(f"Date of progression: {tp.progression_date.isoformat()}.")
    for key, value in sorted(tp.extra.items()):
        if key in handled:
            continue
        line = _extra_line(key, value)
        if line is not None:
            sub.append(line)
    if is_latest_timepoint(criterion, scan_date):
        if criterion.best_response is not None:
            sub.append(
                f"Best overall response so far: {criterion.best_response.category} ({criterion.best_response.because})."
            )
        if criterion.best_response_confirmed is not None:
            sub.append(
                f"Best overall response with confirmation: {criterion.best_response_confirmed.category} "
                f"({criterion.best_response_confirmed.because})."
            )
    return _Item(headline, tuple(sub))


# -- criterion-specific values (TimepointResponse.extra) as sentences ------------------------------------------
# The rules put what is particular to a criterion in ``extra``: the iRECIST episode and its confirmation window,
# the new-lesion sums (NLT sum of measures; new measurable lesions in an irRECIST/irRC burden), itRECIST's
# injected and non-injected series. Known keys are worded below; any other scalar is listed by its key.

_IUPD_CAUSES = {"target": "target lesions", "non-target": "non-target lesions", "new-lesions": "new lesions"}
_CONFIRMATION_WORDS = {
    "target-increment": "a further increase of the target sum over its value at the iUPD",
    "target-now-progressed": "progression of the target lesions",
    "nontarget-further-increase": "a further increase of the non-target disease",
    "nontarget-now-progressed": "progression of the non-target lesions",
    "additional-new-lesion": "an additional new lesion",
    "nlt-increment": "an increase of the new-lesion (NLT) sum of measures over its value at the iUPD",
    "nlnt-increase": "an increase of the new non-measurable lesions (NLNT)",
    "new-lesions-now-progressed": "progression of the new lesions",
}
_BOOKKEEPING = frozenset({"lesion_classes", "raw_category", "days_since_iupd", "cause_codes"})
"""Keys kept for audits and the rule trace, not for the report text."""


def _words_list(names: Any) -> str:
    items = [str(n) for n in (names or ())]
    return ", ".join(items) if items else "none"


def _criterion_extra_lines(tp: TimepointResponse) -> tuple[list[str], set[str]]:
    """Sentences for the ``extra`` keys this module knows, and the set of keys it has worded (or chose to omit)."""
    extra = tp.extra
    lines: list[str] = []
    handled: set[str] = {k for k in extra if k in _BOOKKEEPING}
    if "early_scan_disregarded" in extra:
        handled.add("early_scan_disregarded")
        if extra["early_scan_disregarded"]:
            lines.append("This scan is too early after the iUPD to confirm it: disregarded for confirmation.")
    if "episode" in extra:
        handled |= {"episode", "confirmation_window", "confirmation", "after_icpd_response", "reset_from_iupd"}
        lines += _irecist_episode_lines(tp)
    if "nlt" in extra or "nlt_som_mm" in extra:
        handled |= {"nlt", "nlnt", "nlt_som_mm"}
        line = _new_lesion_target_line(tp)
        if line:
            lines.append(line)
    if "new_lesions_in_burden" in extra or "new_lesion_sum" in extra:
        handled |= {
            "index_sum",
            "new_lesion_sum",
            "new_lesions_in_burden",
            "new_lesions_outside_burden",
            "reader_review",
            "raw_category",
        }
        lines += _burden_lines(tp)
    series = [key for key in ("injected", "noninjected") if f"{key}_response" in extra]
    if series:
        for key in series:
            handled |= {k for k in extra if k.startswith(f"{key}_")}
            line = _series_line(tp, key)
            if line:
                lines.append(line)
        handled.add("reclassified")
        if extra.get("reclassified"):
            lines.append(f"Re-classified as injected from this visit: {_words_list(extra['reclassified'])}.")
    return lines, handled


def _irecist_episode_lines(tp: TimepointResponse) -> list[str]:
    extra = tp.extra
    episode = extra.get("episode") or {}
    window = extra.get("confirmation_window") or {}
    lines = []
    anchor = iso_date(episode.get("anchor_date"))
    if anchor is not None:
        causes = [_IUPD_CAUSES.get(c, str(c)) for c in episode.get("causes") or ()]
        because = f" (caused by {', '.join(causes)})" if causes else ""
        at_anchor = []
        if episode.get("anchor_sum_mm") is not None:
            at_anchor.append(f"target sum {format_length(_decimal(episode['anchor_sum_mm']))}")
        if episode.get("anchor_nlt_som_mm") is not None:
            at_anchor.append(f"NLT sum of measures {format_length(_decimal(episode['anchor_nlt_som_mm']))}")
        reference = f"; at the iUPD: {', '.join(at_anchor)}" if at_anchor else ""
        status = episode.get("status")
        if status == "confirmed":
            how = [_CONFIRMATION_WORDS.get(c, str(c)) for c in extra.get("confirmation") or ()]
            if how:
                days = (tp.scan_date - anchor).days
                lines.append(
                    f"Progression confirmed (iCPD): the iUPD of {anchor.isoformat()}{because} is confirmed "
                    f"on this scan, {days} days later, by {' and '.join(how)}{reference}."
                )
            else:
                lines.append(f"Progression confirmed (iCPD) since the iUPD of {anchor.isoformat()}{because}.")
        else:
            if anchor == tp.scan_date:  # the sums at the iUPD are this scan's own, stated above and below
                lines.append(f"Unconfirmed progression (iUPD) on this scan{because}.")
            else:
                lines.append(
                    f"Unconfirmed progression (iUPD) since {anchor.isoformat()}{because}, not yet confirmed{reference}."
                )
            start, end = iso_date(window.get("start")), iso_date(window.get("end"))
            if start is not None and end is not None:
                weeks = f" ({_weeks(start - anchor)} to {_weeks(end - anchor)} weeks after the iUPD)"
                lines.append(
                    f"Confirmation window: {start.isoformat()} to {end.isoformat()}{weeks}: the next "
                    f"assessment in this window confirms progression (iCPD) or not."
                )
    if extra.get("after_icpd_response"):
        lines.append(
            f"After confirmed progression the category stays iCPD "
            f"(this scan alone would read {extra['after_icpd_response']})."
        )
    if extra.get("reset_from_iupd"):
        lines.append(f"The iUPD of {extra['reset_from_iupd']} is reset: progression was not confirmed.")
    return lines


def _weeks(delta: dt.timedelta) -> str:
    return format_number(Decimal(delta.days) / 7, None if delta.days % 7 == 0 else 1)


def _new_lesion_target_line(tp: TimepointResponse) -> str | None:
    """iRECIST new lesions: measurable ones (NLT) with their sum of measures, and non-measurable ones (NLNT)."""
    extra = tp.extra
    nlt, nlnt = list(extra.get("nlt") or ()), list(extra.get("nlnt") or ())
    som = _decimal(extra.get("nlt_som_mm"))
    if not nlt and not nlnt and som is None:
        return None
    text = f"New lesions — measurable (NLT): {_words_list(nlt)}"
    if som is not None:
        text += f", sum of measures {format_length(som)}"
        anchor_som = _decimal((extra.get("episode") or {}).get("anchor_nlt_som_mm"))
        if anchor_som is not None and (extra.get("episode") or {}).get("anchor_date") != tp.scan_date.isoformat():
            text += f" ({format_signed(som - anchor_som, 'mm')} from {format_length(anchor_som)} at the iUPD)"
    return text + f"; non-measurable (NLNT): {_words_list(nlnt)}."


def _burden_lines(tp: TimepointResponse) -> list[str]:
    """irRECIST / irRC / imRECIST: new measurable lesions are part of the tumour burden."""
    extra = tp.extra
    unit = tp.sum_unit
    lines = []
    inside = list(extra.get("new_lesions_in_burden") or ())
    index_sum, new_sum = _decimal(extra.get("index_sum")), _decimal(extra.get("new_lesion_sum"))
    if inside:
        parts = []
        if index_sum is not None:
            parts.append(f"index lesions {format_length(index_sum, unit)}")
        parts.append(
            f"new measurable lesions {format_length(new_sum, unit) if new_sum is not None else 'n/a'} "
            f"({_words_list(inside)})"
        )
        lines.append(f"Tumour burden = {' + '.join(parts)}.")
    outside = list(extra.get("new_lesions_outside_burden") or ())
    if outside:
        lines.append(f"New lesions not in the burden (not measurable): {_words_list(outside)}.")
    raw = extra.get("raw_category")
    if raw and raw != tp.category:
        lines.append(f"Category from the burden alone: {raw}.")
    if extra.get("reader_review"):
        lines.append("Reader review needed (see warnings).")
    return lines


def _series_line(tp: TimepointResponse, key: str) -> str | None:
    """itRECIST: the injected and non-injected lesions, each assessed as its own series."""
    extra = tp.extra
    response = extra.get(f"{key}_response")
    if response is None:
        return None
    label = "Injected lesions" if key == "injected" else "Non-injected lesions"
    parts = [f"{label}: {codes.category_words(str(response))}"]
    total = _decimal(extra.get(f"{key}_sum_mm"))
    if total is not None:
        parts.append(f"sum {format_length(total)}")
    baseline = _decimal(extra.get(f"{key}_baseline_mm"))
    if baseline is not None:
        parts.append(
            f"baseline {format_length(baseline)} ({format_percent(extra.get(f'{key}_percent_from_baseline'))})"
        )
    nadir = _decimal(extra.get(f"{key}_nadir_mm"))
    if nadir is not None:
        text = f"nadir {format_length(nadir)} ({format_percent(extra.get(f'{key}_percent_from_nadir'))}"
        absolute = extra.get(f"{key}_absolute_from_nadir")
        if absolute is not None:
            text += f", {format_signed(_decimal(absolute), 'mm')}"
        parts.append(text + ")")
    progression = extra.get(f"{key}_progression_date")
    if progression is not None:
        parts.append(f"progression {progression.isoformat() if isinstance(progression, dt.date) else progression}")
    return "; ".join(parts) + "."


_ACRONYMS = {
    "iupd": "iUPD",
    "icpd": "iCPD",
    "nlt": "NLT",
    "nlnt": "NLNT",
    "sod": "SoD",
    "spd": "SPD",
    "tgr": "TGR",
    "tgk": "TGK",
    "suv": "SUV",
    "sul": "SUL",
    "pd": "PD",
    "som": "SOM",
    "ir": "IR",
}


def _extra_line(key: str, value: Any) -> str | None:
    """``iupd_confirmation_window`` = (d1, d2) → ``iUPD confirmation window: d1 to d2.``; a key ending in ``_mm``
    or naming a percentage puts the unit on the value."""
    text = _extra_text(value)
    if text is None:
        return None
    words = [w for w in re.split(r"[_\-\s]+", key.strip()) if w]
    unit = ""
    if words and words[-1].lower() in ("mm", "mm2") and isinstance(value, (Decimal, Fraction, int, float)):
        unit = " mm²" if words.pop().lower() == "mm2" else " mm"
    elif any(w.lower() in ("percent", "pct") for w in words) and isinstance(value, (Decimal, Fraction, int, float)):
        unit = " %"
    named = [_ACRONYMS.get(w.lower(), w) for w in words] or [key]
    if words and named[0] == words[0]:  # not an acronym: sentence case
        named[0] = named[0][:1].upper() + named[0][1:]
    return f"{' '.join(named)}: {text}{unit}."


def _extra_text(value: Any) -> str | None:
    """A criterion-specific value (e.g. the iUPD confirmation window) as words, or None if not a scalar."""
    if value is None or isinstance(value, (Mapping, set, frozenset)):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (Decimal, Fraction, int, float)):
        return format_number(value)
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, dt.date) for v in value):
            return f"{value[0].isoformat()} to {value[1].isoformat()}"
        parts = [_extra_text(v) for v in value]
        return ", ".join(p for p in parts if p is not None) or None
    return str(value)


# -- kinetics ----------------------------------------------------------------------------------------------------
def _kinetics_blocks(kinetics: KineticsResult) -> list[_Block]:
    scans = ", ".join(
        f"{label} {d.isoformat()}"
        for label, d in (("E0", kinetics.e0_date), ("E1", kinetics.e1_date), ("E2", kinetics.e2_date))
        if d is not None
    )
    blocks: list[_Block] = []
    if scans:
        blocks.append(
            _Paragraph(f"Scans used: {scans} (E0 before treatment, E1 baseline, E2 first on-treatment scan).")
        )

    def value(v: float | None, unit: str) -> str:
        return "not evaluable" if v is None else f"{format_number(round(v, 2), 2)} {unit}"

    items = [
        _Item(
            f"Tumour growth rate before treatment {value(kinetics.tgr_reference, '%/month')}, on treatment "
            f"{value(kinetics.tgr_experimental, '%/month')}; ratio {_plain_number(kinetics.tgr_ratio)}, "
            f"difference {_signed_or_ne(kinetics.tgr_difference, '%/month')}."
        ),
        _Item(
            f"Tumour growth kinetics before treatment {value(kinetics.tgk_reference, 'mm/month')}, on treatment "
            f"{value(kinetics.tgk_experimental, 'mm/month')}; ratio {_plain_number(kinetics.tgk_ratio)}."
        ),
    ]
    blocks.append(_List(tuple(items)))
    if kinetics.definitions:
        blocks.append(_Paragraph(_definitions_summary(kinetics)))
        blocks.append(_List(tuple(_definition_items(kinetics))))
    notes = [*kinetics.notes, *(f"flag {f}" for f in kinetics.flags)]
    if notes:
        blocks.append(_Paragraph("Notes: " + "; ".join(notes) + "."))
    return blocks


def _definitions_summary(kinetics: KineticsResult) -> str:
    """One sentence first: which hyperprogression / fast-progression definitions are met."""
    met = [codes.definition_display(d.code) for d in kinetics.definitions if d.status == "met"]
    not_evaluable = sum(1 for d in kinetics.definitions if d.status == "not-evaluable")
    total = len(kinetics.definitions)
    if met:
        text = f"Hyperprogression and fast-progression definitions: {len(met)} of {total} met ({'; '.join(met)})"
    else:
        text = f"Hyperprogression and fast-progression definitions: none of {total} met"
    if not_evaluable:
        text += f"; {not_evaluable} not evaluable"
    return text + "."


def _definition_items(kinetics: KineticsResult) -> list[_Item]:
    """Met and not-met definitions one by one with their numbers; not-evaluable ones grouped by shared reason
    (a missing pre-baseline scan makes most of them not evaluable for the same reason)."""
    items: list[_Item] = []
    grouped: dict[str, list[str]] = {}
    for d in kinetics.definitions:
        name = codes.definition_display(d.code) + (" (borderline)" if d.borderline else "")
        if d.status == "not-evaluable":
            grouped.setdefault(d.reason, []).append(name)
        else:
            items.append(_Item(f"{name}: {d.status.replace('-', ' ')} — {d.reason}"))
    for reason, names in grouped.items():
        if len(names) == 1:
            items.append(_Item(f"{names[0]}: not evaluable — {reason}"))
        else:
            items.append(_Item(f"Not evaluable — {reason}", tuple(f"{n}." for n in names)))
    return items


def _plain_number(v: float | None) -> str:
    return "not evaluable" if v is None else format_number(round(v, 2), 2)


def _signed_or_ne(v: float | None, unit: str) -> str:
    return "not evaluable" if v is None else format_signed(round(v, 2), unit, 2)


# -- alerts, biomarkers, warnings --------------------------------------------------------------------------------
def _alert_items(alerts: Sequence[AlertState]) -> list[_Item]:
    items = []
    for alert in alerts:
        finding = alert.finding
        if not finding.alert or alert.status == "entered-in-error":
            continue
        indicator = codes.alert_indicator(finding.code, finding.severity)
        state = "" if alert.status == "active" else f" ({alert.status})"
        sub = [line for line in finding.detail.splitlines() if line.strip()]
        if finding.window_end is not None:
            sub.append(f"Window ends {finding.window_end.isoformat()}.")
        sub.append(f"Rule {finding.rule}; source: {finding.source}.")
        items.append(
            _Item(
                f"{indicator.upper()}{state} — {codes.alert_display(finding.code)} "
                f"({finding.scan_date.isoformat()}): {finding.summary}",
                tuple(sub),
            )
        )
    return items


def _biomarker_items(assessment: PatientAssessment) -> list[_Item]:
    items: list[_Item] = []
    for b in assessment.biomarkers:
        if b.value is None:
            missing = f" (missing: {', '.join(b.missing)})" if b.missing else ""
            items.append(_Item(f"{b.name}: not evaluable{missing}."))
            continue
        value = _extra_text(b.value) or str(b.value)
        unit = f" {unit_words(b.unit)}" if b.unit else ""
        interpretation = f" — {b.interpretation}" if b.interpretation else ""
        items.append(_Item(f"{b.name}: {value}{unit}{interpretation} ({b.method}).", ()))
    return list(dict.fromkeys(items))  # the same biomarker by two methods can read the same when not evaluable


def tracer_uptake_line(uptake: TracerUptake) -> str:
    """``89Zr-atezolizumab (PD-L1) PET, 3 lesions: SUVmax 4 to 12, median 6, highest/lowest 3; informational.``"""
    metric = "SUVmax" if uptake.metric == "SUVmax" else "SUL peak"
    lesions = f"{uptake.count} lesion" + ("s" if uptake.count != 1 else "")
    # A tracer stated only by a code we do not know is named by that code: the text gets no code numbers (§9.4).
    coded_only = uptake.tracer_code is not None and uptake.tracer_code in uptake.tracer_name
    name = "Unrecognised non-FDG tracer" if coded_only else uptake.tracer_name
    text = f"{name} PET, {lesions}: {metric} {format_number(uptake.minimum)}"
    if uptake.count > 1:
        text += f" to {format_number(uptake.maximum)}, median {format_number(uptake.median)}"
        if uptake.max_min_ratio is not None:
            text += f", highest/lowest {format_number(uptake.max_min_ratio)}"
    return text + "; informational, no FDG criterion applied."


def _uptake_item(uptake: TracerUptake) -> _Item:
    metric = "SUVmax" if uptake.metric == "SUVmax" else "SUL peak"
    per_lesion = tuple(
        f"{row.lesion}: {metric} {format_number(value)}"
        for row in uptake.lesions
        if (value := row.suv_max if uptake.metric == "SUVmax" else row.sul_peak) is not None
    )
    spread = f"coefficient of variation {format_number(uptake.cv_percent)} %" if uptake.cv_percent is not None else ""
    source = f"Tracer: {uptake.source}." if uptake.source else ""
    tail = " ".join(part for part in (f"{spread}." if spread else "", source) if part)
    head = f"{format_date(uptake.scan_date)}: {tracer_uptake_line(uptake)}"
    return _Item(f"{head} {tail}".strip(), per_lesion)


def _warnings(assessment: PatientAssessment, scan_date: dt.date) -> list[str]:
    warnings: list[str] = list(assessment.warnings)
    for criterion in assessment.criteria:
        name = codes.criterion_display(criterion.criterion)
        warnings += [f"{name}: {w}" for w in criterion.warnings]
        tp = criterion.at(scan_date)
        if tp is not None:
            warnings += [f"{name}: {w}" for w in tp.warnings]
    return list(dict.fromkeys(warnings))  # each warning once, in first-seen order


# ---------------------------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------------------------
def _html(blocks: Sequence[_Block]) -> str:
    def e(text: str) -> str:
        return html.escape(dates_in_words(text))

    out = []
    for block in blocks:
        if isinstance(block, _Heading):
            out.append(f"<h3>{e(block.text)}</h3>")
        elif isinstance(block, _Paragraph):
            out.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, _Table):
            out.append("<table>")
            out.append("<thead><tr>" + "".join(f'<th scope="col">{e(h)}</th>' for h in block.header) + "</tr></thead>")
            out.append("<tbody>")
            for r in block.rows:
                out.append(
                    "<tr>" + f'<th scope="row">{e(r[0])}</th>' + "".join(f"<td>{e(c)}</td>" for c in r[1:]) + "</tr>"
                )
            out.append("</tbody></table>")
        elif isinstance(block, _List):
            out.append("<ul>")
            for item in block.items:
                sub = ""
                if item.sub:
                    sub = "<ul>" + "".join(f"<li>{e(line)}</li>" for line in item.sub) + "</ul>"
                out.append(f"<li>{e(item.text)}{sub}</li>")
            out.append("</ul>")
    return "\n".join(out) + "\n"
