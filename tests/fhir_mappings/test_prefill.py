"""The pre-filled "Response assessment" section as a radiologist signs it (contract §9.4; issue 15), built as the
service builds it: each report from the facts known at its own date (``facts_as_of``) and the alerts that hold then.

- On every worked example at every follow-up: the impression comes first and is at most 600 characters, the text
  is at most 2,000 characters (≤ 5 lesions), sites are in words, and no jargon (internal identifiers, rule or
  spec references, evidence tags, reason codes, bare code numbers, ISO dates) reaches the text.
- One golden text per criterion family (RECIST/iRECIST; irRC/irRECIST/imRECIST; PET; Lugano/LYRIC; RANO/iRANO),
  read line by line (the arithmetic is in each comment).
- The HTML form says the same and keeps the full traces in a collapsible ``<details>``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
import re

import pytest

from fhir_mappings.outbound import build_report, findings_as_of
from fhir_mappings.prefill import IMPRESSION_MAX, format_date, render_prefill, site_display
from rules.evaluate import evaluate_patient, facts_as_of
from rules.facts import Scan
from rules.pet_tracers import identify
from rules.scenario import c
from tests.fhir_mappings import attachment_text, context
from tests.rules import cases
from tests.rules import pet_cases as pc
from tests.rules.criteria.test_irano import glioma

D = dt.date.fromisoformat


class _Collector(html.parser.HTMLParser):
    """Checks the fragment is balanced and collects its text."""

    VOID = {"br", "hr", "img", "meta"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(fragment: str) -> _Collector:
    collector = _Collector()
    collector.feed(fragment)
    collector.close()
    assert collector.stack == []
    return collector


def prefill(facts, day: dt.date, primary: str = "iRECIST") -> tuple[str, str]:
    """The report of ``day`` as the service writes it: evaluated as of that date, with the alerts holding then."""
    assessment = evaluate_patient(facts_as_of(facts, day))
    return render_prefill(assessment, day, findings_as_of(assessment, day, ()), primary=primary)


EXAMPLES = {
    **{case.name: case.facts() for case in cases.ALL},
    "E5-PET": pc.e5_pet(),
    "E7-PET": pc.e7_pet(),
    "P1": pc.p1(),
    # P1 with FU1 on 89Zr-atezolizumab: the tracer-specific uptake line must keep the limits too.
    "P1-89Zr": dataclasses.replace(
        pc.p1(), scans=(Scan(pc.P1_SCANS["FU1"], modalities=("PT",), pet_tracer=identify(text="89Zr-atezolizumab")),)
    ),
    "L1": pc.l1(),
    "L1-PET": pc.l1(pet=True),
    "iRANO": glioma(
        {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-06-03")}, [c(20, 20), c(25, 20), c(28, 22)]
    ),
}
REPORTS = [(name, day) for name, facts in EXAMPLES.items() for day in evaluate_patient(facts).followup_dates]

JARGON = {
    "spec reference": re.compile(r"§|\bspec\b|\bsection\b", re.I),
    "evidence tag": re.compile(r"\[[A-Z]{1,2}(:|\])"),
    "reason code or flag name": re.compile(r"\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b"),
    "rule identifier": re.compile(r"\b(recist|irecist|kinetics|irae|patterns)\.[a-z]", re.I),
    "bare code number": re.compile(r"\b\d{6,}\b"),
    "ISO date (one date format)": re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    "kinetics scan label": re.compile(r"\bE[012]\b"),
    "internal identifier": re.compile(r"…[0-9a-f]|urn:|\b[0-9a-f]{8}-[0-9a-f]{4}-"),
    "flag or config word": re.compile(r"\bflag\b|IMMUNORAD_|\bNone\b|\bn/a\b|\btrue\b|\bfalse\b", re.I),
    "typo: doubled punctuation": re.compile(r"\.\.(?!\.)|,,|;;|\s[,.;:]"),
}


@pytest.mark.parametrize("name, day", REPORTS, ids=[f"{n}-{d}" for n, d in REPORTS])
def test_limits_and_plain_words_on_every_worked_example(name, day):
    plain, fragment = prefill(EXAMPLES[name], day)
    paragraphs = plain.split("\n\n")
    # Impression first, ≤ 600 characters.
    assert paragraphs[0].startswith("Impression: ") and len(paragraphs[0]) <= IMPRESSION_MAX
    # ≤ 2,000 characters for a patient with up to 5 lesions (every worked example has ≤ 5).
    assert len(evaluate_patient(EXAMPLES[name]).lesion_table) <= 5
    assert len(plain) <= 2000, len(plain)
    for what, pattern in JARGON.items():
        found = pattern.search(plain)
        assert found is None, f"{what}: {found.group(0)!r} in\n{plain}"
    # The scan's date in the one format, in the table's last column.
    assert format_date(day) in plain
    # The HTML says the same (its text) and keeps the traces in <details>.
    collector = parse(fragment)
    assert "details" in collector.tags and "summary" in collector.tags
    text = "\n".join(collector.text)
    assert paragraphs[0] in text


def test_sites_in_words_never_a_code_number():
    # SNOMED CT codes as FHIR and DICOM send them: the project's table, then DICOM's code meanings (CID 4, 4030,
    # 7600, via pydicom), then "site not named"; free text as written.
    assert site_display("39607008") == "Lung"
    assert site_display("http://snomed.info/sct|10200004") == "Liver"
    assert site_display("SCT:59441001") == "Lymph node"
    assert site_display("76752008") == "Breast"  # not in the project's table: DICOM CID 4 "Breast"
    assert site_display("86598002") == "Apex of lung"  # DICOM "Apex of Lung", sentence case
    assert site_display("3898006") == "site not named"  # a code that is not an anatomic site we know
    assert site_display("right upper lobe") == "right upper lobe"
    # A patient whose organs arrive as codes (as FHIR bodySite does): the table reads in words.
    codes = {"lung": "39607008", "liver": "10200004", "lymph node": "59441001", "bone": "3898006"}
    facts = cases.E1.facts()
    facts = dataclasses.replace(
        facts, measurements=tuple(dataclasses.replace(m, organ=codes[m.organ]) for m in facts.measurements)
    )
    plain, _ = prefill(facts, cases.E1.scans["TP1"])
    table = plain.split("\n\n")[1]
    assert "Lung, target" in table and "Liver, target" in table and "Lymph node, target" in table
    assert "site not named, non-target" in table
    assert not re.search(r"\d{6,}", plain)


def test_nodal_short_axis_and_lesion_labels():
    # E1 T3 node 25 × 20 mm at baseline, 20 × 14 at TP1: a node is measured by its short axis (20 → 14).
    plain, _ = prefill(cases.E1.facts(), cases.E1.scans["TP1"])
    assert "Lesions (mm; lymph nodes: short axis):" in plain
    assert re.search(r"T3 node +Lymph node, target +20 +14\n", plain)
    assert re.search(r"T1 lung +Lung, target +40 +28\n", plain)  # non-nodal: the long axis


def test_primary_criterion_recist_as_configured():
    # E1 TP1: SoD 28 + 21 + 14 = 63 mm vs 40 + 30 + 20 = 90 mm: (63 − 90)/90 = −30 % → PR (inclusive). irRC: the
    # products 28·21 + 21·18 + 20·14 = 1246 mm² vs 2450 mm² = −49.14 %, short of −50 % → irSD: it reads differently.
    plain, _ = prefill(cases.E1.facts(), cases.E1.scans["TP1"], primary="RECIST-1.1")
    assert plain.startswith(
        "Impression: Partial response by RECIST 1.1: sum of diameters 63 mm, −30 % from baseline (90 mm). "
        "irRC reads immune-related stable disease (irSD).\n\n"
    )
    # The responder: no alert in the impression; "not evaluable" kinetics is stated, the reason is in the details.
    assert "Alert" not in plain
    assert "Hyperprogression could not be assessed." in plain


# --- golden texts, one per criterion family -------------------------------------------------------------------

GOLDEN_RECIST_IRECIST = """\
Impression: Unconfirmed progressive disease (iUPD) by iRECIST: sum of diameters 52 mm, −35 % from baseline (80 mm); new lesions present. RECIST 1.1 and itRECIST read progressive disease; irRECIST and irRC read immune-related partial response (irPR); imRECIST reads partial response. Alerts: confirmation scan due (iRECIST between 29 Jul 2024 and 26 Aug 2024); dissociated response: consider local therapy of the growing lesions and confirmation imaging.

Lesions (mm; lymph nodes: short axis):
Lesion    Site                29 Apr 2024  1 Jul 2024
T1 lung   Lung, target        30           18
T2 liver  Liver, target       30           20
T3 node   Lymph node, target  20           14
NT        Bone, non-target    present      present
N1 lung   Lung, new           —            6

RECIST 1.1: progressive disease.
iRECIST: unconfirmed progressive disease (iUPD); confirm between 29 Jul 2024 and 26 Aug 2024.
irRECIST: immune-related partial response (irPR).
irRC: immune-related partial response (irPR); sum of products of diameters 870 mm², −58.37 % from baseline (2090 mm²).
imRECIST (provisional): partial response.
itRECIST (provisional): progressive disease.

Growth kinetics: tumour growth rate −46.4 %/month on treatment. Hyperprogression could not be assessed.
Immunotherapy started 6 May 2024 (day 56 at this scan).
"""


def test_golden_recist_irecist_e7_new_lesion_while_targets_respond():
    # E7 TP1 2024-07-01: targets 18 + 20 + 14 (node short axis) = 52 mm vs 30 + 30 + 20 = 80 mm: −35 %, but a new
    # 6 mm lung nodule → RECIST 1.1 PD (unequivocal new lesion); iRECIST iUPD (new lesion), confirm 4–8 weeks later:
    # 1 Jul + 28 d = 29 Jul, + 56 d = 26 Aug 2024. irRECIST/imRECIST: 6 mm is not measurable, not in the burden →
    # −35 % → PR. irRC products 18·15 + 20·16 + 20·14 = 270 + 320 + 280 = 870 mm² vs 750 + 780 + 560 = 2090 mm²:
    # −58.37 % ≤ −50 % → irPR. Responding targets next to a new lesion: dissociated response (kinetics spec §4.2).
    plain, _ = prefill(cases.E7.facts(), cases.E7.scans["TP1"])
    assert plain == GOLDEN_RECIST_IRECIST


GOLDEN_IMMUNE_RELATED = """\
Impression: Stable disease (iSD) by iRECIST: sum of diameters 24 mm, +20 % from baseline (20 mm). irRC reads unconfirmed immune-related progressive disease (irPD). Alert: confirmation scan due (irRC on or after 27 May 2024).

Lesions (mm; lymph nodes: short axis):
Lesion   Site          26 Feb 2024  29 Apr 2024
T1 lung  Lung, target  10           12
T2 lung  Lung, target  10           12

RECIST 1.1: stable disease.
iRECIST: stable disease (iSD).
irRECIST: immune-related stable disease (irSD).
irRC: unconfirmed immune-related progressive disease (irPD); sum of products of diameters 264 mm², +32 % from nadir (200 mm²); confirm on or after 27 May 2024.
imRECIST (provisional): stable disease.
itRECIST (provisional): stable disease.

Growth kinetics: tumour growth rate +30.2 %/month on treatment. Hyperprogression could not be assessed.
Immunotherapy started 4 Mar 2024 (day 56 at this scan).
"""


def test_golden_immune_related_e3_products_amplify_growth():
    # E3 TP1 2024-04-29: two 10 mm lung nodules grow to 12 mm: SoD 24 vs 20 mm = +20 % but only +4 mm (< 5 mm) →
    # RECIST 1.1 SD (and iSD, irSD: the 5 mm rule). irRC squares it: 12·11 + 12·11 = 264 mm² vs 10·10 + 10·10 =
    # 200 mm² = +32 % ≥ +25 % → irPD, unconfirmed: the next scan ≥ 28 days later confirms it: 29 Apr + 28 d = 27 May.
    plain, _ = prefill(cases.E3.facts(), cases.E3.scans["TP1"])
    assert plain == GOLDEN_IMMUNE_RELATED


def test_golden_pet_e5_new_lesion_and_metabolic_progression():
    plain, _ = prefill(pc.e5_pet(), cases.E5.scans["TP2"])
    assert plain.split("\n\n")[0] == (
        "Impression: Unconfirmed progressive disease (iUPD) by iRECIST: sum of diameters 45 mm, −6.25 % from "
        "baseline (48 mm); new lesions present. RECIST 1.1 and itRECIST read progressive disease; irRC reads "
        "immune-related stable disease (irSD); PERCIST 1.0, imPERCIST5, EORTC PET read progressive metabolic "
        "disease (PMD); PERCIMT reads stable metabolic disease (SMD). Alert: confirmation scan due (iRECIST between "
        "3 Jun 2024 and 1 Jul 2024; irRECIST, imRECIST on or after 3 Jun 2024)."
    )
    lines = plain.split("\n\n")[2].split("\n")
    assert lines[-5:] == [
        # PERCIST: the hottest lesion's SULpeak 8.5 vs 9.0 at baseline (−5.56 %), but a new FDG-avid lesion → PMD.
        "PERCIST 1.0: progressive metabolic disease (PMD); hottest lesion SULpeak 8.5, −5.56 % from baseline.",
        # imPERCIST5: up to 5 lesions summed, new ones included: 20 vs 15 (+33.33 % ≥ +30 %) → PMD.
        "imPERCIST5: progressive metabolic disease (PMD); sum of SULpeak 20, +33.33 % from baseline.",
        # PERCIMT: one new lesion below the count thresholds → SMD.
        "PERCIMT: stable metabolic disease (SMD).",
        "iPERCIST: unconfirmed progressive metabolic disease (UPMD); hottest lesion SULpeak 8.5, −5.56 % from "
        "baseline.",
        "EORTC PET: progressive metabolic disease (PMD).",
    ]
    # No tracer in the facts: FDG assumed, and the report says so (contract §9.3).
    assert plain.endswith(
        "Immunotherapy started 15 Jan 2024 (day 112 at this scan). PET tracer not stated: FDG assumed.\n"
    )


GOLDEN_LYMPHOMA = """\
Impression: Indeterminate response IR1 by LYRIC: sum of products of diameters 3736 mm², +62.43 % from nadir (2300 mm²). Lugano 2014 reads progressive disease. Alert: confirmation scan due (LYRIC by 27 May 2024).

Lesions (mm, long × short axis):
Lesion  Site                2 Jan 2024  4 Mar 2024
N1      Lymph node, target  40 × 30     52 × 40
N2      Lymph node, target  30 × 20     36 × 26
N3      Lymph node, target  25 × 20     30 × 24

Lugano 2014: progressive disease.
LYRIC: indeterminate response IR1; confirm by 27 May 2024.

Growth kinetics: tumour growth rate +44.8 %/month on treatment. Hyperprogression could not be assessed.
Immunotherapy started 8 Jan 2024 (day 56 at this scan).
"""


def test_golden_lymphoma_l1_week_8():
    # L1 week 8 (2024-03-04, day 56 ≤ 84): SPD 52·40 + 36·26 + 30·24 = 2080 + 936 + 720 = 3736 mm² vs the nadir
    # (baseline) 40·30 + 30·20 + 25·20 = 2300 mm²: +62.43 % ≥ +50 % → Lugano PD, LYRIC IR1; re-image within about
    # 12 weeks [U]: 4 Mar + 84 d = 27 May 2024. Lymphoma: both axes in the table.
    plain, _ = prefill(pc.l1(), pc.L1_SCANS["TP1"])
    assert plain == GOLDEN_LYMPHOMA


GOLDEN_NEURO = """\
Impression: Unconfirmed progressive disease by iRANO: sum of products of diameters 500 mm², +25 % from nadir (400 mm²). RANO reads progressive disease. Alert: confirmation scan due (iRANO on or after 27 May 2024).

Lesions (mm, long × short axis):
Lesion    Site           2 Jan 2024  4 Mar 2024
T1 brain  Brain, target  20 × 20     25 × 20

RANO: progressive disease.
iRANO (provisional): unconfirmed progressive disease; confirm on or after 27 May 2024.

Growth kinetics: tumour growth rate +38.9 %/month on treatment. Hyperprogression could not be assessed.
Immunotherapy started 8 Jan 2024 (day 56 at this scan).
"""


def test_golden_neuro_irano_provisional_pd():
    # 20 × 20 = 400 → 25 × 20 = 500 mm² (+25 % ≥ +25 %: RANO PD) on day 56, within 6 months of C1D1 and the
    # patient not worse: iRANO defers it; confirm ≥ 12 weeks later [U]: 4 Mar + 84 d = 27 May 2024.
    plain, _ = prefill(EXAMPLES["iRANO"], D("2024-03-04"))
    assert plain == GOLDEN_NEURO


# --- the HTML form and the report resource ------------------------------------------------------------------


def test_html_keeps_the_traces_in_details_and_escapes_everything():
    _, fragment = prefill(cases.E5.facts(), cases.E5.scans["TP2"])
    collector = parse(fragment)
    assert set(collector.tags) <= {
        "section", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "details", "summary",
    }  # fmt: skip
    summary, details = fragment.split("<details>", 1)
    # The confirmation window and the new-lesion sums with their reasoning, in the details only.
    assert "Confirmation window: 3 Jun 2024 to 1 Jul 2024" in details
    assert "sum of measures 12 mm" in details and "Confirmation window" not in summary
    assert "confirm between 3 Jun 2024 and 1 Jul 2024" in summary


def test_diagnostic_report_carries_the_text_and_its_impression_as_conclusion():
    assessment = evaluate_patient(facts_as_of(cases.E5.facts(), cases.E5.scans["TP2"]))
    resources = build_report(assessment, context(cases.E5, cases.E5.scans["TP2"]), ())
    dr = resources.diagnostic_report
    forms = {f["contentType"]: attachment_text(f) for f in dr["presentedForm"]}
    plain = forms["text/plain; charset=utf-8"]
    assert plain.startswith("Impression: Unconfirmed progressive disease (iUPD) by iRECIST")
    assert dr["conclusion"] == plain.split("\n\n")[0].removeprefix("Impression: ")
    assert len(dr["conclusion"]) <= IMPRESSION_MAX
    assert {c["coding"][0]["code"] for c in dr["conclusionCode"]} >= {"PD", "iUPD", "irPD"}


def details_text(fragment: str) -> str:
    """The text of the HTML form's collapsible details (one line per element)."""
    return "\n".join(parse(fragment.split("<details>", 1)[1].split("</details>", 1)[0]).text)


def test_durable_response_is_shown_where_it_holds():
    # E15: PR from 2024-03-04 on, lasting ≥ 6 months within 12 months of C1D1 (DRR, Kaufman 2017) by RECIST 1.1
    # and iRECIST: shown in the impression of the scan where it is reached and after, never as an alert.
    plain, _ = prefill(cases.E15.facts(), max(cases.E15.scans.values()))
    assert plain.split("\n\n")[0].endswith("Durable response by RECIST 1.1 and iRECIST.")
    assert "Alert" not in plain
    first, _ = prefill(cases.E15.facts(), min(d for k, d in cases.E15.scans.items() if k != "BL"))
    assert "Durable" not in first


def test_no_patient_identifier_in_the_text():
    secret = "PATIENT-SECRET-4711"
    plain, fragment = prefill(cases.E1.facts(patient_ref=secret), cases.E1.scans["TP1"])
    assert secret not in plain and secret not in fragment and "MRN" not in plain


def test_imaging_signatures_beside_the_biomarkers_in_the_details_only():
    # Issue 20 item 8 (multilevel integration): signature lines given with the report context are listed in the HTML
    # details under their own heading after the baseline biomarkers; the plain text (what is signed) is unchanged.
    import dataclasses
    import html

    assessment = evaluate_patient(facts_as_of(cases.E5.facts(), cases.E5.scans["TP2"]))
    plain_ctx = context(cases.E5, cases.E5.scans["TP2"])
    line = "Lesion T1, 2024-04-01: example-glcm-heterogeneity 0.1 = 0.0119 (provisional) — signature source"
    with_signatures = dataclasses.replace(plain_ctx, signatures=(line,))
    forms = {
        f["contentType"]: attachment_text(f)
        for f in build_report(assessment, with_signatures, ()).diagnostic_report["presentedForm"]
    }
    before = {
        f["contentType"]: attachment_text(f)
        for f in build_report(assessment, plain_ctx, ()).diagnostic_report["presentedForm"]
    }
    assert forms["text/plain; charset=utf-8"] == before["text/plain; charset=utf-8"]
    html_form = next(text for kind, text in forms.items() if kind.startswith("text/html"))
    summary, details = html_form.split("<details>", 1)
    assert "Imaging signatures" not in summary
    assert "<h3>Imaging signatures</h3>" in details
    # the report writes dates in words everywhere (issue 15): 2024-04-01 -> 1 Apr 2024
    assert html.escape(line.replace("2024-04-01", "1 Apr 2024"), quote=False) in details
    assert details.index("Baseline prognostic biomarkers") < details.index("Imaging signatures")
    assert "Imaging signatures" not in next(t for k, t in before.items() if k.startswith("text/html"))
