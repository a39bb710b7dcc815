"""DICOM SEG intake and pixel retention (contract §9.6)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``pixel_data``: CT/MR/PET instance bytes (zlib) kept for IMMUNORAD_PIXEL_RETENTION_DAYS, then dropped (the row
stays, marking that they were). ``segments``: each segment of a stored SEG, measured over its series. On
PostgreSQL the pixel column is stored EXTERNAL (out of line, not compressed again: it is zlib already).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pixel_data",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("instance_id", sa.Integer(), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("instance_id"),
    )
    op.create_index("ix_pixel_data_series_uid", "pixel_data", ["series_uid"])
    op.create_index("ix_pixel_data_expires_at", "pixel_data", ["expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pixel_data ALTER COLUMN data SET STORAGE EXTERNAL")
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seg_sop_uid", sa.String(64), nullable=False),
        sa.Column("segment_number", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(64), sa.ForeignKey("patients.id"), nullable=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=True),
        sa.Column("lesion_id", sa.Integer(), sa.ForeignKey("lesions.id"), nullable=True),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("scan_date", sa.Date(), nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("category", sa.JSON(), nullable=True),
        sa.Column("property_type", sa.JSON(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("identity_key", sa.String(255), nullable=True),
        sa.Column("identity_source", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("voxel_count", sa.BigInteger(), nullable=True),
        sa.Column("volume_cm3", sa.Numeric(14, 3), nullable=True),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("mask", sa.LargeBinary(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("seg_sop_uid", "segment_number"),
    )
    for column in ("seg_sop_uid", "patient_id", "study_id", "lesion_id"):
        op.create_index(f"ix_segments_{column}", "segments", [column])


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_table("pixel_data")
