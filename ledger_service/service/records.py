"""The record lifecycle: create, amend, read-with-purpose, emergency access, erasure.

Every read goes: consent check (eth_call) -> on-chain disclosure (logAccess, waited for)
-> delivery-log row -> fetch blob (every block re-hashed) -> decrypt (every segment
authenticated) -> bytes. Any failure before the disclosure is on chain releases nothing.

In batched disclosure mode the disclosure is an entry of the operator's Merkle log instead
(:mod:`ledger_service.hub.batching`): consent check by eth_call pinned to block B ->
the entry (blockNumber B, B's timestamp) appended with its delivery row in one DB
transaction -> fetch -> decrypt -> bytes. Nothing is released unless that commit succeeds;
the log's root is anchored on chain in batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from eth_utils import keccak, to_checksum_address
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ledger_service.blobs import BlobStore, Cid
from ledger_service.chain.ledger import FIXED_GAS, ConsentLedgerContract
from ledger_service.chain.signers import ProviderSigners
from ledger_service.chain.wire import Receipt
from ledger_service.crypto import (
    DataKey,
    KeyCustody,
    PlaintextCommitment,
    RecordBinding,
    decrypt_stream,
    encrypt_stream,
    new_salt,
)
from ledger_service.crypto.custody import WrappedKey
from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import DataKeyRow, DeliveryRow, IdempotencyRow, RecordRow, RecordVersionRow
from ledger_service.domain.codes import (
    EMERGENCY_PURPOSE,
    EMERGENCY_ROLE,
    ZERO32,
    category_id,
    hex32,
    purpose_to_bytes32,
)
from ledger_service.domain.consent import AccessRequest, ConsentState, decide
from ledger_service.domain.media_types import media_type_essence, served_media_type, stored_media_type
from ledger_service.domain.records import FHIR_MEDIA_TYPE
from ledger_service.errors import (
    ConsentDenied,
    IdempotencyConflict,
    InvalidRecordContent,
    KeyDestroyed,
    LedgerError,
    NotRecordAuthor,
    PermissionDenied,
    RecordErased,
    RecordNotFound,
    RecordTooLarge,
    StaleVersion,
    TransactionReverted,
    ValidationError,
)
from ledger_service.hub.batching import DisclosureLog, LogAppendConflict
from ledger_service.transparency.entries import DisclosureEntry

log = logging.getLogger(__name__)

DisclosureMode = Literal["per-read", "batched"]
# Appending retries when another writer takes the leaf index first (PostgreSQL without the lock).
MAX_APPEND_ATTEMPTS = 8

# A release claim older than this is taken to be a dead process's (it sent part of the bytes at most).
STALE_RELEASE = timedelta(minutes=15)

# FHIR bodies are parsed whole for validation; larger files must not be FHIR JSON. The default of the
# service's limit, which the settings set (max_json_body).
MAX_FHIR_BYTES = 32 * 1024 * 1024
# A FHIR document under this many bytes is validated in the calling thread: that takes milliseconds,
# less than handing it to a worker process (ledger_service/workers.py).
FHIR_INLINE_BELOW = 16 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


def _addr(value: str, field: str) -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{field} is not an Ethereum address", field=field) from exc


def validate_fhir(content: bytes) -> dict[str, Any]:
    """Parse and validate a FHIR R4 resource (checked against fhir.resources' R4B models)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecordContent(f"FHIR content is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise InvalidRecordContent("FHIR content must be a JSON object with a resourceType")
    try:
        model = get_fhir_model_class(data["resourceType"])
    except (ValueError, KeyError) as exc:
        raise InvalidRecordContent(f"unknown FHIR resourceType {data['resourceType']!r}") from exc
    try:
        model.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError, and fhir-core's own errors
        first = str(exc).splitlines()[:3]
        raise InvalidRecordContent(f"invalid FHIR {data['resourceType']}: {' '.join(first)}") from exc
    return data


def check_fhir(content: bytes) -> None:
    """validate_fhir without its result, as a worker process answers (the parsed tree stays there)."""
    validate_fhir(content)


def fhir_document(content: Iterable[bytes], limit: int) -> bytes:
    """The whole FHIR document for its validation, read no further than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in content:
        size += len(chunk)
        if size > limit:
            raise RecordTooLarge(
                f"FHIR JSON is limited to {limit} bytes (it is validated whole); send larger files as another type"
            )
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class AnchoredVersion:
    record_id: str
    version: int
    cid: str
    tx_hash: str
    block_number: int
    version_hash: str
    media_type: str  # as stored and served: a non-allowlisted declaration becomes application/octet-stream

    def as_result(self) -> dict[str, Any]:
        """The API's answer to the upload (also what a retried request with its key gets)."""
        return {
            "recordId": self.record_id,
            "version": self.version,
            "cid": self.cid,
            "txHash": self.tx_hash,
            "mediaType": self.media_type,
        }


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

    def read_all(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(frozen=True)
class ErasureResult:
    record_id: str
    tx_hash: str
    versions: int


@dataclass(frozen=True)
class _Disclosure:
    """What a purposed read and a break-glass read differ in; the steps around them are shared.

    ``precheck`` runs before an on-chain disclosure is sent (per-read mode only: batched mode checks
    at a pinned block itself); a revert named ``refused_by`` becomes ``refusal()``, any other the
    usual record error.
    """

    purpose: str
    reason: str | None
    call: str
    args: tuple[Any, ...]
    precheck: Callable[[], None] | None
    refused_by: str
    refusal: Callable[[], LedgerError]
    # Whether the accessor may be released the bytes now, at the latest block: what a replay under an
    # earlier disclosure must pass (docs/security.md, "Idempotent reads"). Raises the refusal.
    still_allowed: Callable[[], None]


class RecordService:
    def __init__(
        self,
        *,
        db: Database,
        idempotency: IdempotencyStore,
        blobs: BlobStore,
        custody: KeyCustody,
        ledger: ConsentLedgerContract,
        providers: ProviderSigners,
        categories: Callable[[], dict[str, bytes]],
        disclosure_mode: DisclosureMode = "per-read",
        disclosure_log: DisclosureLog | None = None,
        on_disclosure: Callable[[], None] | None = None,
        fhir_check: Callable[[bytes], None] = check_fhir,
        max_fhir_bytes: int = MAX_FHIR_BYTES,
    ) -> None:
        if disclosure_mode == "batched" and disclosure_log is None:
            raise ValueError("batched disclosure mode needs a disclosure log")
        self.disclosure_mode: DisclosureMode = disclosure_mode
        self.disclosure_log = disclosure_log
        self._on_disclosure = on_disclosure
        self.db = db
        self.idempotency = idempotency
        self.blobs = blobs
        self.custody = custody
        self.ledger = ledger  # the custodian's handle: views, disclosures, erasure events
        self.providers = providers
        self._categories = categories
        self._record_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._fhir_check = fhir_check  # bootstrap: in a worker process, for a large document
        self.max_fhir_bytes = max_fhir_bytes

    def _lock_for(self, record_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._record_locks.setdefault(record_id, threading.Lock())

    # ------------------------------------------------------------- create / amend

    def _category(self, code: str) -> bytes:
        known = self._categories()
        if code not in known:
            raise ValidationError(
                f"unknown category {code!r}; registered: {', '.join(sorted(known))}", field="category"
            )
        return known[code]

    def _seal(
        self, binding: RecordBinding, media_type: str, content: Iterable[bytes]
    ) -> tuple[Cid, int, int, bytes, bytes, DataKey]:
        """Encrypt and store a version; returns (cid, plaintext size, ciphertext size, commitment, salt, key)."""
        if media_type_essence(media_type) == FHIR_MEDIA_TYPE:
            body = fhir_document(content, self.max_fhir_bytes)
            self._fhir_check(body)
            content = [body]
        data_key = DataKey.generate()
        salt = new_salt()
        commitment = PlaintextCommitment(salt)
        size = 0

        def plaintext() -> Iterator[bytes]:
            nonlocal size
            for chunk in content:
                if chunk:
                    size += len(chunk)
                    commitment.update(chunk)
                    yield chunk

        put = self.blobs.put(encrypt_stream(data_key, binding, plaintext()))
        return put.cid, size, put.size, commitment.digest(), salt, data_key

    def create(
        self,
        *,
        provider: str,
        patient: str,
        category: str,
        media_type: str,
        content: Iterable[bytes],
        idempotency_key: str | None = None,
    ) -> AnchoredVersion:
        provider, patient = _addr(provider, "provider"), _addr(patient, "patient")
        media_type = stored_media_type(media_type)  # a malformed one is refused before anything is stored
        category_bytes = self._category(category)
        ledger = self.providers.ledger_for(provider)
        if not self.ledger.is_active_provider(provider):
            raise PermissionDenied(f"{provider} is not an active provider", account=provider)
        anchor_salt = os.urandom(32)
        record_id_bytes = _record_id(patient, provider, anchor_salt)
        record_id = hex32(record_id_bytes)
        binding = RecordBinding(record_id_bytes, 1, patient)
        cid, size, ct_size, commitment, commitment_salt, data_key = self._seal(binding, media_type, content)
        wrapped = self.custody.wrap(data_key, binding.aad())
        now = _now()
        with self.db.session() as s:
            s.add(
                RecordRow(
                    record_id=record_id,
                    patient=patient,
                    author=provider,
                    category=category,
                    salt=hex32(anchor_salt),
                    current_version=0,
                    state="pending",
                    created_at=now,
                )
            )
            s.flush()
            s.add(
                RecordVersionRow(
                    record_id=record_id,
                    version=1,
                    cid=str(cid),
                    media_type=media_type,
                    plaintext_size=size,
                    ciphertext_size=ct_size,
                    commitment=hex32(commitment),
                    version_hash="",
                    previous_hash=hex32(b"\x00" * 32),
                    author=provider,
                    state="pending",
                    idempotency_key=idempotency_key,
                    created_at=now,
                )
            )
            s.add(
                DataKeyRow(
                    record_id=record_id,
                    version=1,
                    kek_id=wrapped.kek_id,
                    wrapped_key=wrapped.ciphertext,
                    commitment_salt=commitment_salt,
                )
            )
        try:
            receipt = ledger.anchor_record(patient, category_bytes, anchor_salt, cid.bytes, commitment)
        except TransactionReverted as exc:
            self._discard_pending(record_id, 1, cid, whole_record=True)
            raise _record_error(exc) from exc
        except LedgerError:
            # Outcome unknown (timeout, chain down): keep the pending rows; recovery decides.
            raise
        return self._finish_anchor(ledger, receipt, record_id, 1)

    def amend(
        self,
        *,
        provider: str,
        record_id: str,
        media_type: str,
        content: Iterable[bytes],
        idempotency_key: str | None = None,
    ) -> AnchoredVersion:
        provider = _addr(provider, "provider")
        media_type = stored_media_type(media_type)  # a malformed one is refused before anything is stored
        with self._lock_for(record_id):
            record = self._anchored_record(record_id)
            if record.author != provider:
                raise NotRecordAuthor(f"only the record's author {record.author} may amend it", record_id=record_id)
            ledger = self.providers.ledger_for(provider)
            version = record.current_version + 1
            with self.db.session() as s:
                head = s.execute(
                    select(RecordVersionRow.version_hash).where(
                        RecordVersionRow.record_id == record_id, RecordVersionRow.version == record.current_version
                    )
                ).scalar_one()
            binding = RecordBinding(bytes.fromhex(record_id[2:]), version, record.patient)
            cid, size, ct_size, commitment, commitment_salt, data_key = self._seal(binding, media_type, content)
            wrapped = self.custody.wrap(data_key, binding.aad())
            with self.db.session() as s:
                s.add(
                    RecordVersionRow(
                        record_id=record_id,
                        version=version,
                        cid=str(cid),
                        media_type=media_type,
                        plaintext_size=size,
                        ciphertext_size=ct_size,
                        commitment=hex32(commitment),
                        version_hash="",
                        previous_hash=head,
                        author=provider,
                        state="pending",
                        idempotency_key=idempotency_key,
                        created_at=_now(),
                    )
                )
                s.add(
                    DataKeyRow(
                        record_id=record_id,
                        version=version,
                        kek_id=wrapped.kek_id,
                        wrapped_key=wrapped.ciphertext,
                        commitment_salt=commitment_salt,
                    )
                )
            try:
                receipt = ledger.amend_record(
                    record.patient, bytes.fromhex(record_id[2:]), cid.bytes, commitment, bytes.fromhex(head[2:])
                )
            except TransactionReverted as exc:
                self._discard_pending(record_id, version, cid, whole_record=False)
                raise _record_error(exc) from exc
            return self._finish_anchor(ledger, receipt, record_id, version)

    def _finish_anchor(
        self, ledger: ConsentLedgerContract, receipt: Receipt, record_id: str, version: int
    ) -> AnchoredVersion:
        event = ledger.event(receipt, "RecordAnchored")
        if hex32(event.args["recordId"]) != record_id or int(event.args["version"]) != version:
            raise TransactionReverted(f"anchor of {record_id} v{version} emitted an unexpected event")
        version_hash = hex32(event.args["versionHash"])
        with self.db.session() as s:
            row = s.execute(
                select(RecordVersionRow).where(
                    RecordVersionRow.record_id == record_id, RecordVersionRow.version == version
                )
            ).scalar_one()
            row.state, row.tx_hash, row.block_number, row.version_hash = (
                "anchored",
                receipt.tx_hex,
                receipt.block_number,
                version_hash,
            )
            record = s.get(RecordRow, record_id)
            assert record is not None
            record.state, record.current_version = "anchored", version
        return AnchoredVersion(
            record_id, version, row.cid, receipt.tx_hex, receipt.block_number, version_hash, row.media_type
        )

    def _discard_pending(self, record_id: str, version: int, cid: Cid, *, whole_record: bool) -> None:
        """Undo a version whose anchor was refused: no key, no blob, no row remains."""
        with self.db.session() as s:
            for model in (DataKeyRow, RecordVersionRow):
                for row in s.execute(
                    select(model).where(model.record_id == record_id, model.version == version)
                ).scalars():
                    s.delete(row)
            if whole_record:
                s.flush()
                record = s.get(RecordRow, record_id)
                if record is not None:
                    s.delete(record)
        self.blobs.unpin(cid)

    # ------------------------------------------------------------- lookups

    def _anchored_record(self, record_id: str) -> RecordRow:
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            if record is None or record.state == "pending":
                raise RecordNotFound(f"no record {record_id}", record_id=record_id)
            if record.erased_at is not None or record.state == "erasing":
                raise RecordErased(f"record {record_id} was erased at the patient's request", record_id=record_id)
            return record

    def versions(self, record_id: str) -> list[RecordVersionRow]:
        with self.db.session() as s:
            return list(
                s.execute(
                    select(RecordVersionRow)
                    .where(RecordVersionRow.record_id == record_id, RecordVersionRow.state == "anchored")
                    .order_by(RecordVersionRow.version)
                ).scalars()
            )

    def head_versions_of(self, patient: str) -> dict[str, RecordVersionRow]:
        """The newest anchored version of each of the patient's records, in one query (a listing
        must not cost a query per record)."""
        patient = _addr(patient, "patient")
        heads: dict[str, RecordVersionRow] = {}
        with self.db.session() as s:
            rows = s.execute(
                select(RecordVersionRow)
                .join(RecordRow, RecordRow.record_id == RecordVersionRow.record_id)
                .where(RecordRow.patient == patient, RecordVersionRow.state == "anchored")
                .order_by(RecordVersionRow.version)
            ).scalars()
            for row in rows:
                heads[row.record_id] = row
        return heads

    def records_of(self, patient: str) -> list[RecordRow]:
        patient = _addr(patient, "patient")
        with self.db.session() as s:
            return list(
                s.execute(
                    select(RecordRow)
                    .where(RecordRow.patient == patient, RecordRow.state != "pending")
                    .order_by(RecordRow.created_at)
                ).scalars()
            )

    # ------------------------------------------------------------- reads

    def read(self, *, accessor: str, record_id: str, purpose: str, idempotency_key: str | None = None) -> RecordContent:
        accessor = _addr(accessor, "accessor")
        if purpose == EMERGENCY_PURPOSE:
            raise ValidationError("ETREAT reads go through emergency access with a reason", field="purpose")
        purpose_bytes = purpose_to_bytes32(purpose)
        record = self._anchored_record(record_id)
        rid = bytes.fromhex(record_id[2:])

        def check_consent() -> None:
            if self.ledger.authorizing_consent(record.patient, accessor, rid, purpose_bytes) is None:
                raise ConsentDenied(
                    self._refusal(record, accessor, rid, purpose_bytes),
                    record_id=record_id,
                    accessor=accessor,
                    purpose=purpose,
                )

        return self._disclose_and_release(
            record,
            accessor,
            _Disclosure(
                purpose=purpose,
                reason=None,
                call="logAccess",
                args=(record.patient, rid, accessor, purpose_bytes),
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
        accessor = _addr(accessor, "accessor")
        reason = (reason or "").strip()
        if not reason or len(reason) > 2000:
            raise ValidationError("an emergency access needs a reason (1 to 2000 characters)", field="reason")
        record = self._anchored_record(record_id)
        rid = bytes.fromhex(record_id[2:])

        def refused() -> LedgerError:
            return PermissionDenied(f"{accessor} may not break the glass (no active EMERGENCY_ROLE)", account=accessor)

        def may_break_the_glass() -> None:
            if not (self.ledger.has_role(EMERGENCY_ROLE, accessor) and self.ledger.is_active_provider(accessor)):
                raise refused()

        return self._disclose_and_release(
            record,
            accessor,
            _Disclosure(
                purpose=EMERGENCY_PURPOSE,
                reason=reason,
                call="logEmergencyAccess",
                # Only the reason's hash goes on chain: the text may carry clinical detail.
                args=(record.patient, rid, accessor, keccak(reason.encode("utf-8"))),
                precheck=None,
                refused_by="NotEmergencyProvider",
                refusal=refused,
                still_allowed=may_break_the_glass,
            ),
            key=idempotency_key,
            request_hash=_request_hash("emergency", accessor, record_id, reason),
        )

    def _disclose_and_release(
        self, record: RecordRow, accessor: str, d: _Disclosure, *, key: str | None, request_hash: str
    ) -> RecordContent:
        """Replay, else log the disclosure (batched or on chain); only then release the bytes.

        A replay is served under its earlier disclosure only if that one's bytes never went out in full
        and the accessor is allowed now; otherwise it is a new release with a disclosure of its own
        (docs/security.md, "Idempotent reads").
        """
        if key:
            IdempotencyStore.scoped(accessor, key)  # the key's own rules (length, printable)
        delivery = self._replay(accessor, key, request_hash)
        if delivery is not None:
            d.still_allowed()
        if delivery is None and self.disclosure_mode == "batched":
            delivery = self._batched_disclosure(
                record, accessor, d.purpose, reason=d.reason, key=key, request_hash=request_hash
            )
        if delivery is None:
            if d.precheck is not None:
                d.precheck()
            try:
                delivery = self._disclose_on_chain(
                    record, accessor, d.purpose, d.call, d.args, key=key, request_hash=request_hash, reason=d.reason
                )
            except TransactionReverted as exc:
                raise (d.refusal() if exc.error_name == d.refused_by else _record_error(exc)) from exc
        return self._release(record, delivery, claim=bool(key))

    # ------------------------------------------------------------- batched mode

    def _batched_disclosure(
        self,
        record: RecordRow,
        accessor: str,
        purpose: str,
        *,
        reason: str | None,
        key: str | None,
        request_hash: str,
    ) -> DeliveryRow:
        """Check at a pinned block, then append the disclosure entry and its delivery row atomically."""
        assert self.disclosure_log is not None
        rid = bytes.fromhex(record.record_id[2:])
        block = self.ledger.rpc.block_number()
        timestamp = int(self.ledger.rpc.get_block(block)["timestamp"], 16)
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
                    self._refusal(record, accessor, rid, purpose_bytes),
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
            earlier = self._replay(accessor, key, request_hash)  # a concurrent twin may have finished first
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
        assert self.disclosure_log is not None
        with self.db.session() as s:
            leaf = self.disclosure_log.store.append_in(s, entry.encode())
            if key:  # under the log's writer lock: a twin request that committed first wins
                done = s.get(IdempotencyRow, f"{entry.accessor}:{key}")
                if (
                    done is not None
                    and done.state == "done"
                    and done.result is not None
                    and self.idempotency.is_live(done)
                ):
                    twin = s.get(DeliveryRow, json.loads(done.result)["deliveryId"])
                    if twin is not None and twin.released_at is None:
                        raise _Replayed
            delivery = DeliveryRow(
                record_id=hex32(entry.record_id),
                version=entry.version,
                patient=entry.patient,
                accessor=entry.accessor,
                purpose=EMERGENCY_PURPOSE if entry.emergency else _purpose_code(entry.purpose),
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
            _remember_delivery(s, entry.accessor, key, request_hash, delivery.id)
        return delivery

    def _refusal(self, record: RecordRow, accessor: str, rid: bytes, purpose: bytes) -> str:
        """Explain a refusal with the domain rule over the on-chain consent states."""
        from ledger_service.domain.consent import consent_id

        category = category_id(record.category)
        consents: dict[bytes, ConsentState] = {}
        for scope in (rid, category, b"\x00" * 32):
            cid = consent_id(record.patient, accessor, scope, purpose)
            patient, valid_from, valid_until, revoked = self.ledger.consent(cid)
            if int(patient, 16) != 0:
                consents[cid] = ConsentState(cid, patient, accessor, scope, purpose, valid_from, valid_until, revoked)
        timestamp = int(self.ledger.rpc.get_block("latest")["timestamp"], 16)
        decision = decide(
            AccessRequest(record.patient, accessor, rid, category, purpose),
            consents,
            timestamp=timestamp,
            grantee_is_active_provider=self.ledger.is_active_provider(accessor),
        )
        return f"access refused: {decision.reason}"

    def _replay(self, accessor: str, key: str | None, request_hash: str) -> DeliveryRow | None:
        """The disclosure of an identical earlier request whose bytes were never sent in full, if any
        (adopted if its transaction was still in flight); None means this request needs its own."""
        if not key:
            return None
        scoped = f"{accessor}:{key}"
        with self.db.session() as s:
            row = s.get(IdempotencyRow, scoped)
            if row is None or not self.idempotency.is_live(row):
                return None
            if row.request_hash != request_hash:
                raise IdempotencyConflict("this Idempotency-Key was used for a different request")
            if row.result is None:
                return None
            delivery = s.get(DeliveryRow, json.loads(row.result)["deliveryId"])
        if delivery is None or delivery.released_at is not None:
            return None  # its bytes went out in full: serving them again is a new release
        if delivery.status == "pending":
            return self._adopt(delivery)
        return delivery

    def _disclose_on_chain(
        self,
        record: RecordRow,
        accessor: str,
        purpose: str,
        call: str,
        args: tuple[Any, ...],
        *,
        key: str | None,
        request_hash: str,
        reason: str | None,
    ) -> DeliveryRow:
        """Send the disclosure transaction, trace it in the DB before waiting, then record its event.

        The pending delivery row (with the transaction hash) is what lets a retry of a request whose
        process died mid-wait adopt the transaction instead of logging a second disclosure, and what
        recovery finishes after a restart.
        """
        sender = self.ledger.sender
        assert sender is not None
        data = self.ledger.codec.encode_call(call, *args)
        tx_hash = sender.submit(self.ledger.address, data, action=call, gas=FIXED_GAS.get(call))
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
                    purpose=purpose,
                    consent_id=None,
                    emergency=purpose == EMERGENCY_PURPOSE,
                    reason=reason,
                    status="pending",
                    tx_hash="0x" + tx_hash.hex(),
                    idempotency_key=key,
                    created_at=_now(),
                )
                .returning(DeliveryRow.id)
            ).scalar_one()
            _remember_delivery(s, accessor, key, request_hash, delivery_id, state="pending")
        try:
            receipt = sender.wait(tx_hash, action=call, to=self.ledger.address, data=data)
        except TransactionReverted:
            self._forget_delivery(delivery_id)
            raise
        return self._finish_delivery(delivery_id, receipt, key)

    def _finish_delivery(self, delivery_id: int, receipt: Receipt, key: str | None) -> DeliveryRow:
        """Fill a traced delivery from its mined disclosure event and answer its idempotency key."""
        topics = (self.ledger.codec.topic("AccessLogged"), self.ledger.codec.topic("EmergencyAccessLogged"))
        log = next(lg for lg in receipt.logs if lg["topics"] and lg["topics"][0] in topics)
        event = self.ledger.codec.decode_log(log)
        assert event is not None
        with self.db.session() as s:
            delivery = s.scalars(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(
                    version=int(event.args["version"]),
                    consent_id=hex32(event.args["consentId"]) if event.name == "AccessLogged" else None,
                    status="logged",
                    block_number=receipt.block_number,
                    log_index=log["logIndex"],
                )
                .returning(DeliveryRow)
            ).one()
            if key:
                s.execute(
                    update(IdempotencyRow)
                    .where(IdempotencyRow.key == f"{delivery.accessor}:{key}")
                    .values(state="done")
                )
            return delivery

    def _forget_delivery(self, delivery_id: int) -> None:
        """A traced disclosure whose transaction failed: drop it and free its idempotency key."""
        with self.db.session() as s:
            delivery = s.get(DeliveryRow, delivery_id)
            if delivery is None:
                return
            if delivery.idempotency_key:
                row = s.get(IdempotencyRow, f"{delivery.accessor}:{delivery.idempotency_key}")
                if row is not None:
                    s.delete(row)
            s.delete(delivery)

    def _adopt(self, delivery: DeliveryRow) -> DeliveryRow | None:
        """Finish a traced disclosure left by an earlier attempt; None if its transaction failed."""
        sender = self.ledger.sender
        assert sender is not None and delivery.tx_hash is not None
        try:
            receipt = sender.wait(bytes.fromhex(delivery.tx_hash[2:]), action="disclosure")
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
            receipt = self.ledger.rpc.receipt(bytes.fromhex(delivery.tx_hash[2:]))
            if receipt is None:
                continue
            if receipt.status == 1:
                self._finish_delivery(delivery.id, receipt, delivery.idempotency_key)
                finished += 1
            else:
                self._forget_delivery(delivery.id)
                dropped += 1
        return finished, dropped

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
        or dropped unread by a client that went away) its delivery row is marked."""

        def marked() -> Iterator[bytes]:
            complete = False
            try:
                yield b""  # consumed below: a generator only runs its finally once it has started
                yield from chunks
                complete = True
            finally:
                self._mark_release(delivery_id, complete=complete)

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

    def _release(self, record: RecordRow, delivery: DeliveryRow, *, claim: bool) -> RecordContent:
        with self.db.session() as s:
            version, key_row = s.execute(
                select(RecordVersionRow, DataKeyRow)
                .outerjoin(
                    DataKeyRow,
                    (DataKeyRow.record_id == RecordVersionRow.record_id)
                    & (DataKeyRow.version == RecordVersionRow.version),
                )
                .where(RecordVersionRow.record_id == record.record_id, RecordVersionRow.version == delivery.version)
            ).one()
        if key_row is None:
            raise KeyDestroyed(f"the keys of {record.record_id} were destroyed", record_id=record.record_id)
        binding = RecordBinding(bytes.fromhex(record.record_id[2:]), delivery.version, record.patient)
        data_key = self.custody.unwrap(WrappedKey(key_row.kek_id, key_row.wrapped_key), binding.aad())
        cid = Cid.parse(version.cid)
        # Fetch and verify the first blocks now, so a missing or corrupt blob fails before
        # the response starts; the rest streams, each block and segment verified as it comes.
        blob = self.blobs.open(cid)
        plaintext = decrypt_stream(data_key, binding, blob)
        first = next(plaintext, b"")

        def chunks() -> Iterator[bytes]:
            if first:
                yield first
            yield from plaintext

        stream = chunks()
        if claim:  # a keyed read may be replayed: mark what went out (a read without a key writes nothing)
            self._claim_release(delivery.id)
            stream = self._marked_release(delivery.id, stream)
        return RecordContent(
            record.record_id,
            delivery.version,
            # Whatever the row holds (it may predate upload validation) becomes a safe Content-Type.
            served_media_type(version.media_type),
            version.cid,
            delivery.tx_hash or "",
            version.plaintext_size,
            stream,
            delivery.leaf_index,
        )

    # ------------------------------------------------------------- erasure

    def erase(self, *, record_id: str, requested_by: str) -> ErasureResult:
        """Crypto-shred: destroy keys and salts, unpin and collect blobs, then the on-chain event."""
        with self._lock_for(record_id):
            with self.db.session() as s:
                record = s.get(RecordRow, record_id)
                if record is None or record.state == "pending":
                    raise RecordNotFound(f"no record {record_id}", record_id=record_id)
                if record.erased_at is not None or record.state == "erasing":
                    raise RecordErased(f"record {record_id} is already erased", record_id=record_id)
                self._check_patient_or_delegate(record.patient, requested_by)
                record.state = "erasing"
                for key_row in s.execute(select(DataKeyRow).where(DataKeyRow.record_id == record_id)).scalars():
                    s.delete(key_row)
                cids = [
                    v.cid
                    for v in s.execute(
                        select(RecordVersionRow).where(RecordVersionRow.record_id == record_id)
                    ).scalars()
                ]
                patient = record.patient
            for cid in cids:
                self.blobs.unpin(Cid.parse(cid))
            self.blobs.gc()
            return self._emit_erasure(record_id, patient, len(cids))

    def _check_patient_or_delegate(self, patient: str, caller: str) -> None:
        caller = _addr(caller, "caller")
        if caller == patient:
            return
        _valid_until, live = self.ledger.delegation(patient, caller)
        if not live:
            raise PermissionDenied(
                f"{caller} is neither the patient nor a live delegate of the patient", account=caller
            )

    def _emit_erasure(self, record_id: str, patient: str, versions: int) -> ErasureResult:
        receipt = self.ledger.erase_record(patient, bytes.fromhex(record_id[2:]))
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            assert record is not None
            record.state, record.erased_at, record.erasure_tx = "erased", _now(), receipt.tx_hex
        return ErasureResult(record_id, receipt.tx_hex, versions)

    def finish_interrupted_erasures(self) -> int:
        """Erasures whose keys are gone but whose on-chain event did not land: emit it now."""
        with self.db.session() as s:
            pending = [
                (r.record_id, r.patient)
                for r in s.execute(select(RecordRow).where(RecordRow.state == "erasing")).scalars()
            ]
        for record_id, patient in pending:
            onchain = self.ledger.record(patient, bytes.fromhex(record_id[2:]))
            if onchain.erased:
                with self.db.session() as s:
                    record = s.get(RecordRow, record_id)
                    assert record is not None
                    record.state, record.erased_at = "erased", _now()
            else:
                self._emit_erasure(record_id, patient, onchain.version)
        return len(pending)

    def recover_pending(self, *, stale_after: float = 0.0) -> tuple[int, int]:
        """Resolve versions left pending by a crash: finish the anchored, discard the rest.

        A version whose anchor is on chain is adopted whatever its age. One whose anchor is not
        is discarded only once older than ``stale_after`` seconds, so an upload another process
        (a second replica) still has in flight is left alone. A retried upload's Idempotency-Key
        is answered with the adopted version, or freed with the discarded one.
        Returns (finished, discarded).
        """
        finished = discarded = 0
        cutoff = _now() - timedelta(seconds=stale_after)
        with self.db.session() as s:
            pending = list(s.execute(select(RecordVersionRow).where(RecordVersionRow.state == "pending")).scalars())
            records = {r.record_id: s.get(RecordRow, r.record_id) for r in pending}
        for version in pending:
            record = records[version.record_id]
            assert record is not None
            onchain = self.ledger.record(record.patient, bytes.fromhex(version.record_id[2:]))
            if onchain.version >= version.version:
                adopted = self._adopt_anchor(record, version)
                if adopted is not None and version.idempotency_key:
                    self.idempotency.complete(version.idempotency_key, adopted.as_result())
                finished += 1
            elif _aware(version.created_at) < cutoff:
                self._discard_pending(
                    version.record_id, version.version, Cid.parse(version.cid), whole_record=version.version == 1
                )
                if version.idempotency_key:
                    self.idempotency.release(version.idempotency_key)
                discarded += 1
        return finished, discarded

    def _adopt_anchor(self, record: RecordRow, version: RecordVersionRow) -> AnchoredVersion | None:
        codec = self.ledger.codec
        logs = self.ledger.rpc.get_logs(
            self.ledger.address,
            0,
            self.ledger.rpc.block_number(),
            [codec.topic("RecordAnchored"), version.record_id],
        )
        for lg in logs:
            event = codec.decode_log(lg)
            if event is not None and int(event.args["version"]) == version.version:
                with self.db.session() as s:
                    row = s.get(RecordVersionRow, version.id)
                    rec = s.get(RecordRow, record.record_id)
                    assert row is not None and rec is not None
                    row.state, row.tx_hash, row.block_number = (
                        "anchored",
                        "0x" + event.tx_hash.hex(),
                        event.block_number,
                    )
                    row.version_hash = hex32(event.args["versionHash"])
                    rec.state, rec.current_version = "anchored", max(rec.current_version, version.version)
                    return AnchoredVersion(
                        record.record_id,
                        version.version,
                        row.cid,
                        row.tx_hash,
                        event.block_number,
                        row.version_hash,
                        row.media_type,
                    )
        return None


def _aware(moment: datetime) -> datetime:
    """SQLite hands timezone-aware columns back naive (in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record_id(patient: str, author: str, salt: bytes) -> bytes:
    from ledger_service.domain.records import record_id_of

    return record_id_of(patient, author, salt)


class _Replayed(Exception):
    """An identical request (same Idempotency-Key) committed its disclosure first: roll back, replay it."""


def _purpose_code(raw: bytes) -> str:
    from ledger_service.domain.codes import purpose_from_bytes32

    return purpose_from_bytes32(raw)


def _remember_delivery(
    s: Session, accessor: str, key: str | None, request_hash: str, delivery_id: int, *, state: str = "done"
) -> None:
    """Record that a keyed request is answered by this delivery (``pending`` while its transaction is
    in flight), in the delivery's transaction."""
    if key:
        s.merge(
            IdempotencyRow(
                key=f"{accessor}:{key}",
                request_hash=request_hash,
                state=state,
                result=json.dumps({"deliveryId": delivery_id}),
                created_at=_now(),
            )
        )


def _request_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _record_error(exc: TransactionReverted) -> LedgerError:
    """Map the contract's custom errors to the domain's record errors."""
    name = exc.error_name
    if name == "NotRecordAuthor":
        return NotRecordAuthor(str(exc))
    if name == "StaleVersion":
        return StaleVersion("the record was amended meanwhile; read it again and retry")
    if name == "RecordIsErased":
        return RecordErased(str(exc))
    if name in ("NotActiveProvider", "NotEmergencyProvider"):
        return PermissionDenied(str(exc))
    if name == "UnknownCategory":
        return ValidationError(str(exc), field="category")
    if name == "UnknownRecord":
        return RecordNotFound(str(exc))
    return exc
