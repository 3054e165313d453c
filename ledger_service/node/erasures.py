"""A node of its own destroys its keys of every record erased on chain (docs/architecture.md, "Erasure").

The patient's signed erasure goes through the hub, which unpins the ciphertext and relays it; the data keys a
node wrapped for its own uploads live in the node's DB, so the node follows the chain's ``RecordErased``
events (through its own chain node, indexed with a confirmation depth) and destroys them itself. On start it
catches up first, so a node restored from a backup destroys again what the chain says is erased.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow, CommitmentSaltRow, RecordLabelRow, RecordRow


class ErasureFollower:
    def __init__(self, *, db: Database, indexer: EventIndexer) -> None:
        self.db = db
        self.indexer = indexer

    def shred_erased(self) -> int:
        """Destroy the keys of every record of this node that the chain shows erased; returns how many records."""
        self.indexer.catch_up()
        erased_on_chain = select(ChainEventRow.record_id).where(ChainEventRow.name == "RecordErased")
        with self.db.session() as s:
            live = list(
                s.execute(
                    select(RecordRow).where(RecordRow.erased_at.is_(None), RecordRow.record_id.in_(erased_on_chain))
                ).scalars()
            )
            for record in live:
                s.execute(delete(CommitmentSaltRow).where(CommitmentSaltRow.record_id == record.record_id))
                s.execute(delete(RecordLabelRow).where(RecordLabelRow.record_id == record.record_id))
                record.state, record.erased_at = "erased", datetime.now(UTC)
        return len(live)
