"""Alerts as FHIR Flag resources with a lifecycle (contract §5; interop-notes §5.2): ``active`` while the rules
raise them, ``inactive`` once resolved, ``entered-in-error`` when a person says so — never duplicated by a
re-evaluation, and delivered to the EHR in the same transaction Bundle as the report that raised them.

Everything goes in through ``POST /fhir`` and comes out through ``GET /fhir/Flag?…``, ``/api/alerts``, CDS Hooks
and the EHR's FHIR endpoint (``tests/support/ehr.py``); re-evaluation is ``immunorad reassess`` in-process.
"""

from __future__ import annotations

import io

import pytest

from rules.scenario import Case
from service.api import create_app
from service.assessment.reassess import reassess
from service.assessment.worker import Worker
from tests.e2e import kinetics_cases as kc
from tests.rules.cases import E3, E7

FLAG_IDENTIFIER = f"{kc.CANONICAL}/identifier/flag"


@pytest.fixture
def cds_ehr():
    ehr = kc.CdsEhr()
    yield ehr
    ehr.close()


@pytest.fixture
def settings(settings_factory, cds_ehr):
    return settings_factory(**cds_ehr.settings_overrides())


def evaluate(settings, db) -> None:
    Worker(settings, db).drain()


def reassess_patient(settings, mrn: str) -> str:
    out = io.StringIO()
    assert reassess(settings, patient=mrn, everyone=False, force=True, out=out) == 0
    return out.getvalue()


def identifier_of(flag: dict) -> str:
    [identifier] = [i["value"] for i in flag["identifier"] if i["system"] == FLAG_IDENTIFIER]
    return identifier


def snapshot(client, mrn: str) -> dict[str, tuple[str, str]]:
    """Flag business identifier → (resource id, status); asserts one resource per identifier."""
    flags = kc.flags(client, mrn)
    out = {}
    for flag in flags:
        identifier = identifier_of(flag)
        assert identifier not in out, f"two Flags with identifier {identifier}"
        out[identifier] = (flag["id"], flag["status"])
        found = client.get(f"/fhir/Flag?identifier={FLAG_IDENTIFIER}|{identifier}").get_json()
        assert found["total"] == 1, identifier
    return out


def staged(example_case: Case, labels: tuple[str, ...]) -> tuple[str, ...]:
    """The case's scan labels up to and including the last of ``labels`` (date order)."""
    ordered = [label for label, _ in sorted(example_case.scans.items(), key=lambda item: item[1])]
    return tuple(ordered[: ordered.index(labels[-1]) + 1])


# --- no duplicates -------------------------------------------------------------------------------------------------


def test_reevaluation_never_duplicates_flags(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    first = snapshot(app_client, mrn)
    assert sorted(kc.flag_code(f) for f in kc.flags(app_client, mrn)) == [
        "confirmation-due",
        "fast-progression",
        "hyperprogression",
    ]
    # The same data again (conditional PUTs): nothing changes.
    kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    assert snapshot(app_client, mrn) == first
    # `immunorad reassess --patient MRN --force`: a new assessment version, the same Flags.
    reassess_patient(settings, mrn)
    assert snapshot(app_client, mrn) == first
    # A correction of the E2 measurement changes the report (amended), never the set of Flags.
    example = kc.KExample("K1", kc.K1_CASE)
    bundle = kc.measurements_bundle(example.case, mrn, labels=("TP1",))
    for entry in bundle["entry"]:
        for part in entry["resource"]["component"]:
            if kc.has_code(part["code"], "http://loinc.org", "33728-7") and part["valueQuantity"]["value"] == 40:
                part["valueQuantity"]["value"] = 41
    kc.post_bundle(app_client, bundle)
    evaluate(settings, db)
    assert snapshot(app_client, mrn) == first
    [report] = kc.reports(app_client, mrn)
    assert report["status"] == "amended"
    assert len(app_client.get(f"/api/patients/{mrn}/assessments").get_json()["assessments"]) == 3


# --- resolved --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, iupd, confirming, then",
    [
        (E3, "TP2", "TP3", "iCPD"),  # SoD 25 → 31 mm: iUPD confirmed (+6 mm ≥ 5)
        (E7, "TP1", "TP2", "iPR"),  # new lesion while targets respond, then iPR: pseudoprogression
    ],
    ids=["E3-confirmed", "E7-reset"],
)
def test_confirmation_due_is_resolved_when_the_confirming_scan_arrives(
    case, iupd, confirming, then, app_client, settings, db, cds_ehr
):
    mrn = f"MRN-{case.name}-LIFECYCLE"
    example = kc.KExample(case.name, case)
    kc.post_bundle(app_client, kc.clinical_bundle(example, mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(case, mrn, labels=staged(case, (iupd,))))
    evaluate(settings, db)
    iupd_day = case.scans[iupd]
    flags = kc.flags_by_code(app_client, mrn)
    [due] = flags["confirmation-due"]
    assert due["status"] == "active" and due["period"] == {"start": iupd_day.isoformat()}
    assert kc.flag_report(due)["reference"] == f"DiagnosticReport/{kc.report_at(app_client, mrn, iupd_day)['id']}"
    assert kc.indicators(kc.patient_view(app_client, cds_ehr, mrn))["confirmation-due"] == "warning"

    kc.post_bundle(app_client, kc.measurements_bundle(case, mrn, labels=(confirming,)))
    evaluate(settings, db)
    assert kc.categories(app_client, kc.report_at(app_client, mrn, case.scans[confirming]))["iRECIST"] == then
    flags = kc.flags_by_code(app_client, mrn)
    [resolved] = flags["confirmation-due"]
    assert resolved["id"] == due["id"]
    assert resolved["status"] == "inactive" and resolved["period"]["start"] == iupd_day.isoformat()
    assert resolved["period"]["end"] >= resolved["period"]["start"]
    assert kc.flag_report(resolved) == kc.flag_report(due)  # still the report of the iUPD scan
    cards = kc.indicators(kc.patient_view(app_client, cds_ehr, mrn))
    assert "confirmation-due" not in cards
    if then == "iPR":
        assert [f["status"] for f in flags["pseudoprogression"]] == ["active"]
        assert cards["pseudoprogression"] == "info"
    # A re-evaluation keeps it resolved, and single.
    before = snapshot(app_client, mrn)
    reassess_patient(settings, mrn)
    assert snapshot(app_client, mrn) == before


def test_a_resolved_flag_ends_at_the_scan_that_resolved_it(app_client, settings, db):
    mrn = "MRN-E3-PERIOD"
    kc.post_bundle(app_client, kc.clinical_bundle(kc.KExample("E3", E3), mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(E3, mrn, labels=("BL", "TP1", "TP2")))
    evaluate(settings, db)
    kc.post_bundle(app_client, kc.measurements_bundle(E3, mrn, labels=("TP3",)))
    evaluate(settings, db)
    [resolved] = kc.flags_by_code(app_client, mrn)["confirmation-due"]
    assert resolved["period"] == {"start": "2024-06-24", "end": "2024-07-22"}


# --- entered-in-error ------------------------------------------------------------------------------------------------


def _mark_in_error(client, mrn: str, code: str) -> str:
    [flag] = kc.flags_by_code(client, mrn)[code]
    identifier = identifier_of(flag)
    response = client.post(f"/api/alerts/{identifier}/entered-in-error")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"identifier": identifier, "status": "entered-in-error"}
    return identifier


def test_entered_in_error_stays_so_after_reevaluation(app_client, settings, db, cds_ehr):
    mrn = kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    before = snapshot(app_client, mrn)
    identifier = _mark_in_error(app_client, mrn, "hyperprogression")
    evaluate(settings, db)
    reassess_patient(settings, mrn)
    after = snapshot(app_client, mrn)
    assert after[identifier] == (before[identifier][0], "entered-in-error")
    assert {k: v for k, v in after.items() if k != identifier} == {k: v for k, v in before.items() if k != identifier}
    # New clinical data → a new evaluation that raises hyperprogression again: the human decision stands.
    kc.post_bundle(
        app_client,
        {"resourceType": "Bundle", "type": "transaction", "entry": [kc.ecog_entry(mrn, kc.D("2024-03-19"), 2)]},
    )
    evaluate(settings, db)
    reassess_patient(settings, mrn)
    assert snapshot(app_client, mrn)[identifier] == (before[identifier][0], "entered-in-error")
    body = app_client.get(f"/api/patients/{mrn}").get_json()
    assert "hyperprogression" in {f["code"] for f in body["assessment"]["findings"]}  # the rules still find it
    alerts = app_client.get(f"/api/alerts?patient={body['patient']['id']}").get_json()["alerts"]
    assert {a["identifier"]: a["status"] for a in alerts}[identifier] == "entered-in-error"
    cards = kc.indicators(kc.patient_view(app_client, cds_ehr, mrn))
    assert "hyperprogression" not in cards and cards["fast-progression"] == "critical"
    # An unknown alert is a 404.
    assert app_client.post("/api/alerts/no-such-alert/entered-in-error").status_code == 404


def test_entered_in_error_reaches_the_flag_resource(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    identifier = _mark_in_error(app_client, mrn, "hyperprogression")
    evaluate(settings, db)  # the job the API queued
    assert snapshot(app_client, mrn)[identifier][1] == "entered-in-error"


# --- delivery to the EHR ---------------------------------------------------------------------------------------------


def _client(settings):
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return client


def _check_bundles(ehr) -> None:
    """Every delivered Flag rides in the Bundle of the report it names, as a conditional PUT on its identifier."""
    for bundle in ehr.bundles:
        assert bundle["type"] == "transaction"
        by_url = {e["fullUrl"]: e for e in bundle["entry"]}
        reports = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
        assert len(reports) == 1
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Flag":
                continue
            assert entry["request"]["method"] == "PUT"
            assert entry["request"]["url"].startswith(f"Flag?identifier={FLAG_IDENTIFIER}|")
            assert "id" not in resource
            reference = kc.flag_report(resource)["reference"]
            assert by_url[reference] is reports[0], "the Flag's report is in the same transaction"
            assert resource["subject"]["reference"].startswith(f"Patient?identifier={kc.SYSTEM}|")


def test_flags_are_delivered_with_their_report_and_follow_its_lifecycle(settings_factory, cds_ehr, ehr, db):
    settings = settings_factory(ehr_fhir_url=ehr.base_url, **cds_ehr.settings_overrides())
    client = _client(settings)
    mrn = "MRN-E3-EHR"
    kc.post_bundle(client, kc.clinical_bundle(kc.KExample("E3", E3), mrn=mrn))
    kc.post_bundle(client, kc.measurements_bundle(E3, mrn, labels=("BL", "TP1", "TP2")))
    evaluate(settings, db)
    _check_bundles(ehr)
    flags = ehr.of_type("Flag")
    due = [f for f in flags if kc.flag_code(f) == "confirmation-due"]
    assert len(due) == 1 and due[0]["status"] == "active" and due[0]["period"]["start"] == "2024-06-24"
    key = ("Flag", f"{FLAG_IDENTIFIER}|{identifier_of(due[0])}")
    assert ehr.versions[key] == 1
    # The report of 2024-06-24 and its Flag came in one transaction.
    [bundle] = [b for b in ehr.bundles if any(e["resource"] is due[0] or e["resource"] == due[0] for e in b["entry"])]
    assert (
        next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")["resource"][
            "effectiveDateTime"
        ]
        == "2024-06-24"
    )

    # The confirming scan: the Flag is re-sent, inactive, to the same identifier (no duplicate in the EHR).
    kc.post_bundle(client, kc.measurements_bundle(E3, mrn, labels=("TP3",)))
    evaluate(settings, db)
    _check_bundles(ehr)
    due = [f for f in ehr.of_type("Flag") if kc.flag_code(f) == "confirmation-due"]
    assert len(due) == 1 and due[0]["status"] == "inactive"
    assert ehr.versions[key] == 2
    reports = ehr.reports()
    assert [r["effectiveDateTime"] for r in reports] == ["2024-04-29", "2024-06-24", "2024-07-22"]

    # Re-evaluation delivers nothing new; nothing is duplicated.
    delivered = len(ehr.bundles)
    reassess_patient(settings, mrn)
    evaluate(settings, db)
    assert len(ehr.bundles) == delivered
    assert len(ehr.of_type("Flag")) == len({identifier_of(f) for f in ehr.of_type("Flag")})

    # Entered-in-error, once re-evaluated, reaches the EHR too, with its report.
    identifier = _mark_in_error(client, mrn, "confirmation-due")
    evaluate(settings, db)
    reassess_patient(settings, mrn)
    evaluate(settings, db)
    _check_bundles(ehr)
    assert ehr.resources[("Flag", f"{FLAG_IDENTIFIER}|{identifier}")]["status"] == "entered-in-error"
    assert ehr.rejected == []
