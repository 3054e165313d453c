"""Nonce allocation shared through the metadata DB, so several processes (API replicas, the
CLI next to a running server) can sign for one account without replacing each other's
transactions.

A nonce is reserved in one short write transaction and the transaction is sent after it commits:
no DB lock is held across a network round trip. (SQLite has one writer lock for the whole file, so
holding it for a send stalled every other write, and a slow node turned into busy timeouts.) Within
a process the sender's own lock keeps reservation and send in order; across processes a later
nonce may reach the node first, which nodes queue until the earlier one arrives. A send that fails
gives its nonce back unless a later one has been reserved since; a gap left that way is closed by
:meth:`DbNonceLedger.resync` when the stuck transaction's wait times out. Reservations need no
fsync (``Database.relaxed_engine``): one lost to a power cut is below the node's count, which
every reservation also takes into account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text, update

from ledger_service.db.database import Database
from ledger_service.db.models import AccountNonceRow

T = TypeVar("T")

# Plain SQL, valid on SQLite and PostgreSQL: this runs once per transaction sent, on the hot path.
_RESERVE = text(
    "UPDATE account_nonces SET next_nonce = CASE WHEN next_nonce > :pending THEN next_nonce ELSE :pending END + 1 "
    "WHERE address = :address RETURNING next_nonce"
)
_GIVE_BACK = text("UPDATE account_nonces SET next_nonce = :nonce WHERE address = :address AND next_nonce = :nonce + 1")


class DbNonceLedger:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def _ensure_row(self, address: str) -> None:
        with self._lock:
            if address in self._known:
                return
        statement = self.db.dialect_insert(AccountNonceRow).values(address=address, next_nonce=0)
        with self.db.engine.begin() as connection:
            connection.execute(statement.on_conflict_do_nothing())
        with self._lock:
            self._known.add(address)

    def _reserve(self, address: str, node_pending: int) -> int:
        """Take ``max(recorded next, the node's pending count)`` and record the one after it."""
        with self.db.relaxed_engine.begin() as connection:
            taken = connection.execute(_RESERVE, {"address": address, "pending": node_pending}).scalar_one()
        return int(taken) - 1

    def _give_back(self, address: str, nonce: int) -> None:
        with self.db.relaxed_engine.begin() as connection:
            connection.execute(_GIVE_BACK, {"address": address, "nonce": nonce})

    def allocate(self, address: str, node_pending: Callable[[], int], send: Callable[[int], T]) -> T:
        self._ensure_row(address)
        nonce = self._reserve(address, node_pending())
        try:
            return send(nonce)
        except BaseException:
            self._give_back(address, nonce)
            raise

    def resync(self, address: str, node_pending: int) -> None:
        """Take the node's pending count as the next nonce (it may be lower than recorded)."""
        with self.db.engine.begin() as connection:
            connection.execute(
                update(AccountNonceRow).where(AccountNonceRow.address == address).values(next_nonce=node_pending)
            )
