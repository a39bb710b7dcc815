"""The full detail behind the pre-fill (the HTML form's collapsible details, contract §9.4), from the real
evaluations: the verbose section the pre-fill used to be (issue 15 moved it here, unchanged in content)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from fhir_mappings.alerts import AlertState
from fhir_mappings.prefill import format_percent, format_signed, render_prefill
from rules.evaluate import evaluate_patient
from rules.results import Finding
from tests.fhir_mappings import assess
from tests.fhir_mappings.test_outbound import ALERTS, KINETICS, rich_e1
from tests.fhir_mappings.test_prefill import details_text, parse
from tests.rules import cases

D = dt.date.fromisoformat


def render(assessment, day, alerts=()):
    """(the details' text, the whole HTML fragment)."""
    _, fragment = render_prefill(assessment, day, alerts)
    return details_text(fragment), fragment


def test_e1_tp1_response_section_states_the_category_and_the_numbers():
    # SoD 63 mm vs baseline 90 mm: −30.00 % → partial response; nadir = baseline at the first follow-up.
    plain, fragment = render(assess(cases.E1), D("2024-03-11"), ())
    assert "RECIST 1.1: partial response (PR)." in plain
    assert "Sum of diameters 63 mm; baseline 90 mm (\u221230.00 %); nadir 90 mm (\u221230.00 %, \u221227 mm)." in plain
    assert "Target lesions: partial response (PR), non-target lesions: NON-CR/NON-PD, new lesions: absent." in plain
    assert "immunotherapy started 15 Jan 2024 (day 56 at this scan)" in plain
    # the lesion table up to this scan, long × short axis
    assert "T1 lung" in plain and "40 × 30" in plain and "28 × 21" in plain and "T3 node" in plain
    assert "6 May 2024" not in plain  # later scans are not in this report
    text = " ".join(parse(fragment).text)
    assert "partial response (PR)" in text and "63 mm" in text and "90 mm" in text


def test_later_timepoint_and_best_overall_response():
    plain, _ = render(assess(cases.E1), D("2024-07-01"), ())
    # TP3: 61 mm, −32.22 % from baseline, +5.17 % / +3 mm from the nadir 58 mm → still PR.
    assert "Sum of diameters 61 mm; baseline 90 mm (\u221232.22 %); nadir 58 mm (+5.17 %, +3 mm)." in plain
    assert "Best overall response with confirmation: PR (PR on 11 Mar 2024 confirmed by PR on 6 May 2024" in plain
    assert plain.count(" 2024") >= 4  # every date in the one format (issue 15)


def test_category_words_for_progression_ne_and_cr():
    e3, _ = render(assess(cases.E3), D("2024-06-24"), ())
    assert "RECIST 1.1: progressive disease (PD)." in e3 and "Date of progression: 24 Jun 2024." in e3
    after, _ = render(assess(cases.E3), D("2024-07-22"), ())
    assert "not graded after progression dated 24 Jun 2024" in after
    e9, _ = render(assess(cases.E9), D("2024-06-03"), ())
    assert "RECIST 1.1: not evaluable (NE)." in e9 and "not assessed" in e9
    e11, _ = render(assess(cases.E11), D("2024-09-23"), ())
    assert "RECIST 1.1: complete response (CR)." in e11 and "disappeared" in e11
    e11_tp1, _ = render(assess(cases.E11), D("2024-07-29"), ())
    assert "too small to measure" in e11_tp1


def test_no_patient_identifier_in_the_text():
    secret = "PATIENT-SECRET-4711"
    assessment = evaluate_patient(cases.E1.facts(patient_ref=secret))
    alert = dataclasses.replace(ALERTS[0], identifier=f"{secret}/hyperprogression/2024-03-11")
    plain, fragment = render(assessment, D("2024-03-11"), (alert,))
    assert secret not in plain and secret not in fragment
    assert "MRN" not in plain


def test_kinetics_alerts_and_iupd_window():
    plain, fragment = render(rich_e1(), D("2024-03-11"), ALERTS)
    assert "iRECIST: unconfirmed progressive disease (iUPD)." in plain
    assert "iUPD confirmation window: 8 Apr 2024 to 6 May 2024." in plain
    assert "NLT sum: 12 mm." in plain
    assert "Provisional" in plain
    assert "Tumour growth rate before treatment 10.12 %/month, on treatment \u221215.50 %/month" in plain
    assert "ratio not evaluable" in plain
    assert "Champiat 2017 (TGR ratio ≥ 2 with RECIST PD): not met — no RECIST PD at E2" in plain
    assert "flag UNDEFINED_RATIO" in plain
    assert "CRITICAL — Hyperprogression (11 Mar 2024): hyperprogression found" in plain
    assert "Rule R-hyperprogression; source: spec." in plain
    assert "WARNING — Immune-related adverse event" in plain
    assert "INFO (inactive) — Pseudoprogression" in plain and "Window ends 6 May 2024." in plain
    assert "Dissociated response" not in plain  # recorded, never an alert
    assert "Total metabolic tumour volume: 123.4 mL — high" in plain
    assert "Bone marrow-to-liver ratio: not evaluable (missing: liver SUVmean)." in plain
    parse(fragment)


def test_html_is_escaped():
    assessment = assess(cases.E1)
    table = list(assessment.lesion_table)
    table[0] = {**table[0], "lesion": "<script>alert(1)</script> & co"}
    hostile = Finding(
        code="irae",
        scan_date=D("2024-03-11"),
        severity="warning",
        summary='pneumonitis <b>"G2"</b>',
        detail="GGO > 5 % & consolidation",
        rule="IRAE<1>",
        source="<a href=x>spec</a>",
    )
    alert = AlertState(hostile, "k/irae", "active", D("2024-03-11"), D("2024-03-11"))
    _, fragment = render(
        dataclasses.replace(assessment, lesion_table=tuple(table), warnings=("check <this>",)),
        D("2024-03-11"),
        (alert,),
    )
    assert "<script>" not in fragment and "<b>" not in fragment and "<a href" not in fragment
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in fragment
    assert "GGO &gt; 5 % &amp; consolidation" in fragment and "check &lt;this&gt;" in fragment
    collector = parse(fragment)
    assert set(collector.tags) <= {
        "section", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "details", "summary",
    }  # fmt: skip


def test_warnings_are_listed():
    assessment = dataclasses.replace(assess(cases.E1), warnings=("T9 has no tracking UID or label",))
    plain, _ = render(assessment, D("2024-03-11"), ())
    _, fragment = render(assessment, D("2024-03-11"))
    assert "<h3>Warnings</h3>\n<ul>\n<li>T9 has no tracking UID or label</li>" in fragment
    assert "T9 has no tracking UID or label" in plain


def test_number_wording():
    assert format_percent(None) == "n/a"
    assert format_signed(0, "mm") == "0 mm"
    assert format_signed(-27, "mm") == "\u221227 mm"
    assert KINETICS.tgr_ratio is None
