"""Batched disclosure mode: the disclosure log, its receipts, and the batcher.

In batched mode a release is not logged by its own transaction: its :class:`DisclosureEntry` (the accessor's
signed access request, with the block that authorized it) is appended to an RFC 9162 Merkle log kept in the
metadata DB (:class:`ledger_service.db.leaf_store.DbLeafStore`), in the same DB transaction as its delivery
row, before any byte is released. :class:`DisclosureBatcher`
anchors the log's root on chain (``anchorDisclosureBatch(root, anchoredSize, size)``) every ``batch_size``
entries or once the oldest unanchored entry is ``batch_interval`` seconds old, and records each anchored
batch. A patient's disclosure then carries a receipt (:mod:`ledger_service.transparency.receipts`) that
checks against the chain alone.

Crash safety: the batcher reconciles with ``disclosureBatchHead()`` and the ``DisclosureBatchAnchored``
events on start and whenever the contract refuses a batch, so an anchor whose DB row was lost is adopted.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete, func, select

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.database import Database
from ledger_service.db.leaf_store import DbLeafStore
from ledger_service.db.models import DisclosureBatchRow, DisclosureLogEntryRow
from ledger_service.domain.codes import hex32
from ledger_service.errors import AuditError, LedgerError, TransactionReverted
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.receipts import Anchor, ReceiptError, make_receipt

log = logging.getLogger(__name__)

_LOG_RANGE: Final = 10_000  # blocks per eth_getLogs while reconciling


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ----------------------------------------------------------------- the log and its anchors


@dataclass(frozen=True)
class LoggedEntry:
    leaf_index: int
    entry: DisclosureEntry
    created_at: datetime


class DisclosureLog:
    """The operator's batched disclosure log: entries, anchored batches, receipts."""

    def __init__(self, db: Database, *, chain_id: int, contract: str) -> None:
        self.db = db
        self.chain_id = chain_id
        self.contract = contract
        self.store = DbLeafStore(db)
        self.merkle = MerkleLog(self.store)

    def size(self) -> int:
        return self.store.size()

    def entries_of(self, patient: str) -> list[LoggedEntry]:
        """The patient's entries, newest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(DisclosureLogEntryRow)
                .where(DisclosureLogEntryRow.patient == patient)
                .order_by(DisclosureLogEntryRow.leaf_index.desc())
            ).scalars()
            return [LoggedEntry(r.leaf_index, DisclosureEntry.decode(bytes(r.entry)), _utc(r.created_at)) for r in rows]

    def oldest_unanchored(self) -> datetime | None:
        anchored = self.anchored_size()
        with self.db.session() as s:
            created = s.execute(
                select(DisclosureLogEntryRow.created_at).where(DisclosureLogEntryRow.leaf_index == anchored)
            ).scalar_one_or_none()
        return None if created is None else _utc(created)

    # ------------------------------------------------------------- batches

    def batches(self) -> list[Anchor]:
        with self.db.session() as s:
            rows = s.execute(select(DisclosureBatchRow).order_by(DisclosureBatchRow.to_index)).scalars().all()
        return [
            Anchor(bytes.fromhex(r.root[2:]), bytes.fromhex(r.tx_hash[2:]), r.block_number, r.from_index, r.to_index)
            for r in rows
        ]

    def last_batch(self) -> DisclosureBatchRow | None:
        with self.db.session() as s:
            return s.execute(
                select(DisclosureBatchRow).order_by(DisclosureBatchRow.to_index.desc()).limit(1)
            ).scalar_one_or_none()

    def anchored_size(self) -> int:
        with self.db.session() as s:
            last = s.execute(select(func.max(DisclosureBatchRow.to_index))).scalar()
        return 0 if last is None else int(last)

    def record_batch(self, anchor: Anchor) -> None:
        with self.db.session() as s:
            if s.get(DisclosureBatchRow, anchor.to_index) is None:
                s.add(
                    DisclosureBatchRow(
                        to_index=anchor.to_index,
                        from_index=anchor.from_index,
                        root=hex32(anchor.root),
                        tx_hash=hex32(anchor.tx_hash),
                        block_number=anchor.block_number,
                        created_at=datetime.now(UTC),
                    )
                )

    def forget_batches_after(self, size: int) -> int:
        """Drop batch rows beyond ``size`` (their anchors are no longer on chain: a reorganization)."""
        with self.db.session() as s:
            result = s.execute(delete(DisclosureBatchRow).where(DisclosureBatchRow.to_index > size))
            return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------- receipts

    def proof(self, leaf_index: int, batches: Sequence[Anchor] | None = None) -> dict[str, Any]:
        """The receipt of leaf ``leaf_index`` (as JSON) once a batch covers it, else its pending status."""
        batches = self.batches() if batches is None else batches
        position = bisect.bisect_right([b.to_index for b in batches], leaf_index)
        if position == len(batches):
            return {"status": "pending", "leafIndex": leaf_index}
        try:
            receipt = make_receipt(
                self.merkle, leaf_index, chain_id=self.chain_id, contract=self.contract, anchor=batches[position]
            )
        except (ReceiptError, AuditError) as exc:
            # The DB no longer produces the anchored root: never hand out a receipt that cannot verify.
            log.error("no receipt for disclosure-log leaf %d: %s", leaf_index, exc)
            return {"status": "unavailable", "leafIndex": leaf_index, "error": str(exc)}
        return receipt.to_json()


# ----------------------------------------------------------------- anchoring


class DisclosureBatcher:
    """Anchors the disclosure log's root on chain every ``batch_size`` entries or ``batch_interval`` seconds."""

    def __init__(
        self,
        disclosure_log: DisclosureLog,
        ledger: ConsentLedgerContract,
        *,
        batch_size: int,
        batch_interval: float,
        start_block: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = disclosure_log
        self.ledger = ledger
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.start_block = start_block
        self.clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def notify(self) -> None:
        """An entry was appended: re-check whether a batch is due now."""
        self._wake.set()

    # ------------------------------------------------------------- chain state

    def chain_head(self) -> tuple[bytes, int]:
        """``disclosureBatchHead()``: the last anchored root and tree size."""
        root, size = self.ledger.view("disclosureBatchHead")
        return bytes(root), int(size)

    def reconcile(self) -> int:
        """Make the DB's batches match the chain's; returns the number of anchors adopted from the chain.

        A crash between the anchoring transaction and its DB row leaves the chain ahead: those anchors
        are read back from their events and recorded. A chain behind the DB (a reorganization dropped an
        anchor) drops the DB's extra rows, so the entries are anchored again. An anchored root the log
        does not produce is refused (:class:`AuditError`): the log and the chain disagree.
        """
        with self._lock:
            return self._reconcile()

    def _reconcile(self) -> int:
        root, size = self.chain_head()
        local = self.log.anchored_size()
        if size < local:
            dropped = self.log.forget_batches_after(size)
            log.warning("chain's disclosure batch head is %d, the DB's %d: dropped %d batch rows", size, local, dropped)
            return 0
        if size == local:
            return 0
        last = self.log.last_batch()
        from_block = last.block_number if last is not None else self.start_block
        head_block = self.ledger.block_number()
        adopted = 0
        for lo in range(from_block, head_block + 1, _LOG_RANGE):
            hi = min(lo + _LOG_RANGE - 1, head_block)
            for event in self.ledger.events_between("DisclosureBatchAnchored", lo, hi):
                if event.name != "DisclosureBatchAnchored":
                    continue
                to_index = int(event.args["toIndex"])
                if to_index <= local:
                    continue
                anchor = Anchor(
                    bytes(event.args["root"]),
                    event.tx_hash,
                    event.block_number,
                    int(event.args["fromIndex"]),
                    to_index,
                )
                self._check_anchor(anchor)
                self.log.record_batch(anchor)
                local = to_index
                adopted += 1
        if local != size:
            raise AuditError(
                f"disclosureBatchHead() says {size} entries (root {hex32(root)}) are anchored; the "
                f"DisclosureBatchAnchored events since block {from_block} reach only {local}"
            )
        if adopted:
            log.info("adopted %d disclosure batch(es) anchored on chain but missing from the DB", adopted)
        return adopted

    def _check_anchor(self, anchor: Anchor) -> None:
        size = self.log.size()
        if anchor.to_index > size:
            raise AuditError(
                f"a disclosure batch of size {anchor.to_index} is anchored on chain, the log holds {size} entries"
            )
        local = self.log.merkle.root(anchor.to_index)
        if local != anchor.root:
            raise AuditError(
                f"the root anchored for size {anchor.to_index} is {hex32(anchor.root)}; the log's is {hex32(local)}"
            )

    # ------------------------------------------------------------- anchoring

    def pending(self) -> int:
        return max(0, self.log.size() - self.log.anchored_size())

    def due(self) -> bool:
        pending = self.pending()
        if pending <= 0:
            return False
        if pending >= self.batch_size:
            return True
        oldest = self.log.oldest_unanchored()
        return oldest is not None and self.clock() - oldest.timestamp() >= self.batch_interval

    def anchor_now(self) -> Anchor | None:
        """Anchor every entry not anchored yet (None when there are none)."""
        with self._lock:
            try:
                return self._anchor()
            except TransactionReverted as exc:
                if exc.error_name != "InvalidBatch":
                    raise
                # Another process anchored first, or our DB lost a row: catch up and try once more.
                log.warning("anchorDisclosureBatch refused (%s): reconciling with the chain", exc)
                self._reconcile()
                return self._anchor()

    def _anchor(self) -> Anchor | None:
        size = self.log.size()
        anchored = self.log.anchored_size()
        if size <= anchored:
            return None
        root = self.log.merkle.root(size)
        receipt = self.ledger.anchor_disclosure_batch(root, anchored, size)
        event = self.ledger.event(receipt, "DisclosureBatchAnchored")
        anchor = Anchor(
            bytes(event.args["root"]),
            receipt.tx_hash,
            receipt.block_number,
            int(event.args["fromIndex"]),
            int(event.args["toIndex"]),
        )
        self.log.record_batch(anchor)
        log.info(
            "anchored disclosure log [%d, %d) root %s in block %d", anchored, size, hex32(root), anchor.block_number
        )
        return anchor

    # ------------------------------------------------------------- the background thread

    def run(self, stop: threading.Event) -> None:
        """Reconcile, then anchor whenever a batch is due, until ``stop``; anchors what is left on the way out."""
        poll = max(0.05, min(1.0, self.batch_interval / 4))
        reconciled = False
        failures = 0
        while not stop.is_set():
            try:
                if not reconciled:
                    self.reconcile()
                    reconciled = True
                if self.due():
                    self.anchor_now()
                    failures = 0
                    continue
                failures = 0
            except (LedgerError, OSError) as exc:
                failures += 1
                # An AuditError means the chain and the log disagree: no retry will fix it, an operator must.
                level = logging.ERROR if isinstance(exc, AuditError) else logging.WARNING
                log.log(level, "disclosure batcher: %s (attempt %d)", exc, failures)
                stop.wait(min(30.0, poll * 2**failures))
                continue
            self._wake.wait(poll)
            self._wake.clear()
        if reconciled:
            try:
                self.anchor_now()
            except (LedgerError, OSError) as exc:
                log.warning("disclosure batcher: entries left unanchored at shutdown: %s", exc)
