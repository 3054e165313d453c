"""Consent: the signed messages of every party, deterministic ids, and the authorization rule.

The rule mirrors the contract's exactly (``isAuthorized``, and the patient's own PATRQT request that
``logAccessBySig`` takes without consent), so the service can explain a refusal and the auditor can
re-derive every decision from events without trusting the contract's own check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from eth_abi import encode as abi_encode
from eth_utils import keccak

from ledger_service.domain.addresses import checksum_address
from ledger_service.domain.codes import (
    EMERGENCY_PURPOSE,
    GRANTABLE_PURPOSES,
    PATIENT_REQUEST_PURPOSE,
    ZERO32,
    purpose_from_bytes32,
)
from ledger_service.errors import ValidationError

DOMAIN_NAME: Final = "ConsentLedger"
DOMAIN_VERSION: Final = "1"
UINT40_MAX: Final = 2**40 - 1

# The public EIP-712 types (README, "The contract model"; docs/architecture.md, "Signed acts"). Field order is
# part of the type hash.
EIP712_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "ConsentGrant": [
        {"name": "patient", "type": "address"},
        {"name": "grantee", "type": "address"},
        {"name": "scope", "type": "bytes32"},
        {"name": "purpose", "type": "bytes32"},
        {"name": "validFrom", "type": "uint64"},
        {"name": "validUntil", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "ConsentRevoke": [
        {"name": "patient", "type": "address"},
        {"name": "consentId", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "DelegateGrant": [
        {"name": "patient", "type": "address"},
        {"name": "delegate", "type": "address"},
        {"name": "validUntil", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "DelegateRevoke": [
        {"name": "patient", "type": "address"},
        {"name": "delegate", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RecordAnchor": [
        {"name": "patient", "type": "address"},
        {"name": "author", "type": "address"},
        {"name": "category", "type": "bytes32"},
        {"name": "salt", "type": "bytes32"},
        {"name": "cid", "type": "bytes"},
        {"name": "commitment", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RecordAmend": [
        {"name": "patient", "type": "address"},
        {"name": "author", "type": "address"},
        {"name": "recordId", "type": "bytes32"},
        {"name": "cid", "type": "bytes"},
        {"name": "commitment", "type": "bytes32"},
        {"name": "previousHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "AccessRequest": [
        {"name": "patient", "type": "address"},
        {"name": "accessor", "type": "address"},
        {"name": "recordId", "type": "bytes32"},
        {"name": "version", "type": "uint32"},
        {"name": "purpose", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "EmergencyAccessRequest": [
        {"name": "patient", "type": "address"},
        {"name": "accessor", "type": "address"},
        {"name": "recordId", "type": "bytes32"},
        {"name": "version", "type": "uint32"},
        {"name": "reasonHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RecordErase": [
        {"name": "patient", "type": "address"},
        {"name": "recordId", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "EncryptionKey": [
        {"name": "account", "type": "address"},
        {"name": "publicKey", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
EIP712_DOMAIN_TYPE: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def type_string(primary: str) -> str:
    fields = ",".join(f"{f['type']} {f['name']}" for f in EIP712_TYPES[primary])
    return f"{primary}({fields})"


@dataclass(frozen=True)
class Eip712Domain:
    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": checksum_address(self.verifying_contract),
        }


def field_attribute(eip712_name: str) -> str:
    """The dataclass attribute of an EIP-712 field: ``validFrom`` -> ``valid_from``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", eip712_name).lower()


class TypedMessage:
    """A signed message of :data:`EIP712_TYPES` (or of another family's ``TYPES``), named like its primary
    type; its fields are the type's, in snake case (docs/architecture.md, "Signed acts")."""

    TYPES: ClassVar[Mapping[str, list[dict[str, str]]]] = EIP712_TYPES

    def message(self) -> dict[str, Any]:
        """The EIP-712 ``message`` object: camelCase keys in the type's order, addresses checksummed."""
        out: dict[str, Any] = {}
        for member in self.TYPES[type(self).__name__]:
            value = getattr(self, field_attribute(member["name"]))
            out[member["name"]] = checksum_address(value) if member["type"] == "address" else value
        return out


@dataclass(frozen=True)
class ConsentGrant(TypedMessage):
    patient: str
    grantee: str
    scope: bytes
    purpose: bytes
    valid_from: int
    valid_until: int
    nonce: int
    deadline: int

    @property
    def consent_id(self) -> bytes:
        return consent_id(self.patient, self.grantee, self.scope, self.purpose)

    def check(self) -> None:
        """The contract's validation, run before any gas is spent."""
        check_grantable(self.purpose)
        check_window(self.valid_from, self.valid_until)
        if len(self.scope) != 32:
            raise ValidationError("scope must be 32 bytes", field="scope")


@dataclass(frozen=True)
class ConsentRevoke(TypedMessage):
    patient: str
    consent_id: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class DelegateGrant(TypedMessage):
    patient: str
    delegate: str
    valid_until: int
    nonce: int
    deadline: int


@dataclass(frozen=True)
class DelegateRevoke(TypedMessage):
    """The patient ends a delegation (only the patient signs it)."""

    patient: str
    delegate: str
    nonce: int
    deadline: int


@dataclass(frozen=True)
class RecordAnchor(TypedMessage):
    """A provider (``author``, the signer) anchors version 1 of a record of ``patient``."""

    patient: str
    author: str
    category: bytes
    salt: bytes
    cid: bytes
    commitment: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class RecordAmend(TypedMessage):
    """The record's author (the signer) anchors its next version, chained to ``previous_hash``."""

    patient: str
    author: str
    record_id: bytes
    cid: bytes
    commitment: bytes
    previous_hash: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class AccessRequest(TypedMessage):
    """``accessor`` (the signer) asks to read ``version`` of a record for ``purpose``: its disclosure."""

    patient: str
    accessor: str
    record_id: bytes
    version: int
    purpose: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class EmergencyAccessRequest(TypedMessage):
    """A break-glass read by ``accessor`` (the signer); ``reason_hash`` is keccak256 of the stated reason."""

    patient: str
    accessor: str
    record_id: bytes
    version: int
    reason_hash: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class RecordErase(TypedMessage):
    """The patient or a live delegate (the signer) asks to erase a record."""

    patient: str
    record_id: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class EncryptionKey(TypedMessage):
    """``account`` (the signer) publishes the X25519 public key that key shares are sealed to."""

    account: str
    public_key: bytes
    nonce: int
    deadline: int


SignedMessage = (
    ConsentGrant
    | ConsentRevoke
    | DelegateGrant
    | DelegateRevoke
    | RecordAnchor
    | RecordAmend
    | AccessRequest
    | EmergencyAccessRequest
    | RecordErase
    | EncryptionKey
)
ConsentMessage = ConsentGrant | ConsentRevoke | DelegateGrant
"""The three messages of version 1, which ``/v1/consents`` relays."""


def typed_data(domain: Eip712Domain, message: TypedMessage) -> dict[str, Any]:
    """The full EIP-712 typed data (``eth_signTypedData_v4`` shape) for a message."""
    primary = type(message).__name__
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary: message.TYPES[primary]},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": message.message(),
    }


def consent_id(patient: str, grantee: str, scope: bytes, purpose: bytes) -> bytes:
    """``keccak256(abi.encode(patient, grantee, scope, purpose))`` as the contract computes it."""
    return keccak(
        abi_encode(
            ["address", "address", "bytes32", "bytes32"],
            [checksum_address(patient), checksum_address(grantee), scope, purpose],
        )
    )


def address_bytes(value: object) -> bytes | None:
    """The 20 bytes of a ``0x``-prefixed hex address, or None for anything else (left to the slow path)."""
    if type(value) is not str or len(value) != 42 or not value.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        return None
    return raw if len(raw) == 20 else None


def fast_consent_id(patient: str, grantee: str, scope: bytes, purpose: bytes) -> bytes:
    """:func:`consent_id` without eth-abi or checksumming: keccak over the fixed 128-byte layout.

    ``abi.encode(address, address, bytes32, bytes32)`` is ``pad12(patient) || pad12(grantee) || scope ||
    purpose``; any input outside that plain shape (a short ``bytes32``, an address that is not ``0x`` + 40
    hex digits) goes through :func:`consent_id` itself, so results and errors are the same.
    """
    p, g = address_bytes(patient), address_bytes(grantee)
    if p is None or g is None or type(scope) is not bytes or type(purpose) is not bytes:
        return consent_id(patient, grantee, scope, purpose)
    if len(scope) != 32 or len(purpose) != 32:
        return consent_id(patient, grantee, scope, purpose)
    return keccak(_PAD12 + p + _PAD12 + g + scope + purpose)


_PAD12: Final = b"\x00" * 12


def check_grantable(purpose: bytes) -> None:
    code = purpose_from_bytes32(purpose)
    if code == EMERGENCY_PURPOSE:
        raise ValidationError(
            "ETREAT cannot be granted; it is reachable only through emergency access", field="purpose"
        )
    if code not in GRANTABLE_PURPOSES or purpose != code.encode("ascii").ljust(32, b"\x00"):
        raise ValidationError(f"unknown purpose {code!r}", field="purpose")


def check_window(valid_from: int, valid_until: int) -> None:
    if not (0 <= valid_from <= UINT40_MAX and 0 <= valid_until <= UINT40_MAX):
        raise ValidationError("validity times must be unix seconds below 2^40", field="validUntil")
    if valid_until != 0 and valid_until <= valid_from:
        raise ValidationError("validUntil must be 0 (no expiry) or after validFrom", field="validUntil")


# ----------------------------------------------------------------- state and the rule


@dataclass(frozen=True)
class ConsentState:
    """One consent as stored on chain (the latest grant of its tuple)."""

    consent_id: bytes
    patient: str
    grantee: str
    scope: bytes
    purpose: bytes
    valid_from: int
    valid_until: int
    revoked: bool = False

    def active_at(self, timestamp: int) -> bool:
        return (
            not self.revoked
            and self.valid_from <= timestamp
            and (self.valid_until == 0 or timestamp < self.valid_until)
        )

    def status_at(self, timestamp: int) -> str:
        if self.revoked:
            return "revoked"
        if self.valid_until != 0 and timestamp >= self.valid_until:
            return "expired"
        if timestamp < self.valid_from:
            return "pending"
        return "active"


@dataclass(frozen=True)
class Delegation:
    patient: str
    delegate: str
    valid_until: int
    active: bool = True

    def live_at(self, timestamp: int) -> bool:
        return self.active and (self.valid_until == 0 or timestamp < self.valid_until)


@dataclass(frozen=True)
class AccessQuery:
    """The question the rule answers: may ``grantee`` read ``record_id`` (of ``category``) for ``purpose``."""

    patient: str
    grantee: str
    record_id: bytes
    category: bytes
    purpose: bytes


@dataclass(frozen=True)
class Decision:
    allowed: bool
    consent_id: bytes | None
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


_PATIENT_REQUEST32: Final = PATIENT_REQUEST_PURPOSE.encode("ascii").ljust(32, b"\x00")


def is_patient_request(patient: str, accessor: str, purpose: bytes) -> bool:
    """Whether an access names the record's patient as its accessor, for PATRQT ("Patient requested").

    The patient's right of access to their own record: ``logAccessBySig`` logs such a request without consent,
    with consent 0, once the patient signed it (a delegate's signature is not the patient's)."""
    return purpose == _PATIENT_REQUEST32 and patient.lower() == accessor.lower()


def decide(
    request: AccessQuery,
    consents: Mapping[bytes, ConsentState],
    *,
    timestamp: int,
    grantee_is_active_provider: bool,
    record_exists: bool = True,
    record_erased: bool = False,
    id_of: Callable[[str, str, bytes, bytes], bytes] = consent_id,
) -> Decision:
    """Whether ``request`` is authorized at ``timestamp``, mirroring ``logAccessBySig``.

    First the consents, as ``isAuthorized``: scopes are tried in the contract's order, the record, its category,
    all records. ``id_of`` computes the consent ids (a faster or memoized equivalent of :func:`consent_id` may be
    given; same results). Without one, the patient's own PATRQT request (:func:`is_patient_request`) is allowed
    with ``consent_id`` None: the ledger logs it with consent 0.
    """
    if not record_exists:
        return Decision(False, None, "unknown record")
    if record_erased:
        return Decision(False, None, "record erased")
    decision = _by_consent(request, consents, timestamp, grantee_is_active_provider, id_of)
    if decision.allowed:
        return decision
    if is_patient_request(request.patient, request.grantee, request.purpose):
        return Decision(True, None, "the patient's own request (PATRQT) needs no consent")
    if request.patient.lower() == request.grantee.lower():
        return Decision(False, None, f"a patient reads their own record for {PATIENT_REQUEST_PURPOSE} only")
    return decision


def _by_consent(
    request: AccessQuery,
    consents: Mapping[bytes, ConsentState],
    timestamp: int,
    grantee_is_active_provider: bool,
    id_of: Callable[[str, str, bytes, bytes], bytes],
) -> Decision:
    """``isAuthorized`` on a live record: an active provider, a grantable purpose, an active consent."""
    if not grantee_is_active_provider:
        return Decision(False, None, "grantee is not an active provider")
    if purpose_from_bytes32(request.purpose) == EMERGENCY_PURPOSE:
        return Decision(False, None, "ETREAT is reachable only through emergency access")
    for scope in (request.record_id, request.category, ZERO32):
        candidate = id_of(request.patient, request.grantee, scope, request.purpose)
        state = consents.get(candidate)
        if state is not None and state.active_at(timestamp):
            return Decision(True, candidate, "consent active")
    return Decision(False, None, _refusal_reason(request, consents, timestamp, id_of))


def _refusal_reason(
    request: AccessQuery,
    consents: Mapping[bytes, ConsentState],
    timestamp: int,
    id_of: Callable[[str, str, bytes, bytes], bytes] = consent_id,
) -> str:
    """The most specific reason no consent applies: revoked, expired, not yet valid, or none."""
    reasons: list[str] = []
    for scope in (request.record_id, request.category, ZERO32):
        state = consents.get(id_of(request.patient, request.grantee, scope, request.purpose))
        if state is not None:
            reasons.append(state.status_at(timestamp))
    for status in ("revoked", "expired", "pending"):
        if status in reasons:
            return {"pending": "consent not yet valid"}.get(status, f"consent {status}")
    return "no consent for this grantee, record and purpose"
