"""Database access: engines, transactions and migrations, the same on SQLite and PostgreSQL.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so that a commit is on disk before
we acknowledge anything; write transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers in
different processes wait for each other (busy timeout) instead of failing on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
"""The Alembic scripts stay in ``service/migrations`` (package data, and where the migrations are looked for)."""


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or is locked beyond the busy timeout (DICOM answers 0xA700)."""


_INVALID_TRANSACTION = "8s2b"
"""SQLAlchemy's code for "Can't reconnect until invalid transaction is rolled back": the connection under the
transaction was invalidated (the server went away); only a rollback of the whole transaction clears it."""


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database is unavailable", not "this statement or its data is wrong".

    That is: the connection failed or died (``OperationalError``, ``InterfaceError``, any DBAPI error after which
    SQLAlchemy invalidated the connection, psycopg's own connection errors), SQLite is locked beyond the busy
    timeout (an ``OperationalError`` too), or a statement on a transaction whose connection had died
    (``PendingRollbackError``). Constraint violations and bad data are the caller's fault and stay what they are.
    """
    if isinstance(
        exc, (DatabaseUnavailable, OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
    ):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    if isinstance(exc, PendingRollbackError):
        if exc.code == _INVALID_TRANSACTION:
            return True
        # A session used again after a failed flush: judge by that failure when raised while handling it.
        earlier = exc.__cause__ or exc.__context__
        return earlier is not None and is_database_unavailable(earlier)
    return False


def _reason(exc: BaseException) -> str:
    """The driver's message, for logs and 503 bodies; SQLAlchemy's own text may quote SQL parameters (PHI)."""
    if isinstance(exc, PendingRollbackError):
        return "the transaction's connection was lost"
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc)[:200]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """Engines and session factories for one database URL."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.write_engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.write_engine, "connect", _sqlite_pragmas)

            @event.listens_for(self.engine, "begin")
            def _begin_deferred(conn):
                conn.exec_driver_sql("BEGIN")

            @event.listens_for(self.write_engine, "begin")
            def _begin_immediate(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=10,
                pool_pre_ping=True,
                pool_recycle=300,
                connect_args={"connect_timeout": 5},
            )
            self.write_engine = self.engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    def write(self) -> contextlib.AbstractContextManager[Session]:
        """A read-write transaction, committed on success; database outages become ``DatabaseUnavailable``."""
        return self._transaction(self._write)

    def read(self) -> contextlib.AbstractContextManager[Session]:
        """A read transaction; database outages become ``DatabaseUnavailable``, as in ``write``."""
        return self._transaction(self._read)

    @staticmethod
    @contextlib.contextmanager
    def _transaction(factory: sessionmaker) -> Iterator[Session]:
        try:
            with factory() as session, session.begin():
                yield session
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            # Leaving the ``with`` rolled the transaction back and returned (or, if dead, discarded) its connection.
            if is_database_unavailable(exc):
                raise DatabaseUnavailable(_reason(exc)) from exc
            raise

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness probe: any failure is "not ready"
            return False

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_migrate_lock = threading.Lock()


def migrate(url: str) -> None:
    """Apply every Alembic migration (``immunorad migrate``; ``serve`` runs it on start)."""
    from alembic import command

    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _migrate_lock:
        command.upgrade(alembic_config(url), "head")
