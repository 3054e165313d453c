"""Batched disclosure: a read's disclosure is an entry of the operator's Merkle log (:mod:`.batching`).

Consent is checked by eth_call pinned to block B; the entry (blockNumber B, B's timestamp) is appended
with its delivery row in one DB transaction, and nothing is released unless that commit succeeds; the
log's root is anchored on chain in batches (docs/architecture.md, "The path of a read").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from eth_utils import keccak

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.leaf_store import LogAppendConflict
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import (
    EMERGENCY_PURPOSE,
    EMERGENCY_ROLE,
    ZERO32,
    hex32,
    purpose_from_bytes32,
    purpose_to_bytes32,
)
from ledger_service.errors import ConsentDenied, PermissionDenied, RecordErased, RecordNotFound
from ledger_service.hub.batching import DisclosureLog
from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest, explain_refusal
from ledger_service.transparency.entries import DisclosureEntry

log = logging.getLogger(__name__)

# Appending retries when another writer takes the leaf index first (PostgreSQL without the lock).
MAX_APPEND_ATTEMPTS = 8


def _now() -> datetime:
    return datetime.now(UTC)


class _Replayed(Exception):
    """An identical request (same Idempotency-Key) committed its disclosure first: roll back, replay it."""


class BatchedDisclosureStrategy:
    """A :class:`ledger_service.records.disclosure.DisclosureStrategy` over the hub's disclosure log."""

    def __init__(
        self,
        *,
        db: Database,
        idempotency: IdempotencyStore,
        ledger: ConsentLedgerContract,
        disclosure_log: DisclosureLog,
        on_disclosure: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.idempotency = idempotency
        self.ledger = ledger  # the views at the pinned block
        self.disclosure_log = disclosure_log
        self._on_disclosure = on_disclosure  # the batcher's wake-up

    def disclose(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, keyed: KeyedRequest
    ) -> DeliveryRow:
        """Check at a pinned block, then append the disclosure entry and its delivery row atomically."""
        key, request_hash, replay = keyed.key, keyed.request_hash, keyed.replay
        purpose, reason = request.purpose, request.reason
        rid = bytes.fromhex(record.record_id[2:])
        block = self.ledger.block_number()
        timestamp = self.ledger.block_timestamp(block)
        onchain = self.ledger.record(record.patient, rid, block=block)
        if not onchain.exists:
            raise RecordNotFound(f"no record {record.record_id} on chain at block {block}", record_id=record.record_id)
        if onchain.erased:
            raise RecordErased(
                f"record {record.record_id} was erased at the patient's request", record_id=record.record_id
            )
        purpose_bytes = purpose_to_bytes32(purpose)
        if reason is None:
            consent = self.ledger.authorizing_consent(record.patient, accessor, rid, purpose_bytes, block=block)
            if consent is None:
                raise ConsentDenied(
                    explain_refusal(self.ledger, record, accessor, rid, purpose_bytes),
                    record_id=record.record_id,
                    accessor=accessor,
                    purpose=purpose,
                )
            reason_hash = ZERO32
        else:
            if not (
                self.ledger.has_role(EMERGENCY_ROLE, accessor, block=block)
                and self.ledger.is_active_provider(accessor, block=block)
            ):
                raise PermissionDenied(
                    f"{accessor} may not break the glass (no active EMERGENCY_ROLE)", account=accessor
                )
            consent, reason_hash = ZERO32, keccak(reason.encode("utf-8"))
        entry = DisclosureEntry(
            chain_id=self.disclosure_log.chain_id,
            ledger=self.ledger.address,
            record_id=rid,
            version=onchain.version,
            patient=record.patient,
            accessor=accessor,
            purpose=purpose_bytes,
            consent_id=consent,
            reason_hash=reason_hash,
            block_number=block,
            timestamp=timestamp,
        )
        for attempt in range(1, MAX_APPEND_ATTEMPTS + 1):
            earlier = replay()  # a concurrent twin may have finished first
            if earlier is not None:
                return earlier
            try:
                delivery = self._append_disclosure(entry, key, request_hash, reason=reason)
            except _Replayed:
                continue
            except DatabaseError as exc:
                conflict = isinstance(exc, LogAppendConflict) or isinstance(exc.__cause__, LogAppendConflict)
                if conflict and attempt < MAX_APPEND_ATTEMPTS:
                    log.info("disclosure-log append conflicted (attempt %d); retrying", attempt)
                    continue
                raise
            if self._on_disclosure is not None:
                self._on_disclosure()
            return delivery
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_disclosure(
        self, entry: DisclosureEntry, key: str | None, request_hash: str, *, reason: str | None
    ) -> DeliveryRow:
        """One DB transaction: the log entry (and its subtree nodes), the delivery row, the idempotency row."""
        with self.db.session() as s:
            leaf = self.disclosure_log.store.append_in(s, entry.encode())
            # Under the log's writer lock: a twin request that committed first wins.
            if key and self.idempotency.twin_is_unsent(s, entry.accessor, key):
                raise _Replayed
            delivery = DeliveryRow(
                record_id=hex32(entry.record_id),
                version=entry.version,
                patient=entry.patient,
                accessor=entry.accessor,
                purpose=EMERGENCY_PURPOSE if entry.emergency else purpose_from_bytes32(entry.purpose),
                consent_id=None if entry.emergency else hex32(entry.consent_id),
                emergency=entry.emergency,
                reason=reason,
                status="logged",
                tx_hash=None,
                block_number=entry.block_number,
                log_index=None,
                leaf_index=leaf,
                idempotency_key=key,
                created_at=_now(),
            )
            s.add(delivery)
            s.flush()
            IdempotencyStore.remember_delivery(s, entry.accessor, key, request_hash, delivery.id)
        return delivery
