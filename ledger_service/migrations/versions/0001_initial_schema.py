"""Initial schema: records, versions, wrapped keys, delivery log, idempotency, event index.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=42), nullable=True),
        sa.Column("record_id", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tx_hash", "log_index"),
    )
    op.create_index(op.f("ix_chain_events_block_number"), "chain_events", ["block_number"], unique=False)
    op.create_index("ix_chain_events_name_patient", "chain_events", ["name", "patient"], unique=False)
    op.create_index(op.f("ix_chain_events_record_id"), "chain_events", ["record_id"], unique=False)
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=66), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("patient", sa.String(length=42), nullable=False),
        sa.Column("accessor", sa.String(length=42), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("consent_id", sa.String(length=66), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tx_hash"),
    )
    op.create_index(op.f("ix_deliveries_accessor"), "deliveries", ["accessor"], unique=False)
    op.create_index("ix_deliveries_patient_block", "deliveries", ["patient", "block_number"], unique=False)
    op.create_index(op.f("ix_deliveries_record_id"), "deliveries", ["record_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "indexed_blocks",
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("block_number"),
    )
    op.create_table(
        "indexer_cursor",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(length=66), nullable=False),
        sa.Column("patient", sa.String(length=42), nullable=False),
        sa.Column("author", sa.String(length=42), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=66), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erasure_tx", sa.String(length=66), nullable=True),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(op.f("ix_records_author"), "records", ["author"], unique=False)
    op.create_index(op.f("ix_records_patient"), "records", ["patient"], unique=False)
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=66), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("commitment_salt", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.record_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_id", "version"),
    )
    op.create_index(op.f("ix_data_keys_kek_id"), "data_keys", ["kek_id"], unique=False)
    op.create_index(op.f("ix_data_keys_record_id"), "data_keys", ["record_id"], unique=False)
    op.create_table(
        "record_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=66), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cid", sa.String(length=100), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=False),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=False),
        sa.Column("commitment", sa.String(length=66), nullable=False),
        sa.Column("version_hash", sa.String(length=66), nullable=False),
        sa.Column("previous_hash", sa.String(length=66), nullable=False),
        sa.Column("author", sa.String(length=42), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.record_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_id", "version"),
    )
    op.create_index(op.f("ix_record_versions_record_id"), "record_versions", ["record_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_record_versions_record_id"), table_name="record_versions")
    op.drop_table("record_versions")
    op.drop_index(op.f("ix_data_keys_record_id"), table_name="data_keys")
    op.drop_index(op.f("ix_data_keys_kek_id"), table_name="data_keys")
    op.drop_table("data_keys")
    op.drop_index(op.f("ix_records_patient"), table_name="records")
    op.drop_index(op.f("ix_records_author"), table_name="records")
    op.drop_table("records")
    op.drop_table("indexer_cursor")
    op.drop_table("indexed_blocks")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_deliveries_record_id"), table_name="deliveries")
    op.drop_index("ix_deliveries_patient_block", table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_accessor"), table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(op.f("ix_chain_events_record_id"), table_name="chain_events")
    op.drop_index("ix_chain_events_name_patient", table_name="chain_events")
    op.drop_index(op.f("ix_chain_events_block_number"), table_name="chain_events")
    op.drop_table("chain_events")
