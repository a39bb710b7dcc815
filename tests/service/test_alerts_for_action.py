"""Alerts for action through the service (issue 15; contract §9.4): FHIR in, Flags out through ``/fhir``, CDS Hooks
cards, and the Flags the EHR stand-in (``tests/support/ehr.py``) received.

- a responder raises none; a patient whose hyperprogression is not evaluable raises none (an ``info`` card only
  with IMMUNORAD_ALERT_NOT_EVALUABLE=true);
- one hyperprogression patient raises ONE Flag that stays one across three later scans (its flag-detail moving to
  the latest report) and turns inactive — in our store and in the EHR — once the definition no longer holds;
- the same finding at two scans never gives two cards.
"""

from __future__ import annotations

import dataclasses

import pytest

from rules.scenario import Case, Lesion, T, c
from service.api import create_app
from service.assessment.worker import Worker
from tests.e2e import kinetics_cases as kc
from tests.rules.cases import E1

D = kc.D
FLAG_IDENTIFIER = f"{kc.CANONICAL}/identifier/flag"


@pytest.fixture
def cds_ehr():
    ehr = kc.CdsEhr()
    yield ehr
    ehr.close()


def service(settings_factory, cds_ehr, ehr, **overrides):
    settings = settings_factory(ehr_fhir_url=ehr.base_url, **cds_ehr.settings_overrides(), **overrides)
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return settings, client


def evaluate(settings, db) -> None:
    Worker(settings, db).drain()  # evaluates, then delivers the outbox to the EHR stand-in


def identifier_of(flag: dict) -> str:
    [value] = [i["value"] for i in flag["identifier"] if i["system"] == FLAG_IDENTIFIER]
    return value


def ehr_flags(ehr, code: str) -> list[dict]:
    return [f for f in ehr.of_type("Flag") if kc.flag_code(f) == code]


def test_a_responder_raises_no_alert(settings_factory, cds_ehr, ehr, db):
    # E1: −30.00 % (63 vs 90 mm) PR, then −35.56 % and −32.22 %: a responder. No pre-baseline scan, so
    # hyperprogression is not evaluable: stated in the report, not an alert.
    settings, client = service(settings_factory, cds_ehr, ehr)
    mrn = kc.submit(client, kc.KExample("E1", E1), mrn="MRN-RESPONDER")
    evaluate(settings, db)
    assert kc.flags(client, mrn) == []
    assert kc.patient_view(client, cds_ehr, mrn) == []
    assert ehr.of_type("Flag") == [] and len(ehr.reports()) == 3
    # The kinetics Observation states it (contract §9.4): not evaluable, with the reason.
    kinetics = kc.kinetics_of(client, kc.report_at(client, mrn, E1.scans["TP1"]))
    assert kc.definition_reason(kinetics, "kas-2020").startswith("E0_MISSING")


def test_not_evaluable_is_an_info_card_only_when_configured(settings_factory, cds_ehr, ehr, db):
    settings, client = service(settings_factory, cds_ehr, ehr, alert_not_evaluable=True)
    mrn = kc.submit(client, kc.KExample("E1", E1), mrn="MRN-RESEARCH-SITE")
    evaluate(settings, db)
    [card] = kc.patient_view(client, cds_ehr, mrn)
    assert card["indicator"] == "info" and card["source"]["topic"]["code"] == "hpd-not-evaluable"
    [flag] = kc.flags(client, mrn)
    assert kc.flag_code(flag) == "hpd-not-evaluable" and flag["status"] == "active"
    assert [kc.flag_code(f) for f in ehr.of_type("Flag")] == ["hpd-not-evaluable"]


# K1 (kinetics spec K1): E0 40 mm, E1 44 mm, E2 80 mm (+81.8 %, two new liver lesions) → Kas 2020 met; then three
# later scans, still growing.
LATER = {"TP2": D("2024-05-13"), "TP3": D("2024-07-08"), "TP4": D("2024-09-02")}
K1_LATER = dataclasses.replace(
    kc.K1_CASE,
    scans={**kc.K1_CASE.scans, **LATER},
    lesions=tuple(
        dataclasses.replace(
            lesion,
            cells={**lesion.cells, **{label: c(ld, ld - 10) for label, ld in zip(LATER, (44, 48, 52), strict=True)}},
        )
        for lesion in kc.K1_CASE.lesions
    ),
)


def test_one_hyperprogression_flag_across_later_scans_until_it_no_longer_holds(settings_factory, cds_ehr, ehr, db):
    settings, client = service(settings_factory, cds_ehr, ehr)
    example = dataclasses.replace(kc.K1, case=K1_LATER)
    mrn = "MRN-HPD-LIFECYCLE"
    kc.post_bundle(client, kc.clinical_bundle(example, mrn=mrn))
    kc.post_bundle(client, kc.measurements_bundle(K1_LATER, mrn, labels=("E0", "BL", "TP1")))
    evaluate(settings, db)
    [flag] = kc.flags_by_code(client, mrn)["hyperprogression"]
    identifier, e2 = identifier_of(flag), "2024-03-18"
    assert flag["status"] == "active" and flag["period"] == {"start": e2}
    assert kc.flag_report(flag)["reference"] == f"DiagnosticReport/{kc.report_at(client, mrn, D(e2))['id']}"

    for label, day in LATER.items():  # three later scans, one at a time
        kc.post_bundle(client, kc.measurements_bundle(K1_LATER, mrn, labels=(label,)))
        evaluate(settings, db)
        [flag] = kc.flags_by_code(client, mrn)["hyperprogression"]
        assert identifier_of(flag) == identifier and flag["status"] == "active"
        assert flag["period"] == {"start": e2}  # active since E2
        # flag-detail → the latest report, whose impression states the alert.
        latest = kc.report_at(client, mrn, day)
        assert kc.flag_report(flag)["reference"] == f"DiagnosticReport/{latest['id']}"
        assert "hyperprogressive disease (Kas 2020 definition met)" in latest["conclusion"]
        assert len(ehr_flags(ehr, "hyperprogression")) == 1
        cards = [c["source"]["topic"]["code"] for c in kc.patient_view(client, cds_ehr, mrn)]
        assert cards.count("hyperprogression") == 1 and len(cards) == len(set(cards))
    assert client.get(f"/fhir/Flag?identifier={FLAG_IDENTIFIER}|{identifier}").get_json()["total"] == 1

    # The E2 measurements are corrected: T1 and T2 22 → 24 mm each, S 44 → 48 mm (+9.09 % < +20 %, no RECIST PD):
    # Kas 2020 (RECIST PD and ΔTGR > 100) no longer holds → the Flag turns inactive, here and in the EHR.
    bundle = kc.measurements_bundle(K1_LATER, mrn, labels=("TP1",))
    for entry in bundle["entry"]:
        for part in entry["resource"]["component"]:
            if kc.has_code(part["code"], "http://loinc.org", "33728-7") and part["valueQuantity"]["value"] == 40:
                part["valueQuantity"]["value"] = 24
    kc.post_bundle(client, bundle)
    evaluate(settings, db)
    [flag] = kc.flags_by_code(client, mrn)["hyperprogression"]
    assert identifier_of(flag) == identifier and flag["status"] == "inactive"
    assert flag["period"]["start"] == e2 and flag["period"]["end"] >= e2
    [delivered] = ehr_flags(ehr, "hyperprogression")
    assert delivered["status"] == "inactive"
    assert "hyperprogression" not in [c["source"]["topic"]["code"] for c in kc.patient_view(client, cds_ehr, mrn)]
    assert ehr.rejected == []


# K9 (kinetics spec K9) with a second follow-up where L2 lung still grows while L1 and L3 respond: the
# dissociated response holds at both scans — one alert, one card.
K9_TWICE = Case(
    "K9-twice",
    D("2024-01-15"),
    {"BL": D("2024-01-10"), "TP1": D("2024-03-06"), "TP2": D("2024-05-06")},
    (
        Lesion("L1 liver", T, "liver", cells={"BL": c(30, 22), "TP1": c(15, 11), "TP2": c(14, 10)}),
        Lesion("L2 lung", T, "lung", cells={"BL": c(20, 15), "TP1": c(27, 20), "TP2": c(28, 21)}),
        Lesion("L3 node", T, "lymph node", nodal=True, cells={"BL": c(24, 18), "TP1": c(18, 12), "TP2": c(17, 11)}),
    ),
)


def test_the_same_finding_at_two_scans_is_one_card(settings_factory, cds_ehr, ehr, db):
    # TP1: L2 20 → 27 mm (+35 %, +7 mm) progressing, L1 −50 %, L3 SA −33 % responding; TP2: L2 28 mm (+40 %).
    settings, client = service(settings_factory, cds_ehr, ehr)
    mrn = kc.submit(client, kc.KExample("K9-twice", K9_TWICE))
    evaluate(settings, db)
    cards = kc.patient_view(client, cds_ehr, mrn)
    assert [c["source"]["topic"]["code"] for c in cards] == ["dissociated-response"]
    [flag] = kc.flags_by_code(client, mrn)["dissociated-response"]
    assert flag["status"] == "active"
    assert kc.flag_report(flag)["reference"] == f"DiagnosticReport/{kc.report_at(client, mrn, D('2024-05-06'))['id']}"
    assert len(ehr_flags(ehr, "dissociated-response")) == 1


def test_the_demo_cohort_alerts_only_where_action_is_needed(settings_factory, cds_ehr, ehr, db):
    """``immunorad demo``'s patients (service/demo/cohort.py): the responder raises nothing; the hyperprogression patient
    has one hyperprogression alert; no card appears twice (issue 15's alert-fatigue findings)."""
    from tests.ui.cohort import load_demo

    settings, client = service(settings_factory, cds_ehr, ehr)
    load_demo(client, settings, db)
    cards = {mrn: [c["source"]["topic"]["code"] for c in kc.patient_view(client, cds_ehr, mrn)] for mrn in DEMO}
    flags = {mrn: sorted(kc.flag_code(f) for f in kc.flags(client, mrn) if f["status"] == "active") for mrn in DEMO}
    assert cards["DEMO-0001"] == [] and flags["DEMO-0001"] == []  # PR at −30 %: nothing to act on
    assert flags["DEMO-0002"] == ["pseudoprogression"]  # RECIST PD, iRECIST iUPD then iPR
    assert flags["DEMO-0003"] == ["dissociated-response"]
    # K1: Kas 2020 met, OAK fast progression, and the iUPD at E2 awaits confirmation.
    assert flags["DEMO-0004"] == ["confirmation-due", "fast-progression", "hyperprogression"]
    for mrn, codes in cards.items():
        assert sorted(codes) == flags[mrn] and len(codes) == len(set(codes)), mrn
    assert "hpd-not-evaluable" not in {code for codes in cards.values() for code in codes}


DEMO = ("DEMO-0001", "DEMO-0002", "DEMO-0003", "DEMO-0004")
