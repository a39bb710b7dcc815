"""CDISC SDTM export for a trial team (contract §9.7): the ``RS`` (Disease Response) and ``TR`` (Tumor/Lesion
Results) datasets as CSV, from the engine's latest assessment of each patient in the dashboard's selection.

Variables follow the SDTM Implementation Guide v3.3 domain specifications for RS and TR (Core: Req = required,
Exp = expected, Perm = permissible). Every Req and Exp variable is a column (Exp may be empty, as the IG allows);
the column set was cross-checked against the RS/TR example datasets of pharmaversesdtm 1.3.0 (``rs_onco``,
``rs_onco_irecist``, ``tr_onco``). Submission values are those of contract §5 (``RSORRES``/``RSSTRESC`` = the
category as the criterion names it: CR, PR, SD, PD, NE, NON-CR/NON-PD, iCR … iCPD, irCR …, CMR …).

* ``RS``: per patient, criterion (``RSCAT``, the criterion's name) and follow-up: ``OVRLRESP`` (overall response),
  ``TRGRESP`` (target), ``NTRGRESP`` (non-target; none when the patient has no non-target lesion), ``NEWLIND``
  (new lesion indicator, Y/N).
* ``TR``: per lesion and scan, ``LDIAM`` (longest diameter of a non-nodal lesion) or ``LPERP`` (short axis of a
  lymph node, RECIST 1.1 §3.1), ``TUMSTATE`` for a non-target lesion; per criterion and scan ``SUMDIAM`` (the
  sum of diameters, ``TRGRPID`` = the criterion). ``TRLNKID`` names the lesion.
* ``USUBJID`` is the keyed pseudonym by default (no MRN leaves unless ``pseudonymise=false``); ``--DY`` is the
  study day from the treatment start (SDTM convention: day 1 is the start, there is no day 0).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_mappings.codes import criterion_display
from service.dashboard.quality import Cohort, as_date


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    core: str
    """``Req`` | ``Exp`` | ``Perm`` (SDTMIG v3.3)."""
    description: str


RS_VARIABLES: tuple[Variable, ...] = (
    Variable("STUDYID", "Study Identifier", "Req", "The study identifier given with the export (studyid)."),
    Variable("DOMAIN", "Domain Abbreviation", "Req", "RS."),
    Variable("USUBJID", "Unique Subject Identifier", "Req", "Keyed pseudonym of the patient (MRN if asked)."),
    Variable("RSSEQ", "Sequence Number", "Req", "1, 2, … within the subject."),
    Variable("RSLNKGRP", "Link Group ID", "Perm", "Criterion and scan date, linking the rows of one assessment."),
    Variable("RSTESTCD", "Assessment Short Name", "Req", "OVRLRESP, TRGRESP, NTRGRESP or NEWLIND."),
    Variable("RSTEST", "Assessment Name", "Req", "Overall Response, Target Response, …"),
    Variable("RSCAT", "Category for Assessment", "Exp", "The criterion (e.g. RECIST 1.1, iRECIST)."),
    Variable("RSORRES", "Result or Finding in Original Units", "Exp", "The category as the criterion names it."),
    Variable("RSSTRESC", "Character Result/Finding in Std Format", "Exp", "Same as RSORRES (submission values)."),
    Variable("RSSTAT", "Completion Status", "Perm", "Empty (done); NOT DONE when the engine could not assess."),
    Variable("RSREASND", "Reason Not Done", "Perm", "Why not assessed."),
    Variable("RSEVAL", "Evaluator", "Exp", "Empty: the engine's assessment (no CDISC evaluator term for it)."),
    Variable("VISITNUM", "Visit Number", "Exp", "0 baseline, 1, 2, … the follow-ups in date order."),
    Variable("VISIT", "Visit Name", "Perm", "BASELINE, FOLLOW-UP 1, …"),
    Variable("RSDTC", "Date/Time of Assessment", "Exp", "Scan date (ISO 8601)."),
    Variable("RSDY", "Study Day of Assessment", "Perm", "Days from the treatment start (day 1 = start)."),
)

TR_VARIABLES: tuple[Variable, ...] = (
    Variable("STUDYID", "Study Identifier", "Req", "The study identifier given with the export (studyid)."),
    Variable("DOMAIN", "Domain Abbreviation", "Req", "TR."),
    Variable("USUBJID", "Unique Subject Identifier", "Req", "Keyed pseudonym of the patient (MRN if asked)."),
    Variable("TRSEQ", "Sequence Number", "Req", "1, 2, … within the subject."),
    Variable("TRGRPID", "Group ID", "Perm", "TARGET / NON-TARGET for lesions; the criterion for SUMDIAM."),
    Variable("TRLNKID", "Link ID", "Exp", "The lesion (its label); empty for SUMDIAM."),
    Variable("TRTESTCD", "Tumor/Lesion Assessment Short Name", "Req", "LDIAM, LPERP, TUMSTATE or SUMDIAM."),
    Variable("TRTEST", "Tumor/Lesion Assessment Test Name", "Req", "Longest Diameter, Longest Perpendicular, …"),
    Variable("TRORRES", "Result or Finding in Original Units", "Exp", "The measured value or state."),
    Variable("TRORRESU", "Original Units", "Exp", "mm for lengths."),
    Variable("TRSTRESC", "Character Result/Finding in Std Format", "Exp", "The value as text."),
    Variable("TRSTRESN", "Numeric Result/Finding in Standard Units", "Exp", "The length in mm."),
    Variable("TRSTRESU", "Standard Units", "Exp", "mm for lengths."),
    Variable("TRSTAT", "Completion Status", "Perm", "NOT DONE when a lesion was not assessed at that scan."),
    Variable("TRREASND", "Reason Not Done", "Perm", "Why not assessed."),
    Variable("TRMETHOD", "Method of Test or Examination", "Exp", "Empty (the modality is not carried per row)."),
    Variable("TREVAL", "Evaluator", "Exp", "Empty: measurements as reported to immunorad."),
    Variable("VISITNUM", "Visit Number", "Exp", "0 baseline, 1, 2, … in date order."),
    Variable("VISIT", "Visit Name", "Perm", "BASELINE, FOLLOW-UP 1, …"),
    Variable("TRDTC", "Date/Time of Tumor/Lesion Measurement", "Exp", "Scan date (ISO 8601)."),
    Variable("TRDY", "Study Day of Tumor/Lesion Measurement", "Perm", "Days from the treatment start (day 1 = start)."),
)

RS_TESTS = {
    "OVRLRESP": "Overall Response",
    "TRGRESP": "Target Response",
    "NTRGRESP": "Non-target Response",
    "NEWLIND": "New Lesion Indicator",
}
NOT_A_RESULT = {"NONE", "NA", None, ""}
"""``nontarget_response``/``target_response`` values meaning the test does not apply (no row)."""


def study_day(day: dt.date | None, start: dt.date | None) -> str:
    if day is None or start is None:
        return ""
    delta = (day - start).days
    return str(delta + 1 if delta >= 0 else delta)


def _visits(result: Mapping[str, Any]) -> dict[str, int]:
    dates = sorted({str(d) for d in result.get("followup_dates") or []})
    visits = {d: i + 1 for i, d in enumerate(dates)}
    if result.get("baseline_date"):
        visits[str(result["baseline_date"])] = 0
    return visits


def _visit_name(number: int | None) -> str:
    return "" if number is None else ("BASELINE" if number == 0 else f"FOLLOW-UP {number}")


def rs_rows(cohort: Cohort, subject: Callable[[str, str | None], str], study: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for patient in cohort.patients:
        result = patient.result
        start = as_date(result.get("treatment_start"))
        visits = _visits(result)
        usubjid, seq = subject(patient.patient_id, patient.mrn), 0
        for criterion in result.get("criteria") or []:
            name = criterion_display(criterion["criterion"])
            for tp in criterion.get("timepoints") or []:
                day = as_date(tp.get("scan_date"))
                if day is None or not cohort.filters.contains(day):
                    continue
                new = {"present": "Y", "absent": "N"}.get(str(tp.get("new_lesions")), "")
                values = {
                    "OVRLRESP": tp.get("category"),
                    "TRGRESP": tp.get("target_response"),
                    "NTRGRESP": tp.get("nontarget_response"),
                    "NEWLIND": new,
                }
                for code, value in values.items():
                    if value in NOT_A_RESULT:
                        continue
                    seq += 1
                    visit = visits.get(day.isoformat())
                    rows.append(
                        {
                            "STUDYID": study,
                            "DOMAIN": "RS",
                            "USUBJID": usubjid,
                            "RSSEQ": str(seq),
                            "RSLNKGRP": f"{criterion['criterion']}-{day.isoformat()}",
                            "RSTESTCD": code,
                            "RSTEST": RS_TESTS[code],
                            "RSCAT": name,
                            "RSORRES": str(value),
                            "RSSTRESC": str(value),
                            "RSSTAT": "",
                            "RSREASND": "",
                            "RSEVAL": "",
                            "VISITNUM": "" if visit is None else str(visit),
                            "VISIT": _visit_name(visit),
                            "RSDTC": day.isoformat(),
                            "RSDY": study_day(day, start),
                        }
                    )
    return rows


def _number(value: Any) -> str:
    if value in (None, ""):
        return ""
    text = f"{float(value):.1f}".rstrip("0").rstrip(".")
    return text


def _tr_row(
    study: str, usubjid: str, visits: Mapping[str, int], start: dt.date | None, day: dt.date, values: Mapping[str, str]
) -> dict[str, str]:
    visit = visits.get(day.isoformat())
    row = {v.name: "" for v in TR_VARIABLES}
    row.update(
        STUDYID=study,
        DOMAIN="TR",
        USUBJID=usubjid,
        VISITNUM="" if visit is None else str(visit),
        VISIT=_visit_name(visit),
        TRDTC=day.isoformat(),
        TRDY=study_day(day, start),
    )
    row.update(values)
    return row


def _lesion_values(lesion: Mapping[str, Any], cell: Mapping[str, Any]) -> dict[str, str] | None:
    label = str(lesion.get("lesion") or "")
    if lesion.get("role") == "target":
        nodal = bool(lesion.get("nodal"))
        value = _number(cell.get("recist_axis_mm"))  # the axis the core chose (rules.facts.recist_axis_mm)
        code, test = ("LPERP", "Longest Perpendicular") if nodal else ("LDIAM", "Longest Diameter")
        out = {"TRGRPID": "TARGET", "TRLNKID": label, "TRTESTCD": code, "TRTEST": test}
        if not value:
            return {**out, "TRSTAT": "NOT DONE", "TRREASND": str(cell.get("status") or "not measured")}
        return {**out, "TRORRES": value, "TRORRESU": "mm", "TRSTRESC": value, "TRSTRESN": value, "TRSTRESU": "mm"}
    if lesion.get("role") == "non-target" and cell.get("nontarget_status"):
        state = str(cell["nontarget_status"]).upper()
        return {
            "TRGRPID": "NON-TARGET",
            "TRLNKID": label,
            "TRTESTCD": "TUMSTATE",
            "TRTEST": "Tumor State",
            "TRORRES": state,
            "TRSTRESC": state,
        }
    return None


def tr_rows(cohort: Cohort, subject: Callable[[str, str | None], str], study: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for patient in cohort.patients:
        result = patient.result
        start = as_date(result.get("treatment_start"))
        visits = _visits(result)
        usubjid = subject(patient.patient_id, patient.mrn)
        mine: list[dict[str, str]] = []
        for lesion in result.get("lesion_table") or []:
            for date_text, cell in sorted((lesion.get("cells") or {}).items()):
                day = as_date(date_text)
                values = _lesion_values(lesion, cell) if day is not None and cohort.filters.contains(day) else None
                if day is not None and values is not None:
                    mine.append(_tr_row(study, usubjid, visits, start, day, values))
        for criterion in result.get("criteria") or []:
            name = criterion_display(criterion["criterion"])
            for tp in criterion.get("timepoints") or []:
                day = as_date(tp.get("scan_date"))
                value = _number(tp.get("sum_mm"))
                if (
                    day is None
                    or not value
                    or not cohort.filters.contains(day)
                    or tp.get("sum_unit") not in ("mm", None)
                ):
                    continue
                sums = {"TRGRPID": name, "TRTESTCD": "SUMDIAM", "TRTEST": "Sum of Diameter", "TRORRES": value}
                sums.update(TRORRESU="mm", TRSTRESC=value, TRSTRESN=value, TRSTRESU="mm")
                mine.append(_tr_row(study, usubjid, visits, start, day, sums))
        for number, row in enumerate(mine, start=1):
            row["TRSEQ"] = str(number)
        rows += mine
    return rows


def to_csv(variables: Sequence[Variable], rows: Iterable[Mapping[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[v.name for v in variables], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
