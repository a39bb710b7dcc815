"""Shared fixtures: databases on both backends, settings, and the real-process service.

Every test that asks for ``db_url`` (directly or through ``settings``/``db``/``service``) runs twice, on
SQLite and on PostgreSQL (``--db`` narrows it). PostgreSQL must be reachable at IMMUNORAD_TEST_POSTGRES_URL
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``): a missing server fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support.ehr import FakeEhr
from tests.support.ports import free_port
from tests.support.processes import ServiceProcesses

POSTGRES_URL = os.environ.get("IMMUNORAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption(
        "--db",
        default=os.environ.get("IMMUNORAD_TEST_DB", "sqlite,postgresql"),
        help="comma list of backends for database tests: sqlite, postgresql",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        backends = [b.strip() for b in metafunc.config.getoption("--db").split(",") if b.strip()]
        metafunc.parametrize("backend", backends, scope="function")


def _pg_admin():
    import psycopg

    dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    from service.persistence.db import migrate

    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template():
    from service.persistence.db import migrate

    name = f"immunorad_tmpl_{uuid.uuid4().hex[:8]}"
    try:
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 -- any failure to reach PostgreSQL becomes one clear test failure
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc} (run .ci/run, or pass --db=sqlite)")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    migrate(f"{base}/{name}")
    yield name
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(backend, request, tmp_path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "immunorad.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    if backend == "postgresql":
        template = request.getfixturevalue("postgres_template")
        name = f"immunorad_t_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        request.addfinalizer(lambda: _drop(name))
        return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    raise ValueError(f"unknown backend {backend}")


def _drop(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings_factory(db_url, tmp_path):
    from service.ops.config import Settings

    def make(**overrides) -> Settings:
        values = dict(
            var_dir=tmp_path / "var",
            database_url=db_url,
            http_port=free_port(),
            dicom_port=free_port(),
            api_token="test-token",
            study_settle_seconds=0.5,
            # Evaluations run as soon as queued, so that ``Worker.drain`` right after an intake finds them due;
            # the tests of the quiet period set it themselves.
            evaluate_coalesce_seconds=0,
            pseudonym_key="test-pseudonym-key",
            worker_poll_seconds=0.1,
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_factory):
    return settings_factory()


@pytest.fixture
def db(settings):
    from service.persistence.db import Database

    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def app_client(settings):
    """The Flask app in-process (fast API tests); end-to-end tests use ``service`` (gunicorn) instead."""
    from service.api import create_app

    app = create_app(settings)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return client


@pytest.fixture
def ehr():
    server = FakeEhr()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service(db_url, tmp_path, ehr):
    """All roles as real processes (gunicorn API, DICOM listener, worker) against the test database."""
    processes = ServiceProcesses(db_url=db_url, var_dir=tmp_path / "var", ehr_url=ehr.base_url)
    processes.start()
    yield processes
    processes.stop()


def pytest_configure(config):
    os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK senders: no Nagle delay (issue 8)
