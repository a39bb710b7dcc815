"""Measurements: merged-into, fragment, symptom-driven scan and PET tracer (contract §9.3)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

A lesion that joined another is stored with the identity of the lesion it joined (``merged_into``); a fragment of
a lesion that split is flagged (``fragment``) so that its groups are added, not taken as a conflict; a scan done
for a new symptom (iRECIST early confirmation) and the PET tracer can be stated on a FHIR Observation. DICOM
images carry the latter two in their header (kept in ``studies.header``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("merged_into", sa.String(255), nullable=True))
        batch.add_column(sa.Column("fragment", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("symptom_driven", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("tracer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("tracer")
        batch.drop_column("symptom_driven")
        batch.drop_column("fragment")
        batch.drop_column("merged_into")
