"""The demo cohort through the real FHIR interface of the in-process app (fast tests; the browser test runs the
same through gunicorn). Each Patient carries a distinctive name that no page or export may show."""

from __future__ import annotations

from service.assessment.worker import Worker
from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"
FAMILY, GIVEN = "Quintessa", "Zebulon"
COHORT = {mrn: case for mrn, _, case in demo_cohort()}


def send_case(client, settings, mrn: str, case) -> None:
    bundle = case_bundle(case, mrn, SYSTEM)
    bundle["entry"][0]["resource"]["name"] = [{"family": FAMILY, "given": [GIVEN]}]
    for body in (bundle, case_measurements_bundle(case, mrn, SYSTEM, settings.fhir_canonical)):
        response = client.post("/fhir", json=body)
        assert response.status_code == 200, response.get_json()


def load_demo(client, settings, db, mrns=None) -> dict[str, str]:
    """Send the demo patients, run the worker until idle; our patient id per MRN."""
    for mrn in mrns or COHORT:
        send_case(client, settings, mrn, COHORT[mrn])
    Worker(settings, db).drain()
    return {p["identifier"]: p["id"] for p in client.get("/api/patients").get_json()["patients"]}


def ensure_quality_api(client) -> None:
    """``/api/quality`` lives in ``service.api.quality_api``; until ``create_app`` registers it, the tests do."""
    from service.api.quality_api import blueprint

    app = client.application
    if "quality_api" not in app.blueprints:
        app.register_blueprint(blueprint)
