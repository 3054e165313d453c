"""The disclosure of a read: what the node's read asks for, and the strategy that logs it.

bootstrap.py picks the strategy from the disclosure mode: the node's per-read one (a ``logAccess``
transaction, traced before its receipt) or the hub's batched one (an entry of the operator's Merkle log).
Both implement :class:`DisclosureStrategy` structurally, so the node never imports the hub
(docs/architecture.md, "The path of a read").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from eth_utils import to_checksum_address

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import category_id
from ledger_service.domain.consent import (
    AccessQuery,
    AccessRequest,
    ConsentState,
    EmergencyAccessRequest,
    consent_id,
    decide,
)
from ledger_service.errors import LedgerError, ValidationError


@dataclass(frozen=True)
class SignedAccess:
    """An access request signed by its accessor: what makes a disclosure the accessor's own act.

    Per-read mode relays it (``logAccessBySig``); batched mode puts it in the disclosure log's leaf. It is kept
    with the pending delivery before it is relayed, so a retry after a crash re-sends the same request, which
    the ledger accepts once (docs/architecture.md, "The path of a read")."""

    message: AccessRequest | EmergencyAccessRequest
    signature: bytes
    digest: bytes

    def to_json(self) -> str:
        fields = {k: ("0x" + v.hex()) if isinstance(v, bytes) else v for k, v in self.message.message().items()}
        return json.dumps(
            {
                "primaryType": type(self.message).__name__,
                "message": fields,
                "signature": "0x" + self.signature.hex(),
                "digest": "0x" + self.digest.hex(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SignedAccess:
        data = json.loads(text)
        m = data["message"]
        common = {
            "patient": m["patient"],
            "accessor": m["accessor"],
            "record_id": bytes.fromhex(m["recordId"][2:]),
            "version": int(m["version"]),
            "nonce": int(m["nonce"]),
            "deadline": int(m["deadline"]),
        }
        message: AccessRequest | EmergencyAccessRequest
        if data["primaryType"] == "EmergencyAccessRequest":
            message = EmergencyAccessRequest(reason_hash=bytes.fromhex(m["reasonHash"][2:]), **common)
        else:
            message = AccessRequest(purpose=bytes.fromhex(m["purpose"][2:]), **common)
        return cls(message, bytes.fromhex(data["signature"][2:]), bytes.fromhex(data["digest"][2:]))


@dataclass(frozen=True)
class DisclosureRequest:
    """What a purposed read and a break-glass read differ in; the steps around them are shared.

    ``reason`` is None for a purposed read, the break-glass reason otherwise. ``sign`` is called once a new
    disclosure is needed (not for a replay under an earlier one). ``precheck`` runs before
    an on-chain disclosure is sent (per-read mode only: batched mode checks at a pinned block itself);
    a revert named ``refused_by`` becomes ``refusal()``, any other the usual record error.
    """

    purpose: str
    reason: str | None
    # The accessor's signed request for the head version with a fresh nonce; ``resync=True`` after the ledger
    # refused the last one's nonce as used or its deadline as passed (node/signing.py, worth_signing_again).
    sign: Callable[[bool], SignedAccess]
    precheck: Callable[[], None] | None
    refused_by: str
    refusal: Callable[[], LedgerError]
    # Whether the accessor may be released the bytes now, at the latest block: what a replay under an
    # earlier disclosure must pass (docs/security.md, "Idempotent reads"). Raises the refusal.
    still_allowed: Callable[[], None]
    # Called with (version, transaction hash) as soon as the disclosure is on chain, before the delivery row is
    # finished: the node asks the key custodians meanwhile. Must not raise. Per-read mode only.
    on_logged: Callable[[int, str], None] | None = None


@dataclass(frozen=True)
class KeyedRequest:
    """A read's Idempotency-Key (None without one), the hash of what it asks, and ``replay``: the lookup
    of the delivery of an identical keyed request that finished first (a strategy that retries asks it
    again before each attempt)."""

    key: str | None
    request_hash: str
    replay: Callable[[], DeliveryRow | None]


class DisclosureStrategy(Protocol):
    """Logs a read's disclosure durably, before any byte is released, and returns its delivery row."""

    def disclose(
        self, record: RecordRow, accessor: str, request: DisclosureRequest, keyed: KeyedRequest
    ) -> DeliveryRow: ...


def account_address(value: str, field: str) -> str:
    """The checksummed form of an account a caller names, or a validation error naming the field."""
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{field} is not an Ethereum address", field=field) from exc


def explain_refusal(ledger: ConsentLedgerContract, record: RecordRow, accessor: str, rid: bytes, purpose: bytes) -> str:
    """Explain a refusal with the domain rule over the on-chain consent states."""
    category = category_id(record.category)
    consents: dict[bytes, ConsentState] = {}
    for scope in (rid, category, b"\x00" * 32):
        candidate = consent_id(record.patient, accessor, scope, purpose)
        patient, valid_from, valid_until, revoked = ledger.consent(candidate)
        if int(patient, 16) != 0:
            consents[candidate] = ConsentState(
                candidate, patient, accessor, scope, purpose, valid_from, valid_until, revoked
            )
    decision = decide(
        AccessQuery(record.patient, accessor, rid, category, purpose),
        consents,
        timestamp=ledger.block_timestamp("latest"),
        grantee_is_active_provider=ledger.is_active_provider(accessor),
    )
    return f"access refused: {decision.reason}"
