"""Pseudo-labels: one row per logged request the teacher has labelled (``flywheel pseudo-label``).

The table is defined (SQLAlchemy Core) in ``labeling/pseudo_db.py``; this migration only creates it.

Revision ID: 0002_pseudo_labels
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_pseudo_labels"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``pseudo_labels`` and its indexes."""
    op.create_table(
        "pseudo_labels",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("audio_sha256", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),  # ok | error | missing_audio
        sa.Column("teacher_version", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rttm_path", sa.Text),
        sa.Column("segments", sa.JSON),
        sa.Column("num_speakers", sa.Integer),
        sa.Column("duration_s", sa.Float),
        sa.Column("confidence", sa.Float),
        sa.Column("segmentation_confidence", sa.Float),
        sa.Column("clustering_confidence", sa.Float),
        sa.Column("disagreement", sa.Float),
        sa.Column("reference_speech_s", sa.Float),
        sa.Column("missed_s", sa.Float),
        sa.Column("false_alarm_s", sa.Float),
        sa.Column("confusion_s", sa.Float),
        sa.Column("teacher_s", sa.Float),
        sa.Column("error", sa.Text),
    )
    for column in ("audio_sha256", "status", "created_at"):
        op.create_index(f"ix_pseudo_labels_{column}", "pseudo_labels", [column])


def downgrade() -> None:
    """Drop ``pseudo_labels``."""
    op.drop_table("pseudo_labels")
