"""Worked example E5 (clinical/criteria-size-pet.md §11) in the report's full detail (the HTML form's collapsible
details, issue 15): a new measurable lesion makes iUPD, its growth confirms iCPD. The detail says so in words: the
category, the confirmation window dates, and the new-lesion sums (NLT sum of measures; new lesions in the irRECIST
and irRC burdens). The short pre-fill above it is tested in test_prefill.py.

E5: targets T1 lung 30 + T2 mediastinal node (short axis) 18 = 48 mm at baseline 2024-01-08;
TP1 2024-03-11: 28 + 17 = 45 mm (−6.25 %, iSD); TP2 2024-05-06: 45 mm and a new liver lesion N1 12 × 10 mm
(LD 12 ≥ 10 → NLT, sum of measures 12 mm) → iUPD; confirmation 4–8 weeks later: 2024-05-06 + 28 d = 2024-06-03,
+ 56 d = 2024-07-01. TP3 2024-06-03: N1 18 mm, NLT sum 18 − 12 = +6 ≥ 5 mm → iCPD, progression dated 2024-05-06.
irRECIST adds N1 to the burden: 45 + 12 = 57 mm; irRC: 28·22 + 22·17 = 990 mm² + 12·10 = 120 mm² = 1110 mm².
"""

from __future__ import annotations

import datetime as dt

from fhir_mappings.outbound import build_report
from fhir_mappings.prefill import render_prefill
from tests.fhir_mappings import assess, attachment_text, context
from tests.fhir_mappings.test_prefill import details_text, parse
from tests.rules import cases

D = dt.date.fromisoformat
IUPD_SCAN, CONFIRMING_SCAN = D("2024-05-06"), D("2024-06-03")


def iupd_report() -> tuple[str, str]:
    """(the details' text, the whole HTML fragment) of the iUPD scan's report."""
    _, fragment = render_prefill(assess(cases.E5), IUPD_SCAN, ())
    return details_text(fragment), fragment


def test_e5_iupd_states_the_category_the_window_and_the_new_lesion_sums():
    plain, _ = iupd_report()
    assert "iRECIST: unconfirmed progressive disease (iUPD)." in plain
    assert "Unconfirmed progression (iUPD) on this scan (caused by new lesions)." in plain
    # 2024-05-06 + 28 days = 2024-06-03; + 56 days = 2024-07-01.
    assert (
        "Confirmation window: 3 Jun 2024 to 1 Jul 2024 (4 to 8 weeks after the iUPD): the next assessment in "
        "this window confirms progression (iCPD) or not."
    ) in plain
    # NLT: N1 liver LD 12 mm ≥ 10 → measurable new lesion; its sum of measures is kept apart from the target sum.
    assert "New lesions — measurable (NLT): N1 liver, sum of measures 12 mm; non-measurable (NLNT): none." in plain
    assert "Sum of diameters 45 mm; baseline 48 mm (\u22126.25 %); nadir 45 mm (0.00 %, 0 mm)." in plain
    # irRECIST: 45 + 12 = 57 mm (+26.67 % and +12 mm from the nadir 45: irPD, to be confirmed).
    assert "Tumour burden = index lesions 45 mm + new measurable lesions 12 mm (N1 liver)." in plain
    assert "irRECIST: immune-related progressive disease (irPD)." in plain and "irPD is not yet confirmed." in plain
    # irRC: 990 + 120 = 1110 mm² (+12.12 % from the nadir 990: < 25 %, irSD).
    assert "Tumour burden = index lesions 990 mm² + new measurable lesions 120 mm² (N1 liver)." in plain
    # RECIST 1.1 has no confirmation: the unequivocal new lesion is PD, dated to this scan.
    assert "RECIST 1.1: progressive disease (PD)." in plain and "Date of progression: 6 May 2024." in plain
    # Bookkeeping keys are not report text.
    for noise in ("Days since iUPD", "Early scan disregarded", "Raw category", "Reader review: no", "Index sum"):
        assert noise not in plain


def test_e5_iupd_html_says_the_same_and_is_well_formed():
    _, fragment = iupd_report()
    text = " ".join(parse(fragment).text)
    assert "unconfirmed progressive disease (iUPD)" in text
    assert "Confirmation window: 3 Jun 2024 to 1 Jul 2024" in text
    assert "sum of measures 12 mm" in text and "new measurable lesions 120 mm²" in text


def test_e5_confirming_scan_states_icpd_how_and_the_growth_of_the_nlt_sum():
    plain = details_text(render_prefill(assess(cases.E5), CONFIRMING_SCAN, ())[1])
    assert "iRECIST: confirmed progressive disease (iCPD)." in plain
    # NLT sum 18 − 12 = +6 mm ≥ 5 → iCPD 28 days after the iUPD; progression dated to the iUPD.
    assert (
        "Progression confirmed (iCPD): the iUPD of 6 May 2024 (caused by new lesions) is confirmed on this scan, "
        "28 days later, by an increase of the new-lesion (NLT) sum of measures over its value at the iUPD; "
        "at the iUPD: target sum 45 mm, NLT sum of measures 12 mm."
    ) in plain
    assert "New lesions — measurable (NLT): N1 liver, sum of measures 18 mm (+6 mm from 12 mm at the iUPD)" in plain
    assert "Date of progression: 6 May 2024." in plain
    assert "RECIST 1.1: not graded after progression dated 6 May 2024" in plain
    assert "Confirmation window" not in plain


def test_e5_presented_form_of_the_diagnostic_report_carries_the_same_text():
    resources = build_report(assess(cases.E5), context(cases.E5, IUPD_SCAN), ())
    forms = {f["contentType"]: attachment_text(f) for f in resources.diagnostic_report["presentedForm"]}
    plain = forms["text/plain; charset=utf-8"]
    assert "iRECIST: unconfirmed progressive disease (iUPD); confirm between 3 Jun 2024 and 1 Jul 2024." in plain
    assert "Confirmation window: 3 Jun 2024 to 1 Jul 2024" in details_text(forms["text/html; charset=utf-8"])
    assert "sum of measures 12 mm" in forms["text/html; charset=utf-8"]
