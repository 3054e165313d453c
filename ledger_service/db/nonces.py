"""Nonce allocation shared through the metadata DB, so several processes (API replicas, the
CLI next to a running server) can sign for one account without replacing each other's
transactions. The row update takes the row lock (PostgreSQL) or the writer lock (SQLite) for
the time of one send, which is what serialises the senders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Executable, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger_service.db.database import Database
from ledger_service.db.models import AccountNonceRow

T = TypeVar("T")


class DbNonceLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _ensure_row(self, address: str) -> None:
        values = {"address": address, "next_nonce": 0}
        statement: Executable
        if self.db.engine.dialect.name == "postgresql":
            statement = postgresql.insert(AccountNonceRow).values(**values).on_conflict_do_nothing()
        else:
            statement = sqlite.insert(AccountNonceRow).values(**values).on_conflict_do_nothing()
        with self.db.engine.begin() as connection:
            connection.execute(statement)

    def allocate(self, address: str, node_pending: Callable[[], int], send: Callable[[int], T]) -> T:
        self._ensure_row(address)
        with self.db.engine.begin() as connection:
            # A no-op write first: it takes the lock that keeps other senders out until commit.
            connection.execute(
                update(AccountNonceRow)
                .where(AccountNonceRow.address == address)
                .values(next_nonce=AccountNonceRow.next_nonce)
            )
            recorded = connection.execute(
                select(AccountNonceRow.next_nonce).where(AccountNonceRow.address == address)
            ).scalar_one()
            nonce = max(int(recorded), node_pending())
            result = send(nonce)
            connection.execute(
                update(AccountNonceRow).where(AccountNonceRow.address == address).values(next_nonce=nonce + 1)
            )
            return result

    def resync(self, address: str, node_pending: int) -> None:
        """Take the node's pending count as the next nonce (it may be lower than recorded)."""
        with self.db.engine.begin() as connection:
            connection.execute(
                update(AccountNonceRow).where(AccountNonceRow.address == address).values(next_nonce=node_pending)
            )
