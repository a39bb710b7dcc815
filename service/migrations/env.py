"""Alembic environment: migrations run online against IMMUNORAD_DATABASE_URL (set by service.persistence.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from service.persistence.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url: service.persistence.db.migrate sets it before running the migrations")
    engine = create_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several replicas may start at once: serialise migrations with an advisory lock.
            connection.execute(text("SELECT pg_advisory_lock(7356001)"))
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(7356001)"))
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `immunorad migrate` against the database")
run_migrations_online()
