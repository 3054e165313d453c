"""When a delivery's bytes started going out and when they were all sent.

A replayed read (same Idempotency-Key) may be served under an earlier disclosure only while that
disclosure's bytes were never sent in full; docs/security.md, "Idempotent reads".

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("release_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deliveries", sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    # Every existing delivery was answered before these marks existed: count it as sent in full, so
    # that no replay of it is ever served without a new disclosure.
    op.execute("UPDATE deliveries SET released_at = created_at WHERE status = 'logged'")


def downgrade() -> None:
    op.drop_column("deliveries", "released_at")
    op.drop_column("deliveries", "release_started_at")
