"""Record labels: each record's title and original file name, sealed to its author's node and its patient.

The hub keeps only HPKE-sealed bytes (docs/architecture.md, "Record titles"); nothing here is readable
without the recipient's X25519 key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_labels",
        sa.Column("record_id", sa.String(length=66), sa.ForeignKey("records.record_id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=42), nullable=False),
        sa.Column("recipient_key", sa.LargeBinary(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "version", "recipient"),
    )


def downgrade() -> None:
    op.drop_table("record_labels")
