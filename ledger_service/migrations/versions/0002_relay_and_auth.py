"""Relayed signed messages (replay-safe relay) and Sign-In with Ethereum nonces.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index(op.f("ix_auth_nonces_expires_at"), "auth_nonces", ["expires_at"], unique=False)
    op.create_table(
        "relayed_messages",
        sa.Column("digest", sa.String(length=66), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("patient", sa.String(length=42), nullable=False),
        sa.Column("consent_id", sa.String(length=66), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index(op.f("ix_relayed_messages_patient"), "relayed_messages", ["patient"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_relayed_messages_patient"), table_name="relayed_messages")
    op.drop_table("relayed_messages")
    op.drop_index(op.f("ix_auth_nonces_expires_at"), table_name="auth_nonces")
    op.drop_table("auth_nonces")
