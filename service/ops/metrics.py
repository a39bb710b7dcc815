"""Prometheus metrics, read from the database at scrape time so that every replica and process agrees.

Counters are totals over the shared database (instances received, evaluations, deliveries, errors) and
gauges describe the current state (queue depth, pending deliveries, delivery lag, active alerts).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from service.persistence.db import Database, DatabaseUnavailable
from service.persistence.models import Alert, Assessment, AuditEvent, Instance, Job, OutboxMessage, utcnow


class DatabaseCollector:
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self):
        up = GaugeMetricFamily("immunorad_database_up", "1 when the database answered this scrape")
        try:
            with self.db.read() as session:
                instances = CounterMetricFamily(
                    "immunorad_instances_received", "DICOM instances stored", labels=["kind"]
                )
                for kind, count in session.execute(select(Instance.kind, func.count()).group_by(Instance.kind)):
                    instances.add_metric([kind], count)
                evaluations = CounterMetricFamily("immunorad_evaluations", "assessment versions recorded")
                evaluations.add_metric([], session.scalar(select(func.count()).select_from(Assessment)) or 0)
                alerts = GaugeMetricFamily("immunorad_alerts", "alerts by code and status", labels=["code", "status"])
                for code, status, count in session.execute(
                    select(Alert.code, Alert.status, func.count()).group_by(Alert.code, Alert.status)
                ):
                    alerts.add_metric([code, status], count)
                queue = GaugeMetricFamily("immunorad_queue_depth", "jobs by kind and status", labels=["kind", "status"])
                for kind, status, count in session.execute(
                    select(Job.kind, Job.status, func.count())
                    .where(Job.status != "done")
                    .group_by(Job.kind, Job.status)
                ):
                    queue.add_metric([kind, status], count)
                outbox = GaugeMetricFamily("immunorad_outbox", "EHR deliveries by status", labels=["status"])
                for status, count in session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                ):
                    outbox.add_metric([status], count)
                oldest = session.scalar(
                    select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending")
                )
                lag = GaugeMetricFamily("immunorad_delivery_lag_seconds", "age of the oldest undelivered report")
                lag.add_metric([], (utcnow() - _aware(oldest)).total_seconds() if oldest else 0.0)
                errors = CounterMetricFamily("immunorad_errors", "audited failures by kind", labels=["kind"])
                for kind, count in session.execute(
                    select(AuditEvent.kind, func.count()).where(AuditEvent.outcome != "0").group_by(AuditEvent.kind)
                ):
                    errors.add_metric([kind], count)
            up.add_metric([], 1)
            yield from (up, instances, evaluations, alerts, queue, outbox, lag, errors)
        except DatabaseUnavailable:
            up.add_metric([], 0)
            yield up


def _aware(value):
    import datetime as dt

    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def render_metrics(db: Database) -> bytes:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(db))
    return generate_latest(registry)
