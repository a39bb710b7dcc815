"""Fixtures of the security tests: the SMART test EHR, our registered signing key, apps with the audit routes."""

from __future__ import annotations

import pytest

from tests.support.smart_ehr import SmartEhr, new_key, write_pem

CLIENT_ID = "immunorad-test"
KID = "immunorad-key-1"


@pytest.fixture
def client_key():
    return new_key("ec")


@pytest.fixture
def smart_ehr(client_key):
    server = SmartEhr(client_id=CLIENT_ID)
    server.register_client_key(client_key, KID)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def key_file(client_key, tmp_path):
    return write_pem(client_key, tmp_path / "ehr-client.pem")


@pytest.fixture
def smart_settings(settings_factory, smart_ehr, key_file):
    """Settings that deliver to and pull from the SMART EHR, authenticated by SMART Backend Services."""

    def make(**overrides):
        values = dict(
            ehr_fhir_url=smart_ehr.base_url,
            ehr_client_id=CLIENT_ID,
            ehr_private_key=str(key_file),
            ehr_key_id=KID,
            ehr_timeout_seconds=5.0,
            ehr_scope="system/DiagnosticReport.write system/Observation.write system/Flag.write system/*.read",
        )
        values.update(overrides)
        return settings_factory(**values)

    return make


def make_client(settings):
    """The Flask app in-process with the static token, and the audit routes registered (until app.py does)."""
    from service.api import create_app
    from service.api.audit_fhir_api import blueprint

    app = create_app(settings)
    if "audit_fhir" not in app.blueprints:
        app.register_blueprint(blueprint)
    client = app.test_client()
    return client
