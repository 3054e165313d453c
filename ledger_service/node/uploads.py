"""A provider's uploads and amendments: seal (encrypt and commit), store, wrap the data key, anchor.

The version's rows are written pending, with the wrapped key, before its anchor is sent; after the
receipt the version is anchored. A crash in between is finished by :meth:`UploadService.recover_pending`
(docs/architecture.md, "The path of an upload").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ledger_service.blobs import BlobStore, Cid
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.codec import eip712
from ledger_service.crypto import DataKey, PlaintextCommitment, RecordBinding, encrypt_stream, new_salt
from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import CommitmentSaltRow, RecordRow, RecordVersionRow
from ledger_service.db.records import anchored_record
from ledger_service.domain.codes import hex32
from ledger_service.domain.consent import Eip712Domain, RecordAmend, RecordAnchor
from ledger_service.domain.media_types import media_type_essence, stored_media_type
from ledger_service.domain.records import FHIR_MEDIA_TYPE, fast_version_hash, record_id_of
from ledger_service.errors import (
    ChainError,
    ConfigurationError,
    LedgerError,
    NotRecordAuthor,
    PermissionDenied,
    TransactionReverted,
    ValidationError,
)
from ledger_service.node.custody import ThresholdCustody
from ledger_service.node.fhir import MAX_FHIR_BYTES, check_fhir, fhir_document
from ledger_service.node.signing import (
    Deadlines,
    DigestSigner,
    MessageNonces,
    ProviderKeys,
    relayed_signing_again_once,
)
from ledger_service.records.disclosure import account_address
from ledger_service.records.locks import RecordLocks
from ledger_service.records.relaying import RecordFacts, Relayer, RelayOutcome


def refused_for_sure(exc: Exception) -> bool:
    """Whether a relay's error means the act was not and will not be on chain (a refusal or a revert), as
    opposed to an unknown outcome (a timeout, the chain or the hub unreachable)."""
    return isinstance(exc, TransactionReverted) or not isinstance(exc, ChainError)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite hands timezone-aware columns back naive (in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


class UploadService:
    def __init__(
        self,
        *,
        db: Database,
        idempotency: IdempotencyStore,
        blobs: BlobStore,
        custody: ThresholdCustody | None,
        ledger: ConsentLedgerContract,
        keys: ProviderKeys,
        nonces: MessageNonces,
        deadlines: Deadlines,
        relayer: Relayer,
        domain: Eip712Domain,
        categories: Callable[[], dict[str, bytes]],
        locks: RecordLocks,
        fhir_check: Callable[[bytes], None] = check_fhir,
        max_fhir_bytes: int = MAX_FHIR_BYTES,
    ) -> None:
        self.db = db
        self.idempotency = idempotency
        self.blobs = blobs
        self._custody = custody  # None in a hub alone: it holds no key

        self.ledger = ledger  # views only: the anchors are the provider's signed messages, relayed
        self.keys = keys
        self.nonces = nonces
        self.deadlines = deadlines
        self.relayer = relayer
        self.domain = domain
        self._categories = categories
        self._locks = locks  # shared with the hub's erasure (bootstrap.py)
        self._fhir_check = fhir_check  # bootstrap: in a worker process, for a large document
        self.max_fhir_bytes = max_fhir_bytes

    @property
    def custody(self) -> ThresholdCustody:
        if self._custody is None:
            raise ConfigurationError("this process is a hub: uploads and reads are a provider's node's")
        return self._custody

    def _category(self, code: str) -> bytes:
        known = self._categories()
        if code not in known:
            raise ValidationError(
                f"unknown category {code!r}; registered: {', '.join(sorted(known))}", field="category"
            )
        return known[code]

    def _seal(
        self, binding: RecordBinding, media_type: str, content: Iterable[bytes], *, author: str
    ) -> tuple[Cid, int, int, bytes, bytes]:
        """Encrypt and store a version, its data key's shares deposited with every custodian meanwhile (all
        of them, before the anchor); returns (cid, plaintext size, ciphertext size, commitment, salt)."""
        if media_type_essence(media_type) == FHIR_MEDIA_TYPE:
            body = fhir_document(content, self.max_fhir_bytes)
            self._fhir_check(body)
            content = [body]
        data_key = DataKey.generate()
        deposited = self.custody.begin_protect(binding, data_key, author=author)
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

        try:
            put = self.blobs.put(encrypt_stream(data_key, binding, plaintext()))
        except BaseException:
            with contextlib.suppress(LedgerError):  # the blob's own failure is the one to report
                deposited()
            raise
        deposited()  # raises CustodyUnavailable unless every custodian holds its share
        return put.cid, size, put.size, commitment.digest(), salt

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
        provider, patient = account_address(provider, "provider"), account_address(patient, "patient")
        media_type = stored_media_type(media_type)  # a malformed one is refused before anything is stored
        category_bytes = self._category(category)
        signer = self.keys.signer_for(provider)
        if not self.ledger.is_active_provider(provider):
            raise PermissionDenied(f"{provider} is not an active provider", account=provider)
        anchor_salt = os.urandom(32)
        record_id_bytes = record_id_of(patient, provider, anchor_salt)
        record_id = hex32(record_id_bytes)
        binding = RecordBinding(record_id_bytes, 1, patient)
        cid, size, ct_size, commitment, commitment_salt = self._seal(binding, media_type, content, author=provider)
        deadline = self.deadlines.next(fresh=True)  # the signed anchor's, kept with the pending version
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
                    anchor_deadline=deadline,
                    created_at=now,
                )
            )
            s.add(CommitmentSaltRow(record_id=record_id, version=1, commitment_salt=commitment_salt))

        def anchor(nonce: int) -> RecordAnchor:
            return RecordAnchor(
                patient=patient,
                author=provider,
                category=category_bytes,
                salt=anchor_salt,
                cid=cid.bytes,
                commitment=commitment,
                nonce=nonce,
                deadline=deadline,
            )

        try:
            outcome = self._relay_signed(provider, signer, anchor, RecordFacts(media_type, size, ct_size))
        except Exception as exc:
            if refused_for_sure(exc):
                self._discard_pending(record_id, 1, cid, whole_record=True)
            # Otherwise the outcome is unknown (timeout, chain or hub down): keep the pending rows; recovery decides.
            raise
        expected = fast_version_hash(
            record_id=record_id_bytes,
            version=1,
            patient=patient,
            author=provider,
            category=category_bytes,
            cid=cid.bytes,
            commitment=commitment,
            previous_hash=b"\x00" * 32,
        )
        return self._finish_anchor(outcome, record_id, 1, expected)

    def amend(
        self,
        *,
        provider: str,
        record_id: str,
        media_type: str,
        content: Iterable[bytes],
        idempotency_key: str | None = None,
    ) -> AnchoredVersion:
        provider = account_address(provider, "provider")
        media_type = stored_media_type(media_type)  # a malformed one is refused before anything is stored
        with self._locks.of(record_id):
            record = anchored_record(self.db, record_id)
            if record.author != provider:
                raise NotRecordAuthor(f"only the record's author {record.author} may amend it", record_id=record_id)
            signer = self.keys.signer_for(provider)
            version = record.current_version + 1
            with self.db.session() as s:
                head = s.execute(
                    select(RecordVersionRow.version_hash).where(
                        RecordVersionRow.record_id == record_id, RecordVersionRow.version == record.current_version
                    )
                ).scalar_one()
            binding = RecordBinding(bytes.fromhex(record_id[2:]), version, record.patient)
            cid, size, ct_size, commitment, commitment_salt = self._seal(binding, media_type, content, author=provider)
            deadline = self.deadlines.next(fresh=True)  # the signed amendment's, kept with the pending version
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
                        anchor_deadline=deadline,
                        created_at=_now(),
                    )
                )
                s.add(CommitmentSaltRow(record_id=record_id, version=version, commitment_salt=commitment_salt))
            previous_hash = bytes.fromhex(head[2:])

            def amend(nonce: int) -> RecordAmend:
                return RecordAmend(
                    patient=record.patient,
                    author=provider,
                    record_id=binding.record_id,
                    cid=cid.bytes,
                    commitment=commitment,
                    previous_hash=previous_hash,
                    nonce=nonce,
                    deadline=deadline,
                )

            try:
                outcome = self._relay_signed(provider, signer, amend, RecordFacts(media_type, size, ct_size))
            except Exception as exc:
                if refused_for_sure(exc):
                    self._discard_pending(record_id, version, cid, whole_record=False)
                raise
            expected = fast_version_hash(
                record_id=binding.record_id,
                version=version,
                patient=record.patient,
                author=provider,
                category=self._category(record.category),
                cid=cid.bytes,
                commitment=commitment,
                previous_hash=previous_hash,
            )
            return self._finish_anchor(outcome, record_id, version, expected)

    def _relay_signed(
        self,
        provider: str,
        signer: DigestSigner,
        build: Callable[[int], RecordAnchor | RecordAmend],
        facts: RecordFacts,
    ) -> RelayOutcome:
        """Sign ``build(nonce)`` with the provider's key and relay it; once more with a fresh nonce if the
        ledger refused its nonce as used or its deadline as passed (node/signing.py, relayed_signing_again_once)."""

        def relay_signed(resync: bool) -> RelayOutcome:
            message = build(self.nonces.allocate(provider, resync=resync))
            return self.relayer.relay(message, signer.sign_digest(eip712.digest(self.domain, message)), record=facts)

        return relayed_signing_again_once(relay_signed)

    def _finish_anchor(self, outcome: RelayOutcome, record_id: str, version: int, expected: bytes) -> AnchoredVersion:
        if outcome.record_id != record_id or outcome.version != version:
            raise TransactionReverted(f"anchor of {record_id} v{version} emitted an unexpected event")
        # The contract computes the same hash from the same fields (domain/records.py); the auditor checks it.
        version_hash = hex32(expected)
        with self.db.session() as s:
            row = s.execute(
                select(RecordVersionRow).where(
                    RecordVersionRow.record_id == record_id, RecordVersionRow.version == version
                )
            ).scalar_one()
            row.state, row.tx_hash, row.block_number, row.version_hash = (
                "anchored",
                outcome.tx_hash,
                outcome.block_number,
                version_hash,
            )
            record = s.get(RecordRow, record_id)
            assert record is not None
            record.state, record.current_version = "anchored", version
        return AnchoredVersion(
            record_id, version, row.cid, outcome.tx_hash, outcome.block_number, version_hash, row.media_type
        )

    def _discard_pending(self, record_id: str, version: int, cid: Cid, *, whole_record: bool) -> None:
        """Undo a version whose anchor was refused: no key, no blob, no row remains."""
        with self.db.session() as s:
            for model in (CommitmentSaltRow, RecordVersionRow):
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

    # ------------------------------------------------------------- recovery

    def recover_pending(self, *, stale_after: float = 0.0) -> tuple[int, int]:
        """Resolve versions left pending by a crash: finish the anchored, discard the rest.

        A version whose anchor is on chain is adopted whatever its age. One whose anchor is not
        is discarded only once older than ``stale_after`` seconds, so an upload another process
        (a second replica) still has in flight is left alone, and only once its signed anchor's
        deadline has passed on chain, so that it can no longer land without its key. A retried upload's Idempotency-Key
        is answered with the adopted version, or freed with the discarded one.
        Returns (finished, discarded).
        """
        finished = discarded = 0
        cutoff = _now() - timedelta(seconds=stale_after)
        chain_now: int | None = None
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
                # Never before its signed anchor's deadline has passed on chain: until then a relay (a hub that
                # took it, a transaction still in a mempool) may yet land it, and its key must then still be here.
                if version.anchor_deadline is not None:
                    chain_now = self.ledger.block_timestamp() if chain_now is None else chain_now
                    if chain_now <= version.anchor_deadline:
                        continue
                self._discard_pending(
                    version.record_id, version.version, Cid.parse(version.cid), whole_record=version.version == 1
                )
                if version.idempotency_key:
                    self.idempotency.release(version.idempotency_key)
                discarded += 1
        return finished, discarded

    def _adopt_anchor(self, record: RecordRow, version: RecordVersionRow) -> AnchoredVersion | None:
        event = self.ledger.anchor_event(version.record_id, version.version)
        if event is None:
            return None
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
