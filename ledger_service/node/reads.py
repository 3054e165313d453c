"""Reads: a purposed read and a break-glass read, each released only after its disclosure is durable.

A read goes: consent check (eth_call) -> the disclosure, logged by the strategy bootstrap.py chose
(per-read: a ``logAccess`` transaction, waited for; batched: an entry of the operator's Merkle log
appended with its delivery row in one DB transaction) -> fetch the blob (every block re-hashed) ->
decrypt (every segment authenticated) -> bytes. Any failure before the disclosure is durable releases
nothing (docs/architecture.md, "The path of a read").
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_utils import keccak
from sqlalchemy import Row, bindparam, select, update

from ledger_service.blobs import BlobStore, Cid
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.codec import eip712
from ledger_service.crypto import DataKey, RecordBinding, decrypt_stream
from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import CommitmentSaltRow, DeliveryRow, RecordRow, RecordVersionRow
from ledger_service.db.records import anchored_record
from ledger_service.domain.codes import EMERGENCY_PURPOSE, EMERGENCY_ROLE, purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest, Eip712Domain, EmergencyAccessRequest
from ledger_service.domain.media_types import served_media_type
from ledger_service.errors import (
    ConfigurationError,
    ConsentDenied,
    IdempotencyConflict,
    KeyCustodyError,
    KeyDestroyed,
    LedgerError,
    PermissionDenied,
    ValidationError,
)
from ledger_service.node.custody import ThresholdCustody
from ledger_service.node.per_read_disclosure import PerReadDisclosureStrategy
from ledger_service.node.signing import Deadlines, MessageNonces, ProviderKeys
from ledger_service.records.disclosure import (
    DisclosureRequest,
    DisclosureStrategy,
    KeyedRequest,
    SignedAccess,
    account_address,
    explain_refusal,
)

# A release claim older than this is taken to be a dead process's (it sent part of the bytes at most).
STALE_RELEASE = timedelta(minutes=15)


# What a release reads of the version (built once: every read runs it).
_RELEASED_VERSION = (
    select(
        RecordVersionRow.cid,
        RecordVersionRow.media_type,
        RecordVersionRow.plaintext_size,
        CommitmentSaltRow.version.label("salted"),
    )
    .outerjoin(
        CommitmentSaltRow,
        (CommitmentSaltRow.record_id == RecordVersionRow.record_id)
        & (CommitmentSaltRow.version == RecordVersionRow.version),
    )
    .where(RecordVersionRow.record_id == bindparam("record_id"), RecordVersionRow.version == bindparam("version"))
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RecordContent:
    """What a read releases: metadata plus the plaintext stream (the disclosure is already durable).

    ``disclosure_tx`` is the logAccess transaction (per-read mode), empty in batched mode, where
    ``leaf_index`` names the disclosure-log entry instead.
    """

    record_id: str
    version: int
    media_type: str
    cid: str
    disclosure_tx: str
    size: int
    chunks: Iterator[bytes]
    leaf_index: int | None = None
    whole: bytes | None = None  # all of ``chunks`` when it was small enough to verify before answering

    def read_all(self) -> bytes:
        return b"".join(self.chunks)


class ReadService:
    def __init__(
        self,
        *,
        db: Database,
        idempotency: IdempotencyStore,
        blobs: BlobStore,
        custody: ThresholdCustody | None,
        ledger: ConsentLedgerContract,
        disclosure: DisclosureStrategy,
        traced: PerReadDisclosureStrategy,
        keys: ProviderKeys,
        nonces: MessageNonces,
        deadlines: Deadlines,
        domain: Eip712Domain,
        receipt_of: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self.db = db
        self.idempotency = idempotency
        self.blobs = blobs
        self._custody = custody  # None in a hub alone: it holds no key

        self.ledger = ledger  # the consent and role views
        self.disclosure = disclosure  # per-read or batched, as bootstrap.py chose
        # Adopts a replayed delivery whose transaction is still in flight (only per-read leaves those).
        self._traced = traced
        self.keys = keys  # the accessors' signers: a read is the accessor's signed request
        self.nonces = nonces
        self.deadlines = deadlines
        self.domain = domain
        # Batched mode: the receipt of a disclosure-log entry, once its batch is anchored (bootstrap.py).
        self._receipt_of = receipt_of

    @property
    def custody(self) -> ThresholdCustody:
        if self._custody is None:
            raise ConfigurationError("this process is a hub: uploads and reads are a provider's node's")
        return self._custody

    def _evidence(self, delivery: DeliveryRow) -> dict[str, Any]:
        """What the custodians release a delivery's shares against: its disclosure transaction, or in batched
        mode the receipt of its log entry."""
        if delivery.tx_hash:
            return {"disclosure_tx": bytes.fromhex(delivery.tx_hash[2:])}
        if delivery.leaf_index is None or self._receipt_of is None:
            raise KeyCustodyError("the delivery has neither a disclosure transaction nor a log entry to show")
        return {"receipt": self._receipt_of(delivery.leaf_index)}

    def _signer(self, accessor: str) -> Callable[[AccessRequest | EmergencyAccessRequest], SignedAccess]:
        key = self.keys.signer_for(accessor)  # PermissionDenied before anything else if the node has no key

        def sign(message: AccessRequest | EmergencyAccessRequest) -> SignedAccess:
            digest = eip712.digest(self.domain, message)
            return SignedAccess(message, key.sign_digest(digest), digest)

        return sign

    def _access_request(self, record: RecordRow, accessor: str, purpose: bytes) -> Callable[[bool], SignedAccess]:
        sign = self._signer(accessor)
        rid = bytes.fromhex(record.record_id[2:])
        return lambda resync: sign(
            AccessRequest(
                record.patient,
                accessor,
                rid,
                record.current_version,
                purpose,
                self.nonces.allocate(accessor, resync=resync),
                self.deadlines.next(fresh=resync),
            )
        )

    def read(self, *, accessor: str, record_id: str, purpose: str, idempotency_key: str | None = None) -> RecordContent:
        accessor = account_address(accessor, "accessor")
        if purpose == EMERGENCY_PURPOSE:
            raise ValidationError("ETREAT reads go through emergency access with a reason", field="purpose")
        purpose_bytes = purpose_to_bytes32(purpose)
        record = anchored_record(self.db, record_id)
        rid = bytes.fromhex(record_id[2:])

        def check_consent() -> None:
            if self.ledger.authorizing_consent(record.patient, accessor, rid, purpose_bytes) is None:
                raise ConsentDenied(
                    explain_refusal(self.ledger, record, accessor, rid, purpose_bytes),
                    record_id=record_id,
                    accessor=accessor,
                    purpose=purpose,
                )

        return self._disclose_and_release(
            record,
            accessor,
            DisclosureRequest(
                purpose=purpose,
                reason=None,
                sign=self._access_request(record, accessor, purpose_bytes),
                precheck=check_consent,
                refused_by="AccessNotAuthorized",
                refusal=lambda: ConsentDenied(
                    "consent changed before the disclosure could be logged", record_id=record_id
                ),
                still_allowed=check_consent,
            ),
            key=idempotency_key,
            request_hash=_request_hash("read", accessor, record_id, purpose),
        )

    def emergency_read(
        self, *, accessor: str, record_id: str, reason: str, idempotency_key: str | None = None
    ) -> RecordContent:
        accessor = account_address(accessor, "accessor")
        reason = (reason or "").strip()
        if not reason or len(reason) > 2000:
            raise ValidationError("an emergency access needs a reason (1 to 2000 characters)", field="reason")
        record = anchored_record(self.db, record_id)
        sign = self._signer(accessor)
        reason_hash = bytes(keccak(reason.encode("utf-8")))  # only the hash goes on chain: it may be clinical

        def signed_request(resync: bool) -> SignedAccess:
            rid = bytes.fromhex(record.record_id[2:])
            nonce, deadline = self.nonces.allocate(accessor, resync=resync), self.deadlines.next(fresh=resync)
            return sign(
                EmergencyAccessRequest(
                    record.patient, accessor, rid, record.current_version, reason_hash, nonce, deadline
                )
            )

        def refused() -> LedgerError:
            return PermissionDenied(f"{accessor} may not break the glass (no active EMERGENCY_ROLE)", account=accessor)

        def may_break_the_glass() -> None:
            if not (self.ledger.has_role(EMERGENCY_ROLE, accessor) and self.ledger.is_active_provider(accessor)):
                raise refused()

        return self._disclose_and_release(
            record,
            accessor,
            DisclosureRequest(
                purpose=EMERGENCY_PURPOSE,
                reason=reason,
                sign=signed_request,
                precheck=None,
                refused_by="NotEmergencyProvider",
                refusal=refused,
                still_allowed=may_break_the_glass,
            ),
            key=idempotency_key,
            request_hash=_request_hash("emergency", accessor, record_id, reason),
        )

    def _disclose_and_release(
        self, record: RecordRow, accessor: str, d: DisclosureRequest, *, key: str | None, request_hash: str
    ) -> RecordContent:
        """Replay, else log the disclosure (batched or on chain); only then release the bytes.

        A replay is served under its earlier disclosure only if that one's bytes never went out in full
        and the accessor is allowed now; otherwise it is a new release with a disclosure of its own
        (docs/security.md, "Idempotent reads").
        """
        if key:
            IdempotencyStore.scoped(accessor, key)  # the key's own rules (length, printable)
        delivery = self._replay(accessor, key, request_hash)
        early: dict[tuple[int, str], Callable[[], DataKey]] = {}
        if delivery is not None:
            d.still_allowed()
        else:

            def ask_custodians(version: int, tx_hash: str) -> None:
                # The custodians work while the delivery row is finished; _release takes their answer.
                binding = RecordBinding(bytes.fromhex(record.record_id[2:]), version, record.patient)
                with contextlib.suppress(LedgerError):  # asked again, and its error raised, by _release
                    early[(version, tx_hash)] = self.custody.begin_recover(
                        binding, accessor=accessor, disclosure_tx=bytes.fromhex(tx_hash[2:])
                    )

            delivery = self.disclosure.disclose(
                record,
                accessor,
                replace(d, on_logged=ask_custodians),
                KeyedRequest(key, request_hash, lambda: self._replay(accessor, key, request_hash)),
            )
        return self._release(
            record, delivery, claim=bool(key), early=early.get((delivery.version, delivery.tx_hash or ""))
        )

    def _replay(self, accessor: str, key: str | None, request_hash: str) -> DeliveryRow | None:
        """The disclosure of an identical earlier request whose bytes were never sent in full, if any
        (adopted if its transaction was still in flight); None means this request needs its own."""
        delivery = self.idempotency.unsent_delivery(accessor, key, request_hash)
        if delivery is not None and delivery.status == "pending":
            return self._traced.adopt(delivery)
        return delivery

    def _claim_release(self, delivery_id: int) -> None:
        """Take the right to send a keyed delivery's bytes; a twin request holding it is a conflict."""
        now = _now()
        with self.db.session() as s:
            claimed = s.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id == delivery_id,
                    DeliveryRow.released_at.is_(None),
                    (DeliveryRow.release_started_at.is_(None)) | (DeliveryRow.release_started_at < now - STALE_RELEASE),
                )
                .values(release_started_at=now)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is being answered right now; retry when it finishes"
                )

    def _mark_release(self, delivery_id: int, *, complete: bool) -> None:
        """After the last byte: the delivery is spent. After an interrupted send: free it for a retry."""
        values = {"released_at": _now()} if complete else {"release_started_at": None}
        with self.db.session() as s:
            s.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(**values))

    def _marked_release(self, delivery_id: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The claimed delivery's stream, already started, so that however it ends (sent to the last byte,
        or dropped unread by a client that went away) its delivery row is marked.

        It is marked sent in full just before the last chunk goes out, not after: a client holding every
        byte may replay at once, and must then find its release spent. (A send that fails on the last
        chunk thus counts as a release: the safe side.)
        """

        def marked() -> Iterator[bytes]:
            complete = False
            try:
                yield b""  # consumed below: a generator only runs its finally once it has started
                last: bytes | None = None
                for chunk in chunks:
                    if last is not None:
                        yield last
                    last = chunk
                self._mark_release(delivery_id, complete=True)
                complete = True
                if last is not None:
                    yield last
            finally:
                if not complete:
                    self._mark_release(delivery_id, complete=False)

        stream = marked()
        next(stream)
        return stream

    def reset_interrupted_releases(self) -> int:
        """Free the release claims a dead process left (it sent part of the bytes at most). Only for a
        private DB, where no other process can be sending; on a shared one a claim goes stale instead."""
        with self.db.session() as s:
            result = s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.released_at.is_(None), DeliveryRow.release_started_at.is_not(None))
                .values(release_started_at=None)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def _release(
        self,
        record: RecordRow,
        delivery: DeliveryRow,
        *,
        claim: bool,
        early: Callable[[], DataKey] | None = None,
    ) -> RecordContent:
        with self.db.engine.connect() as connection:  # the columns a release needs, no ORM objects
            version = connection.execute(
                _RELEASED_VERSION, {"record_id": record.record_id, "version": delivery.version}
            ).one()
        if version.salted is None:
            raise KeyDestroyed(f"the keys of {record.record_id} were destroyed", record_id=record.record_id)
        binding = RecordBinding(bytes.fromhex(record.record_id[2:]), delivery.version, record.patient)
        # The custodians release the shares against the disclosure just logged (docs/architecture.md, "Key custody").
        if early is not None:
            data_key = early()
        else:
            data_key = self.custody.recover(binding, accessor=delivery.accessor, **self._evidence(delivery))
        cid = Cid.parse(version.cid)
        # Fetch and verify the first blocks now, so a missing or corrupt blob fails before
        # the response starts; the rest streams, each block and segment verified as it comes.
        blob = self.blobs.open(cid)
        plaintext = decrypt_stream(data_key, binding, blob)
        first = next(plaintext, b"")
        if not claim and len(first) >= version.plaintext_size:
            # All of it came in the first segment: finish verifying it before answering, so the whole
            # answer is authentic when it starts and goes out in one piece.
            whole = first + b"".join(plaintext)
            return self._content(record, delivery, version, iter((whole,)), whole)

        def chunks() -> Iterator[bytes]:
            if first:
                yield first
            yield from plaintext

        stream = chunks()
        if claim:  # a keyed read may be replayed: mark what went out (a read without a key writes nothing)
            self._claim_release(delivery.id)
            stream = self._marked_release(delivery.id, stream)
        return self._content(record, delivery, version, stream, None)

    @staticmethod
    def _content(
        record: RecordRow,
        delivery: DeliveryRow,
        version: Row[str, str, int, int],
        chunks: Iterator[bytes],
        whole: bytes | None,
    ) -> RecordContent:
        return RecordContent(
            record.record_id,
            delivery.version,
            # Whatever the row holds (it may predate upload validation) becomes a safe Content-Type.
            served_media_type(version.media_type),
            version.cid,
            delivery.tx_hash or "",
            version.plaintext_size,
            chunks,
            delivery.leaf_index,
            whole,
        )


def _request_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
