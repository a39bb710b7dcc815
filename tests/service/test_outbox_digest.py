"""A delivered outbox message keeps the SHA-256 and length of exactly the bytes the EHR received, and drops its
Bundle (the FHIR store keeps the resources; issue 18 item 3). A message not yet delivered keeps its Bundle."""

from __future__ import annotations

from sqlalchemy import select

from service.api import create_app
from service.assessment.worker import Worker
from service.persistence.models import AuditEvent, OutboxMessage
from tests.e2e import kinetics_cases as kc
from tests.rules.cases import E3


def test_a_delivered_bundle_is_kept_as_the_hash_of_the_bytes_sent(settings_factory, ehr, db):
    settings = settings_factory(ehr_fhir_url=ehr.base_url)
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    kc.post_bundle(client, kc.clinical_bundle(kc.KExample("E3", E3), mrn="MRN-DIGEST"))
    kc.post_bundle(client, kc.measurements_bundle(E3, "MRN-DIGEST", labels=("BL", "TP1", "TP2")))

    ehr.down = True
    Worker(settings, db).drain()
    with db.read() as session:
        waiting = list(session.scalars(select(OutboxMessage)))
    assert waiting and all(m.status == "pending" and m.bundle and m.sent_sha256 is None for m in waiting)

    ehr.down = False
    with db.write() as session:
        for message in session.scalars(select(OutboxMessage)):
            message.next_attempt_at = message.created_at  # due now, not after the backoff
    Worker(settings, db).drain()
    with db.read() as session:
        delivered = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        audited = [e.detail["sha256"] for e in session.scalars(select(AuditEvent).where(AuditEvent.kind == "delivery"))]
    assert len(delivered) == len(waiting)
    assert all(m.status == "delivered" and m.bundle is None for m in delivered)
    accepted = ehr.received_sha256[-len(delivered) :]
    assert [m.sent_sha256 for m in delivered] == accepted
    assert sorted(audited) == sorted(accepted)
    assert all(m.sent_bytes and m.sent_bytes > 1000 for m in delivered)
