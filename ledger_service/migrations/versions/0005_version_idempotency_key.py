"""The upload's idempotency key on each pending record version, for crash recovery.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("record_versions", sa.Column("idempotency_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("record_versions", "idempotency_key")
