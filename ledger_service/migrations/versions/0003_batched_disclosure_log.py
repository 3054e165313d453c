"""Batched disclosure log: entries, subtree nodes, anchored batches; deliveries matched by leaf.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disclosure_batches",
        sa.Column("to_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("from_index", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=66), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("to_index"),
        sa.UniqueConstraint("tx_hash"),
    )
    op.create_table(
        "disclosure_log_entries",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("patient", sa.String(length=42), nullable=False),
        sa.Column("record_id", sa.String(length=66), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index"),
    )
    op.create_index(op.f("ix_disclosure_log_entries_patient"), "disclosure_log_entries", ["patient"], unique=False)
    op.create_table(
        "disclosure_log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "position"),
    )
    # SQLite cannot alter a column in place: batch mode copies the table (PostgreSQL alters it).
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaf_index", sa.BigInteger(), nullable=True))
        batch_op.alter_column("tx_hash", existing_type=sa.VARCHAR(length=66), nullable=True)
        batch_op.alter_column("block_number", existing_type=sa.BIGINT(), nullable=True)
        batch_op.alter_column("log_index", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f("ix_deliveries_leaf_index"), ["leaf_index"], unique=True)


def downgrade() -> None:
    # Batched deliveries have no transaction: they cannot survive the NOT NULL columns of 0002.
    op.execute("DELETE FROM deliveries WHERE leaf_index IS NOT NULL")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_leaf_index"))
        batch_op.alter_column("log_index", existing_type=sa.INTEGER(), nullable=False)
        batch_op.alter_column("block_number", existing_type=sa.BIGINT(), nullable=False)
        batch_op.alter_column("tx_hash", existing_type=sa.VARCHAR(length=66), nullable=False)
        batch_op.drop_column("leaf_index")
    op.drop_table("disclosure_log_nodes")
    op.drop_index(op.f("ix_disclosure_log_entries_patient"), table_name="disclosure_log_entries")
    op.drop_table("disclosure_log_entries")
    op.drop_table("disclosure_batches")
