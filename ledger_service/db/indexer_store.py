"""The event index in the metadata DB: the :class:`~ledger_service.chain.indexer.IndexStore` the indexer writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow, IndexedBlockRow, IndexerCursorRow

if TYPE_CHECKING:
    from ledger_service.chain.indexer import IndexedEvent

CURSOR_NAME: Final = "ledger-events"


class DbIndexStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def cursor(self) -> tuple[int, str] | None:
        with self.db.session() as s:
            row = s.get(IndexerCursorRow, CURSOR_NAME)
            return None if row is None else (row.block_number, row.block_hash)

    def indexed_blocks(self, at_or_below: int) -> list[tuple[int, str]]:
        with self.db.session() as s:
            rows = s.execute(
                select(IndexedBlockRow.block_number, IndexedBlockRow.block_hash)
                .where(IndexedBlockRow.block_number <= at_or_below)
                .order_by(IndexedBlockRow.block_number.desc())
            ).all()
        return [(number, block_hash) for number, block_hash in rows]

    def rewind(self, fork_point: int, fork_hash: str) -> None:
        with self.db.session() as s:
            s.execute(delete(ChainEventRow).where(ChainEventRow.block_number > fork_point))
            s.execute(delete(IndexedBlockRow).where(IndexedBlockRow.block_number > fork_point))
            self._move_cursor(s, fork_point, fork_hash)

    def append(
        self, events: Sequence[IndexedEvent], blocks: Mapping[int, str], cursor: tuple[int, str], keep_from: int
    ) -> None:
        with self.db.session() as s:
            for event in events:
                s.add(
                    ChainEventRow(
                        name=event.name,
                        patient=event.patient,
                        record_id=event.record_id,
                        block_number=event.block_number,
                        block_hash=event.block_hash,
                        block_timestamp=event.block_timestamp,
                        tx_hash=event.tx_hash,
                        log_index=event.log_index,
                        args=event.args,
                    )
                )
            for number, block_hash in blocks.items():
                s.merge(IndexedBlockRow(block_number=number, block_hash=block_hash))
            s.execute(delete(IndexedBlockRow).where(IndexedBlockRow.block_number < keep_from))
            self._move_cursor(s, *cursor)

    @staticmethod
    def _move_cursor(s: Session, block_number: int, block_hash: str) -> None:
        row = s.get(IndexerCursorRow, CURSOR_NAME)
        if row is None:
            s.add(IndexerCursorRow(name=CURSOR_NAME, block_number=block_number, block_hash=block_hash))
        else:
            row.block_number, row.block_hash = block_number, block_hash
