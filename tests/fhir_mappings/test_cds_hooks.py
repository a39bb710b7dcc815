"""CDS Hooks 2.0 cards and discovery (contract §6; interop-notes §5.1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from fhir_mappings.alerts import AlertState
from fhir_mappings.cds_hooks import cards_for, discovery_document, markdown_escape
from fhir_mappings.codes import ALERT_CODES
from fhir_mappings.outbound import build_report
from rules.results import Finding
from tests.fhir_mappings import ALERT, assess, context
from tests.rules import cases

D = dt.date.fromisoformat
PAGE = "https://immunorad.example/ui/patients/7f3a"


def alert(code, status="active", severity="info", **kw):
    finding = Finding(
        code=code,
        scan_date=D("2024-03-11"),
        severity=severity,
        summary=kw.pop("summary", f"{code} at the first follow-up"),
        detail=kw.pop("detail", "TGR ratio 3.1 (≥ 2)\nRECIST PD at E2"),
        rule=kw.pop("rule", "HPD_KAS2020"),
        source=kw.pop("source", "Kas 2020, JAMA Oncol"),
        **kw,
    )
    return AlertState(finding, f"key-E1/{code}", status, D("2024-03-11"), D("2024-03-11"))


@pytest.mark.parametrize(
    "code, indicator",
    [
        ("hyperprogression", "critical"),
        ("fast-progression", "critical"),
        ("irae", "warning"),
        ("sarcoid-like-reaction", "warning"),
        ("confirmation-due", "warning"),
        ("early-death", "info"),
        ("kinetics-acceleration", "info"),
        ("hpd-not-evaluable", "info"),
        ("pseudoprogression", "info"),
        ("dissociated-response", "info"),
        ("abscopal-response", "info"),
    ],
)
def test_indicator_per_alert_code(code, indicator):
    # the rules' own severity does not override the contract's mapping for a known code
    [card] = cards_for([alert(code, severity="critical" if indicator == "info" else "info")], patient_page_url=PAGE)
    assert card["indicator"] == indicator
    assert card["source"]["topic"] == {"system": ALERT, "code": code, "display": ALERT_CODES[code]}


def test_flag_priority_agrees_with_the_card_indicator():
    alerts = [alert("hyperprogression"), alert("irae"), alert("pseudoprogression")]
    flags = build_report(assess(cases.E1), context(cases.E1, D("2024-03-11")), alerts).flags
    priority = {
        f["code"]["coding"][0]["code"]: f["extension"][1]["valueCodeableConcept"]["coding"][0]["code"] for f in flags
    }
    indicator = {c["source"]["topic"]["code"]: c["indicator"] for c in cards_for(alerts, patient_page_url=PAGE)}
    mapping = {"critical": "PH", "warning": "PM", "info": "PL"}
    assert {code: mapping[indicator[code]] for code in indicator} == priority


def test_unknown_alert_code_keeps_the_rules_severity():
    [card] = cards_for([alert("new-pattern", severity="warning")], patient_page_url=PAGE)
    assert card["indicator"] == "warning"
    [card] = cards_for([alert("new-pattern", severity="bogus")], patient_page_url=PAGE)
    assert card["indicator"] == "info"


def test_card_fields():
    [card] = cards_for(
        [alert("hyperprogression", summary="Possible hyperprogression: TGR ratio 3.1")],
        patient_page_url=PAGE,
        source_url="https://immunorad.example/about",
    )
    assert set(card) == {"uuid", "summary", "indicator", "source", "detail", "links"}
    assert uuid.UUID(card["uuid"])
    assert card["summary"] == "Possible hyperprogression: TGR ratio 3.1"
    assert card["source"]["label"] == "immunorad" and card["source"]["url"] == "https://immunorad.example/about"
    assert card["links"] == [{"label": "Open the immunorad response assessment", "url": PAGE, "type": "absolute"}]
    detail = card["detail"]
    assert "- TGR ratio 3.1 (≥ 2)" in detail and "- RECIST PD at E2" in detail
    assert "Rule `HPD_KAS2020`; source: Kas 2020, JAMA Oncol." in detail
    assert "key-E1" not in detail and "key-E1" not in card["summary"]
    # stable uuid for the same alert, different for another
    again = cards_for([alert("hyperprogression")], patient_page_url=PAGE)[0]
    assert again["uuid"] == card["uuid"]
    assert cards_for([alert("irae")], patient_page_url=PAGE)[0]["uuid"] != card["uuid"]


def test_summary_is_shorter_than_140_characters():
    long = "Possible hyperprogression " + " ".join(["with a very long explanation"] * 12)
    [card] = cards_for([alert("hyperprogression", summary=long)], patient_page_url=PAGE)
    assert len(card["summary"]) < 140 and card["summary"].endswith("…")
    assert "\n" not in card["summary"]


def test_detail_markdown_is_escaped():
    [card] = cards_for(
        [alert("irae", detail="GGO in *both* lungs <script>\n[link](javascript:x)")], patient_page_url=PAGE
    )
    assert r"\*both\*" in card["detail"] and r"\<script\>" in card["detail"] and r"\[link\]" in card["detail"]
    assert markdown_escape("a_b|c") == r"a\_b\|c"


def test_only_active_alerts_make_cards_most_urgent_first():
    alerts = [
        alert("pseudoprogression"),
        alert("irae"),
        alert("hyperprogression"),
        alert("fast-progression", status="inactive"),
        alert("confirmation-due", status="entered-in-error"),
        dataclasses.replace(
            alert("abscopal-response"), finding=dataclasses.replace(alert("abscopal-response").finding, alert=False)
        ),
    ]
    cards = cards_for(alerts, patient_page_url=PAGE, source_label="immunorad (Radiology)")
    assert [c["source"]["topic"]["code"] for c in cards] == ["hyperprogression", "irae", "pseudoprogression"]
    assert {c["source"]["label"] for c in cards} == {"immunorad (Radiology)"}
    assert cards_for([], patient_page_url=PAGE) == []


def test_real_findings_make_cards():
    findings = [f for f in assess(cases.E1).findings if f.alert]
    alerts = [AlertState(f, f"key-E1/{f.code}/{f.key}", "active", f.scan_date, f.scan_date) for f in findings]
    for card in cards_for(alerts, patient_page_url=PAGE):
        assert card["indicator"] in ("info", "warning", "critical") and 0 < len(card["summary"]) < 140


def test_patient_page_url_must_be_absolute():
    with pytest.raises(ValueError, match="patient_page_url"):
        cards_for([alert("irae")], patient_page_url="/ui/patients/1")


def test_discovery_document():
    document = discovery_document()
    [service] = document["services"]
    assert service["id"] == "immunorad-alerts"
    assert service["hook"] == "patient-view"
    assert service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}
    assert service["description"] and service["title"]


def test_the_same_finding_never_gives_two_cards():
    # Issue 15: "the same dissociated response card appeared twice". Two alert states of one finding (e.g. an old
    # identifier next to the current one) give one card; two irAE organ patterns are two findings, two cards.
    dissociated = alert("dissociated-response", severity="warning")
    again = dataclasses.replace(dissociated, identifier="other/dissociated-response")
    assert len(cards_for([dissociated, again], patient_page_url=PAGE)) == 1
    colitis, hepatitis = (
        dataclasses.replace(
            alert("irae", severity="warning"),
            identifier=f"p/irae/{key}",
            finding=dataclasses.replace(alert("irae").finding, key=key, distinct_by_key=True),
        )
        for key in ("colitis", "hepatitis")
    )
    assert len(cards_for([colitis, hepatitis], patient_page_url=PAGE)) == 2
