"""Fixtures of the fault-injection tests: an EHR that records arrivals, role processes, a read-only engine."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from tests.faults.harness import RecordingEhr, Roles


@pytest.fixture
def recording_ehr():
    server = RecordingEhr()
    server.start()
    yield server
    server.release()
    server.stop()


@pytest.fixture
def start_roles(db_url, tmp_path, recording_ehr):
    """``start_roles(name, **env)``: the three roles as real processes on the test database (stopped after)."""
    started: list[Roles] = []

    def start(name: str = "svc", *, roles=Roles.ROLES, ehr=True, **env: str) -> Roles:
        extra = {"IMMUNORAD_EHR_TIMEOUT_SECONDS": "2", **env}
        service = Roles(
            db_url=db_url,
            var_dir=tmp_path / name,
            ehr_url=recording_ehr.base_url if ehr else None,
            extra_env=extra,
            roles=roles,
        )
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def engine(db_url):
    """A read-only view of the test database for the checks (the roles write, the test only reads)."""
    eng = create_engine(db_url)
    yield eng
    eng.dispose()
