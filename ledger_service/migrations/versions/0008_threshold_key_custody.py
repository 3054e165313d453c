"""Threshold key custody: a version's data key is with the key custodians, not wrapped in this DB.

Each version keeps only its plaintext commitment's salt here (``commitment_salts``, formerly ``data_keys``
without the wrapped key and its KEK id): the custodians hold the shares of the data key, and erasure destroys
their per-record keys (docs/architecture.md, "Key custody"). A data dir whose versions were wrapped under a
KEK (before custody) cannot be read after this revision: start it fresh (docs/operations.md, "Upgrading").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_data_keys_kek_id", table_name="data_keys")
    op.drop_index("ix_data_keys_record_id", table_name="data_keys")
    with op.batch_alter_table("data_keys") as batch:
        batch.drop_column("kek_id")
        batch.drop_column("wrapped_key")
    op.rename_table("data_keys", "commitment_salts")
    op.create_index("ix_commitment_salts_record_id", "commitment_salts", ["record_id"], unique=False)


def downgrade() -> None:
    # The schema comes back; the wrapped keys do not (they were dropped): rows keep an empty KEK id and key,
    # which no KEK unwraps. Restore the data dir from before revision 0008 to read those versions again.
    op.drop_index("ix_commitment_salts_record_id", table_name="commitment_salts")
    op.rename_table("commitment_salts", "data_keys")
    with op.batch_alter_table("data_keys") as batch:
        batch.add_column(sa.Column("kek_id", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
    op.create_index("ix_data_keys_kek_id", "data_keys", ["kek_id"], unique=False)
    op.create_index("ix_data_keys_record_id", "data_keys", ["record_id"], unique=False)
