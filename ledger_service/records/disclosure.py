"""The disclosure of a read: what the node's read asks for, and the strategy that logs it.

bootstrap.py picks the strategy from the disclosure mode: the node's per-read one (a ``logAccess``
transaction, traced before its receipt) or the hub's batched one (an entry of the operator's Merkle log).
Both implement :class:`DisclosureStrategy` structurally, so the node never imports the hub
(docs/architecture.md, "The path of a read").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from eth_utils import to_checksum_address

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.models import DeliveryRow, RecordRow
from ledger_service.domain.codes import category_id
from ledger_service.domain.consent import AccessRequest, ConsentState, consent_id, decide
from ledger_service.errors import LedgerError, ValidationError


@dataclass(frozen=True)
class DisclosureRequest:
    """What a purposed read and a break-glass read differ in; the steps around them are shared.

    ``reason`` is None for a purposed read, the break-glass reason otherwise. ``precheck`` runs before
    an on-chain disclosure is sent (per-read mode only: batched mode checks at a pinned block itself);
    a revert named ``refused_by`` becomes ``refusal()``, any other the usual record error.
    """

    purpose: str
    reason: str | None
    precheck: Callable[[], None] | None
    refused_by: str
    refusal: Callable[[], LedgerError]
    # Whether the accessor may be released the bytes now, at the latest block: what a replay under an
    # earlier disclosure must pass (docs/security.md, "Idempotent reads"). Raises the refusal.
    still_allowed: Callable[[], None]


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
        AccessRequest(record.patient, accessor, rid, category, purpose),
        consents,
        timestamp=ledger.block_timestamp("latest"),
        grantee_is_active_provider=ledger.is_active_provider(accessor),
    )
    return f"access refused: {decision.reason}"
