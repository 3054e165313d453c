"""Version 2 of the ledger: every disclosure is its accessor's signed request.

A delivery keeps the signed request (its EIP-712 digest, and the message with its signature) from before it
is relayed, so a retry re-sends the same request (docs/architecture.md, "Signed acts"). Version 2 is a fresh
deployment: a data dir of version 1 is refused at start (docs/operations.md, "Upgrading to version 2").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("erase_request", sa.Text(), nullable=True))
    op.add_column("record_versions", sa.Column("anchor_deadline", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("request_digest", sa.String(66), nullable=True))
        batch.add_column(sa.Column("signed_request", sa.Text(), nullable=True))
        batch.create_unique_constraint("uq_deliveries_request_digest", ["request_digest"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_deliveries_request_digest", type_="unique")
        batch.drop_column("signed_request")
        batch.drop_column("request_digest")
    op.drop_column("records", "erase_request")
    op.drop_column("record_versions", "anchor_deadline")
