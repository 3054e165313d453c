"""Per-read disclosure: each read's disclosure is the accessor's signed ``AccessRequest`` (or
``EmergencyAccessRequest``), relayed to the ledger, which re-checks consent and logs it.

The pending delivery row holds the signed request before it is relayed. A retry of a request whose process
died mid-wait, and recovery after a restart (:meth:`PerReadDisclosureStrategy.finish_traced_disclosures`),
re-send that same signed request: the relay answers an identical message with its first outcome, and the
ledger accepts one nonce once, so a crash can never log a disclosure twice (docs/architecture.md, "The path
of a read").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import EMERGENCY_PURPOSE, hex32
from ledger_service.node.signing import worth_signing_again
from ledger_service.node.uploads import refused_for_sure
from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest, SignedAccess
from ledger_service.records.relaying import Relayer, RelayOutcome

log = logging.getLogger(__name__)


# Constant statements, executed with each row's values (a read writes both: building and keying a statement per
# call cost more than the write). An update sets the columns its values name.
_TRACE = insert(DeliveryRow).returning(DeliveryRow.id)
_FINISH = update(DeliveryRow).where(DeliveryRow.id == bindparam("delivery"))
_FINISH_RETURNING = _FINISH.returning(*DeliveryRow.__table__.columns)


def _now() -> datetime:
    return datetime.now(UTC)


class PerReadDisclosureStrategy:
    """A :class:`ledger_service.records.disclosure.DisclosureStrategy`: the disclosure is on chain before
    any byte is released. It also adopts the pending disclosures a crash left, whatever the mode now."""

    def __init__(self, *, db: Database, relayer: Relayer) -> None:
        self.db = db
        self.relayer = relayer  # the hub's relay (in process, or over HTTP for a node of its own)

    def disclose(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, keyed: KeyedRequest
    ) -> DeliveryRow:
        for attempt in range(2):
            signed = request.sign(attempt > 0)
            delivery_id, traced = self._trace(record, accessor, request, keyed, signed)
            try:
                outcome = self.relayer.relay(signed.message, signed.signature, reason=request.reason)
            except Exception as exc:
                if refused_for_sure(exc):
                    self._forget_delivery(delivery_id)
                    if attempt == 0 and worth_signing_again(exc):
                        continue  # its nonce was used by another node, or its deadline passed: sign afresh
                raise
            if request.on_logged is not None:
                version = outcome.version if outcome.version is not None else signed.message.version
                request.on_logged(version, outcome.tx_hash)
            return self._finish_delivery(delivery_id, outcome, keyed.key, traced)
        raise AssertionError("unreachable")

    def _trace(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, keyed: KeyedRequest, signed: SignedAccess
    ) -> tuple[int, dict[str, Any]]:
        """The pending delivery, holding the signed request, written before the request is relayed: its id and
        the values written."""
        values: dict[str, Any] = {
            "record_id": record.record_id,
            "version": signed.message.version,
            "patient": record.patient,
            "accessor": accessor,
            "purpose": request.purpose,
            "consent_id": None,
            "emergency": request.purpose == EMERGENCY_PURPOSE,
            "reason": request.reason,
            "status": "pending",
            "tx_hash": None,
            "request_digest": hex32(signed.digest),
            "signed_request": signed.to_json(),
            "idempotency_key": keyed.key,
            "created_at": _now(),
        }
        if not keyed.key:
            # A plain INSERT ... RETURNING on a connection: this runs once per read, and a session's unit of
            # work cost more than the write itself. It skips the fsync (Database.relaxed_engine): a read without
            # an idempotency key is never replayed, and no byte is released before its disclosure is on chain, so a
            # power cut can only lose the node's own trace of a disclosure the chain holds, or of one never sent
            # (docs/architecture.md, "The path of a read").
            with self.db.relaxed_engine.begin() as connection:
                return int(connection.execute(_TRACE, values).scalar_one()), values
        with self.db.session() as s:
            delivery_id: int = s.execute(_TRACE, values).scalar_one()
            IdempotencyStore.remember_delivery(s, accessor, keyed.key, keyed.request_hash, delivery_id, state="pending")
        return delivery_id, values

    def _finish_delivery(
        self, delivery_id: int, outcome: RelayOutcome, key: str | None, traced: dict[str, Any] | None = None
    ) -> DeliveryRow:
        """Fill a pending delivery from its logged disclosure and answer its idempotency key.

        The write skips the fsync (``Database.relaxed_engine``): its every value is on chain, and a pending
        row whose update a power cut lost is finished again from there (:meth:`finish_traced_disclosures`
        re-sends its signed request, which the relay finds logged by its digest)."""
        values: dict[str, Any] = {
            "consent_id": outcome.consent_id,
            "status": "logged",
            "tx_hash": outcome.tx_hash,
            "block_number": outcome.block_number,
            "log_index": outcome.log_index,
        }
        if outcome.version is not None:
            values["version"] = outcome.version
        params = {"delivery": delivery_id, **values}
        if traced is None:  # an adopted row: read it back whole
            with self.db.relaxed_engine.begin() as connection:
                row = connection.execute(_FINISH_RETURNING, params).one()
                IdempotencyStore.delivery_done(connection, row.accessor, key)
            return DeliveryRow(**row._asdict())
        with self.db.relaxed_engine.begin() as connection:
            connection.execute(_FINISH, params)
            IdempotencyStore.delivery_done(connection, traced["accessor"], key)
        return DeliveryRow(id=delivery_id, **{**traced, **values})

    def _forget_delivery(self, delivery_id: int) -> None:
        """A traced disclosure whose transaction failed: drop it and free its idempotency key."""
        with self.db.session() as s:
            delivery = s.get(DeliveryRow, delivery_id)
            if delivery is None:
                return
            IdempotencyStore.forget_delivery(s, delivery.accessor, delivery.idempotency_key)
            s.delete(delivery)

    def adopt(self, delivery: DeliveryRow) -> DeliveryRow | None:
        """Finish a pending disclosure left by an earlier attempt by re-sending its signed request; None if
        the ledger refuses it (then it was never logged, and the row is dropped)."""
        assert delivery.signed_request is not None
        signed = SignedAccess.from_json(delivery.signed_request)
        try:
            outcome = self.relayer.relay(signed.message, signed.signature, reason=delivery.reason)
        except Exception as exc:
            if refused_for_sure(exc):
                self._forget_delivery(delivery.id)
                return None
            raise
        return self._finish_delivery(delivery.id, outcome, delivery.idempotency_key)

    def finish_traced_disclosures(self, *, stale_after: float = 0.0) -> tuple[int, int]:
        """Resolve disclosures a crash left pending by re-sending each one's signed request: the ledger logs
        it once (it may have already), or refuses it (consent gone, deadline passed) and the row is dropped.
        An unreachable chain or hub leaves the row pending for the next start. Only rows older than
        ``stale_after`` seconds are touched: a younger one may be a live read's, still relaying (another
        thread, or another replica on a shared DB). Returns (finished, dropped).
        """
        cutoff = _now() - timedelta(seconds=stale_after)
        with self.db.session() as s:
            rows = s.execute(select(DeliveryRow).where(DeliveryRow.status == "pending")).scalars()
            # Compared here, not in SQL: SQLite hands timezone-aware columns back naive (in UTC).
            pending = [
                r
                for r in rows
                if (r.created_at.replace(tzinfo=UTC) if not r.created_at.tzinfo else r.created_at) < cutoff
            ]
        finished = dropped = 0
        for delivery in pending:
            try:
                done = self.adopt(delivery)
            except Exception as exc:  # the outcome is unknown: keep it for later
                log.warning("pending disclosure %s left for later: %s", delivery.id, type(exc).__name__)
                continue
            if done is None:
                dropped += 1
            else:
                finished += 1
        return finished, dropped
