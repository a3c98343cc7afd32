"""Prediction log: one row per request.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``predictions`` and its indexes."""
    op.create_table(
        "predictions",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(200)),
        sa.Column("arm", sa.String(64)),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(128)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("audio_duration_s", sa.Float),
        sa.Column("audio_sha256", sa.String(64)),
        sa.Column("segments", sa.JSON),
        sa.Column("num_speakers", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    for column in ("created_at", "client_id", "arm", "audio_sha256", "status"):
        op.create_index(f"ix_predictions_{column}", "predictions", [column])


def downgrade() -> None:
    """Drop ``predictions``."""
    op.drop_table("predictions")
