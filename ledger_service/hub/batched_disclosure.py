"""Batched disclosure: a read's disclosure is an entry of the operator's Merkle log (:mod:`.batching`).

The entry holds the accessor's signed access request (docs/architecture.md, "Signed acts"): the hub appends
only what the accessor signed, and checks it first as the ledger would (the signature is the accessor's, by
ECDSA or, for a contract accessor, ERC-1271 at the pinned block; the deadline is not past; the message names
this read; its nonce is unused on chain and its digest was never logged). Consent is checked by eth_call
pinned to block B; the entry (blockNumber B, B's timestamp) is appended with its delivery row in one DB
transaction, and nothing is released unless that commit succeeds; the log's root is anchored on chain in
batches (docs/architecture.md, "The path of a read").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eth_utils import keccak
from sqlalchemy import select

from ledger_service.chain.ledger import ConsentLedgerContract, OnChainRecord
from ledger_service.chain.wire import RpcError
from ledger_service.codec import eip712
from ledger_service.codec.primitives import ZERO32, checksum_address
from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.leaf_store import LogAppendConflict
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import (
    EMERGENCY_PURPOSE,
    EMERGENCY_ROLE,
    hex32,
    purpose_from_bytes32,
    purpose_to_bytes32,
)
from ledger_service.domain.consent import AccessRequest, Eip712Domain, EmergencyAccessRequest
from ledger_service.errors import (
    ConsentDenied,
    PermissionDenied,
    RecordErased,
    RecordNotFound,
    SignatureError,
)
from ledger_service.hub.batching import DisclosureLog
from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest, SignedAccess, explain_refusal
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.signatures import (
    ERC1271_GAS,
    MAX_SIGNATURE_BYTES,
    ecdsa_signer,
    erc1271_accepted,
    erc1271_call,
)

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
        """Check the signed request at a pinned block, then append its entry and its delivery row atomically."""
        key, request_hash, replay = keyed.key, keyed.request_hash, keyed.replay
        purpose, reason = request.purpose, request.reason
        rid = bytes.fromhex(record.record_id[2:])
        purpose_bytes = purpose_to_bytes32(purpose)
        signed = request.sign(False)  # the node signs for its provider: the hub holds no key of the accessor
        block = self.ledger.block_number()
        # One round trip for the record, the authorization, the request's nonce and the block's time.
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("record", (record.patient, rid)),
            ("nonceUsed", (accessor, signed.message.nonce)),
        ]
        if reason is None:
            calls.append(("authorizingConsent", (record.patient, accessor, rid, purpose_bytes)))
        else:
            calls += [("hasRole", (EMERGENCY_ROLE, accessor)), ("isActiveProvider", (accessor,))]
        results, header = self.ledger.views(calls, block=block, with_block=True)
        assert header is not None
        timestamp = int(header["timestamp"], 16)
        (author, version, category_index, erased), head = results[0]
        onchain = OnChainRecord(checksum_address(author), int(version), int(category_index), bool(erased), bytes(head))
        if not onchain.exists:
            raise RecordNotFound(f"no record {record.record_id} on chain at block {block}", record_id=record.record_id)
        if onchain.erased:
            raise RecordErased(
                f"record {record.record_id} was erased at the patient's request", record_id=record.record_id
            )
        if reason is None:
            consent = bytes(results[2][0])
            if consent == ZERO32:
                raise ConsentDenied(
                    explain_refusal(self.ledger, record, accessor, rid, purpose_bytes),
                    record_id=record.record_id,
                    accessor=accessor,
                    purpose=purpose,
                )
        else:
            if not (results[2][0] and results[3][0]):
                raise PermissionDenied(
                    f"{accessor} may not break the glass (no active EMERGENCY_ROLE)", account=accessor
                )
            consent = ZERO32
        self._check_request(signed, record, accessor, rid, purpose_bytes, reason, onchain, block, timestamp)
        if results[1][0]:
            # Another node signed for the accessor with that nonce meanwhile: sign once more, from the chain's.
            signed = request.sign(True)
            self._check_request(signed, record, accessor, rid, purpose_bytes, reason, onchain, block, timestamp)
            if self.ledger.nonce_used(accessor, signed.message.nonce, block=block):
                raise SignatureError(
                    f"the accessor's nonce {signed.message.nonce} is already used on chain", reason="nonce-used"
                )
        entry = DisclosureEntry.of_request(
            signed.message,
            signed.signature,
            domain=self.domain,
            consent_id=consent,
            block_number=block,
            timestamp=timestamp,
        )
        for attempt in range(1, MAX_APPEND_ATTEMPTS + 1):
            earlier = replay()  # a concurrent twin may have finished first
            if earlier is not None:
                return earlier
            try:
                delivery = self._append_disclosure(entry, signed, key, request_hash, reason=reason)
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

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.disclosure_log.chain_id, self.ledger.address)

    def _check_request(
        self,
        signed: SignedAccess,
        record: RecordRow,
        accessor: str,
        rid: bytes,
        purpose: bytes,
        reason: str | None,
        onchain: OnChainRecord,
        block: int,
        timestamp: int,
    ) -> None:
        """The signed request is the accessor's, for this very read, and usable at ``block``: what the ledger
        would check of it on chain, checked before the entry exists (a leaf cannot be taken back)."""
        m = signed.message
        kind = type(m).__name__
        wanted = AccessRequest if reason is None else EmergencyAccessRequest
        problems = []
        if not isinstance(m, wanted):
            problems.append(f"a {wanted.__name__} is needed, got a {kind}")
        if checksum_address(m.patient) != checksum_address(record.patient):
            problems.append(f"patient {m.patient}, the record's is {record.patient}")
        if checksum_address(m.accessor) != checksum_address(accessor):
            problems.append(f"accessor {m.accessor}, the reader is {accessor}")
        if m.record_id != rid:
            problems.append(f"record 0x{m.record_id.hex()}, the read is of {record.record_id}")
        if isinstance(m, AccessRequest) and m.purpose != purpose:
            problems.append(
                f"purpose {purpose_from_bytes32(m.purpose)!r}, the read's is {purpose_from_bytes32(purpose)!r}"
            )
        if isinstance(m, EmergencyAccessRequest) and (
            reason is None or m.reason_hash != keccak(reason.encode("utf-8"))
        ):
            problems.append("a reasonHash that is not keccak256 of the stated reason")
        if not 1 <= m.version <= onchain.version:
            problems.append(f"version {m.version}; the record has versions 1 to {onchain.version} at block {block}")
        if problems:
            raise SignatureError(
                f"the signed {kind} does not name this read: " + "; ".join(problems), reason="bad-request"
            )
        if m.deadline < timestamp:
            raise SignatureError(
                f"the signed {kind}'s deadline {m.deadline} is before block {block}'s time {timestamp}",
                reason="deadline-passed",
            )
        digest = eip712.digest(self.domain, m)
        if digest != signed.digest:
            raise SignatureError(
                f"the signed {kind} carries digest 0x{signed.digest.hex()}; its EIP-712 digest is 0x{digest.hex()}",
                reason="bad-signature",
            )
        signature = signed.signature
        if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
            raise SignatureError(
                f"a signature is 65 bytes (ECDSA) or an ERC-1271 proof of at most {MAX_SIGNATURE_BYTES} bytes",
                reason="bad-signature",
            )
        signer = ecdsa_signer(digest, signature)
        if signer != checksum_address(accessor) and not self._contract_accepts(accessor, digest, signature, block):
            raise SignatureError(
                f"the signed {kind} must be signed by its accessor {accessor}; "
                + (f"it is signed by {signer}" if signer else "its signature is no valid ECDSA signature")
                + " and the accessor accepts it under no ERC-1271 contract",
                reason="bad-signature",
            )

    def _contract_accepts(self, account: str, digest: bytes, signature: bytes, block: int) -> bool:
        """ERC-1271 at ``block``: ``account`` has code and its ``isValidSignature`` answers the magic value
        within :data:`ERC1271_GAS` (a contract cannot make the hub's check expensive)."""
        rpc = self.ledger.rpc
        code = rpc.request("eth_getCode", [checksum_address(account), hex(block)])
        if not code or code == "0x":
            return False
        try:
            answer = rpc.call(account, erc1271_call(digest, signature), block=block, gas=ERC1271_GAS)
        except RpcError:
            return False  # reverted (or out of gas): not accepted
        return erc1271_accepted(answer)

    def _append_disclosure(
        self, entry: DisclosureEntry, signed: SignedAccess, key: str | None, request_hash: str, *, reason: str | None
    ) -> DeliveryRow:
        """One DB transaction: the log entry (and its subtree nodes), the delivery row, the idempotency row."""
        digest = hex32(signed.digest)
        with self.db.session() as s:
            leaf = self.disclosure_log.store.append_in(s, entry.encode())
            # Under the log's writer lock: a twin request that committed first wins.
            if key and self.idempotency.twin_is_unsent(s, entry.accessor, key):
                raise _Replayed
            # A signed request authorizes one disclosure (the column is unique as well, for any other writer).
            if s.execute(select(DeliveryRow.id).where(DeliveryRow.request_digest == digest)).first() is not None:
                raise SignatureError(f"the signed request 0x{digest[2:]} was already logged", reason="request-reused")
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
                request_digest=digest,
                signed_request=signed.to_json(),
                idempotency_key=key,
                created_at=_now(),
            )
            s.add(delivery)
            s.flush()
            IdempotencyStore.remember_delivery(s, entry.accessor, key, request_hash, delivery.id)
        return delivery
