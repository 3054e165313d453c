"""The batched disclosure log's storage: an RFC 9162 Merkle log's leaves and subtree hashes in the metadata DB.

Concurrency: the next leaf index is taken inside the appending transaction, under SQLite's writer lock
(``BEGIN IMMEDIATE``) or a PostgreSQL transaction-scoped advisory lock; the entry's primary key backs
both (a collision raises :class:`LogAppendConflict`, and the caller retries the whole transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.models import DisclosureLogEntryRow, DisclosureLogNodeRow
from ledger_service.domain.codes import hex32
from ledger_service.errors import AuditError
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import leaf_hash, node_hash

# An arbitrary constant naming the disclosure log's PostgreSQL advisory lock.
_PG_LOCK_KEY: Final = 0x434C_4C4F47  # "CLLOG"


class LogAppendConflict(DatabaseError):
    """Another writer took this leaf index first; retry the whole transaction."""

    code = "disclosure-log-conflict"


class DbLeafStore:
    """A :class:`~ledger_service.transparency.merkle.LeafStore` in the metadata DB.

    Subtree hashes never change once committed (the log is append-only), so they are cached.
    """

    def __init__(self, db: Database, *, cache_limit: int = 1 << 16) -> None:
        self.db = db
        self._cache: dict[tuple[int, int], bytes] = {}
        self._cache_limit = cache_limit
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------- LeafStore

    def size(self) -> int:
        with self.db.session() as s:
            return self._size_in(s)

    def entry(self, index: int) -> bytes:
        with self.db.session() as s:
            data = s.execute(
                select(DisclosureLogEntryRow.entry).where(DisclosureLogEntryRow.leaf_index == index)
            ).scalar_one_or_none()
        if data is None:
            raise AuditError(f"the disclosure log has no entry {index}")
        return bytes(data)

    def node(self, level: int, index: int) -> bytes:
        cached = self._cache.get((level, index))
        if cached is not None:
            return cached
        with self.db.session() as s:
            return self._node_in(s, level, index)

    def append(self, entry: bytes, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """The :class:`LeafStore` append, in its own transaction.

        ``nodes`` were computed by a :class:`MerkleLog` from the size it read before; if another writer
        appended meanwhile they are stale and the append is refused (:class:`LogAppendConflict`).
        """
        with self.db.session() as s:
            _index, computed = self._append(s, entry)
            if [(lv, ix, bytes(h)) for lv, ix, h in nodes] != computed:
                raise LogAppendConflict("the disclosure log grew while this entry's nodes were computed")

    # ------------------------------------------------------------- in a caller's transaction

    def append_in(self, session: Session, entry: bytes) -> int:
        """Append ``entry`` and the subtree nodes it completes in ``session``'s transaction; its leaf index.

        Must be the first statement of the transaction (it takes the log's writer lock).
        """
        index, _nodes = self._append(session, entry)
        return index

    def _lock(self, session: Session) -> None:
        connection = session.connection()
        dialect = connection.dialect.name
        if dialect == "sqlite":
            raw = connection.connection.dbapi_connection
            if raw is not None and not getattr(raw, "in_transaction", True):
                # Take SQLite's writer lock now, so the index read below cannot go stale.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})

    def _append(self, session: Session, entry: bytes) -> tuple[int, list[tuple[int, int, bytes]]]:
        decoded = DisclosureEntry.decode(entry)  # only canonical disclosure entries enter this log
        self._lock(session)
        index = self._size_in(session)
        digest = leaf_hash(entry)
        nodes = [(0, index, digest)]
        level, position = 0, index
        while position & 1:
            digest = node_hash(self._node_in(session, level, position - 1), digest)
            level += 1
            position >>= 1
            nodes.append((level, position, digest))
        session.add(
            DisclosureLogEntryRow(
                leaf_index=index,
                entry=entry,
                leaf_hash=nodes[0][2],
                patient=decoded.patient,
                record_id=hex32(decoded.record_id),
                created_at=datetime.now(UTC),
            )
        )
        for lv, ix, h in nodes:
            session.add(DisclosureLogNodeRow(level=lv, position=ix, hash=h))
        try:
            session.flush()
        except IntegrityError as exc:
            raise LogAppendConflict(f"disclosure-log leaf {index} was taken by another writer") from exc
        return index, nodes

    def _size_in(self, session: Session) -> int:
        last = session.execute(select(func.max(DisclosureLogEntryRow.leaf_index))).scalar()
        return 0 if last is None else int(last) + 1

    def _node_in(self, session: Session, level: int, index: int) -> bytes:
        value = session.execute(
            select(DisclosureLogNodeRow.hash).where(
                DisclosureLogNodeRow.level == level, DisclosureLogNodeRow.position == index
            )
        ).scalar_one_or_none()
        if value is None:
            raise AuditError(f"the disclosure log has no node ({level}, {index})")
        digest = bytes(value)
        with self._cache_lock:
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[(level, index)] = digest
        return digest
