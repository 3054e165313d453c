"""Per-read disclosure: each read's disclosure is a ``logAccess`` (or ``logEmergencyAccess``) transaction
that re-checks consent on chain, traced in the DB before its receipt.

The pending delivery row (with the transaction hash) is what lets a retry of a request whose process died
mid-wait adopt the transaction instead of logging a second disclosure, and what recovery finishes after a
restart (:meth:`PerReadDisclosureStrategy.finish_traced_disclosures`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from eth_utils import keccak
from sqlalchemy import insert, select, update

from ledger_service.chain.ledger import ConsentLedgerContract, record_error
from ledger_service.chain.wire import Receipt
from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import EMERGENCY_PURPOSE, hex32, purpose_to_bytes32
from ledger_service.errors import TransactionReverted
from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest


def _now() -> datetime:
    return datetime.now(UTC)


class PerReadDisclosureStrategy:
    """A :class:`ledger_service.records.disclosure.DisclosureStrategy`: the disclosure is on chain before
    any byte is released. It also adopts the traced transactions a crash left, whatever the mode now."""

    def __init__(self, *, db: Database, ledger: ConsentLedgerContract) -> None:
        self.db = db
        self.ledger = ledger  # the custodian's handle: it sends the disclosures

    def disclose(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, keyed: KeyedRequest
    ) -> DeliveryRow:
        # On chain a twin is caught by its traced row, not by asking for a replay between attempts.
        key, request_hash = keyed.key, keyed.request_hash
        if request.precheck is not None:
            request.precheck()
        try:
            return self._disclose_on_chain(record, accessor, request, key=key, request_hash=request_hash)
        except TransactionReverted as exc:
            raise (request.refusal() if exc.error_name == request.refused_by else record_error(exc)) from exc

    def _disclose_on_chain(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, *, key: str | None, request_hash: str
    ) -> DeliveryRow:
        """Send the disclosure transaction, trace it in the DB before waiting, then record its event."""
        traced: list[int] = []

        def trace(tx_hash: bytes) -> None:
            # Plain INSERT ... RETURNING statements: this runs once per read, and the ORM's unit of work
            # cost more than the writes themselves.
            with self.db.session() as s:
                delivery_id = s.execute(
                    insert(DeliveryRow)
                    .values(
                        record_id=record.record_id,
                        version=record.current_version,  # replaced by the event's version
                        patient=record.patient,
                        accessor=accessor,
                        purpose=request.purpose,
                        consent_id=None,
                        emergency=request.purpose == EMERGENCY_PURPOSE,
                        reason=request.reason,
                        status="pending",
                        tx_hash="0x" + tx_hash.hex(),
                        idempotency_key=key,
                        created_at=_now(),
                    )
                    .returning(DeliveryRow.id)
                ).scalar_one()
                IdempotencyStore.remember_delivery(s, accessor, key, request_hash, delivery_id, state="pending")
            traced.append(delivery_id)

        rid = bytes.fromhex(record.record_id[2:])
        try:
            if request.reason is None:
                receipt = self.ledger.log_access(
                    record.patient, rid, accessor, purpose_to_bytes32(request.purpose), on_sent=trace
                )
            else:
                # Only the reason's hash goes on chain: the text may carry clinical detail.
                reason_hash = keccak(request.reason.encode("utf-8"))
                receipt = self.ledger.log_emergency_access(record.patient, rid, accessor, reason_hash, on_sent=trace)
        except TransactionReverted:
            if traced:
                self._forget_delivery(traced[0])
            raise
        return self._finish_delivery(traced[0], receipt, key)

    def _finish_delivery(self, delivery_id: int, receipt: Receipt, key: str | None) -> DeliveryRow:
        """Fill a traced delivery from its mined disclosure event and answer its idempotency key."""
        event, log_index = self.ledger.disclosure_event(receipt)
        with self.db.session() as s:
            delivery = s.scalars(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(
                    version=int(event.args["version"]),
                    consent_id=hex32(event.args["consentId"]) if event.name == "AccessLogged" else None,
                    status="logged",
                    block_number=receipt.block_number,
                    log_index=log_index,
                )
                .returning(DeliveryRow)
            ).one()
            IdempotencyStore.delivery_done(s, delivery.accessor, key)
            return delivery

    def _forget_delivery(self, delivery_id: int) -> None:
        """A traced disclosure whose transaction failed: drop it and free its idempotency key."""
        with self.db.session() as s:
            delivery = s.get(DeliveryRow, delivery_id)
            if delivery is None:
                return
            IdempotencyStore.forget_delivery(s, delivery.accessor, delivery.idempotency_key)
            s.delete(delivery)

    def adopt(self, delivery: DeliveryRow) -> DeliveryRow | None:
        """Finish a traced disclosure left by an earlier attempt; None if its transaction failed."""
        assert delivery.tx_hash is not None
        try:
            receipt = self.ledger.wait_for(bytes.fromhex(delivery.tx_hash[2:]), action="disclosure")
        except TransactionReverted:
            self._forget_delivery(delivery.id)
            return None
        return self._finish_delivery(delivery.id, receipt, delivery.idempotency_key)

    def finish_traced_disclosures(self) -> tuple[int, int]:
        """Resolve disclosures a crash left pending: finish mined ones, drop failed ones.

        A transaction with no receipt yet is left pending (it may still be mined); a retry of its
        request, or the next start, resolves it. Returns (finished, dropped).
        """
        with self.db.session() as s:
            pending = list(s.execute(select(DeliveryRow).where(DeliveryRow.status == "pending")).scalars())
        finished = dropped = 0
        for delivery in pending:
            assert delivery.tx_hash is not None
            receipt = self.ledger.receipt(bytes.fromhex(delivery.tx_hash[2:]))
            if receipt is None:
                continue
            if receipt.status == 1:
                self._finish_delivery(delivery.id, receipt, delivery.idempotency_key)
                finished += 1
            else:
                self._forget_delivery(delivery.id)
                dropped += 1
        return finished, dropped
