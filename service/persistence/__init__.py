"""Persistence: database engines, transactions and migrations (SQLite or PostgreSQL), the SQLAlchemy model, the
write operations shared by ingest, API and worker, the measurement fact ↔ row mapping (``measurements``) and the
versioned FHIR resource store. The Alembic scripts stay
in ``service/migrations``."""
