"""Emergency reviews: a patient marks an emergency access to their records as reviewed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_reviews",
        sa.Column("patient", sa.String(length=42), nullable=False),
        sa.Column("disclosure_id", sa.String(length=96), nullable=False),
        sa.Column("reviewed_by", sa.String(length=42), nullable=False),
        sa.Column("reviewed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("patient", "disclosure_id"),
    )


def downgrade() -> None:
    op.drop_table("emergency_reviews")
