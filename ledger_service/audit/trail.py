"""The ledger's whole history as plain data: the events the verifier judges, in chain order, and the acts behind them.

A :class:`Trail` is built from decoded logs and their blocks' timestamps by :func:`build_trail`; each event's
:class:`Act` (who sent its transaction, and for a by-signature call the signed message and its signature) is
decoded from the transaction's input by :class:`CallDecoder`. Reading them from a node is
:func:`ledger_service.audit.fetch.fetch_trail`'s job. Nothing here does I/O or judges anything:
:mod:`ledger_service.audit.verifier` does, as pure functions over a :class:`Trail`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from operator import attrgetter
from typing import Any, Final, Literal, TypeVar, get_args

from ledger_service.codec.abi import ContractCodec, DecodedEvent
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import ZERO32
from ledger_service.domain.consent import EIP712_TYPES, SignedMessage
from ledger_service.domain.records import RecordVersion
from ledger_service.errors import AuditError

T = TypeVar("T")

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``, called as work advances."""


def no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass(frozen=True, order=True)
class At:
    """Where an event is: its block, position in the block, transaction, and the block's timestamp."""

    block: int
    log_index: int
    tx_hash: bytes = field(compare=False)
    timestamp: int = field(compare=False)

    @cached_property
    def tx(self) -> str:
        return "0x" + self.tx_hash.hex()


@dataclass(frozen=True)
class VersionAnchored:
    record_id: bytes
    patient: str
    author: str
    version: int
    category: bytes
    cid: bytes
    commitment: bytes
    previous_hash: bytes
    version_hash: bytes
    at: At

    def domain(self) -> RecordVersion:
        return RecordVersion(
            record_id=self.record_id,
            version=self.version,
            patient=self.patient,
            author=self.author,
            category=self.category,
            cid=self.cid,
            commitment=self.commitment,
            previous_hash=self.previous_hash,
            version_hash=self.version_hash,
            block_number=self.at.block,
            tx_hash=self.at.tx_hash,
        )


@dataclass(frozen=True)
class RecordErasure:
    record_id: bytes
    patient: str
    erased_by: str
    version: int
    at: At


@dataclass(frozen=True)
class ConsentEvent:
    kind: Literal["granted", "revoked"]
    consent_id: bytes
    patient: str
    signer: str
    at: At
    grantee: str | None = None  # the rest only for grants
    scope: bytes = ZERO32
    purpose: bytes = ZERO32
    valid_from: int = 0
    valid_until: int = 0


@dataclass(frozen=True)
class DelegationEvent:
    kind: Literal["granted", "revoked"]
    patient: str
    delegate: str
    valid_until: int
    at: At


@dataclass(frozen=True)
class RoleEvent:
    """A role grant/revocation (AccessControl) or a provider's onboarding/suspension/reinstatement."""

    kind: Literal["granted", "revoked", "onboarded", "suspended", "reinstated"]
    account: str
    at: At
    role: bytes = ZERO32
    by: str = ""
    name: str = ""


@dataclass(frozen=True)
class CategoryEvent:
    category_id: bytes
    index: int
    code: str
    at: At


@dataclass(frozen=True)
class DisclosureEvent:
    """An ``AccessLogged`` (consented) or ``EmergencyAccessLogged`` (break-glass) event."""

    record_id: bytes
    patient: str
    accessor: str
    version: int
    emergency: bool
    at: At
    purpose: bytes = ZERO32  # AccessLogged only
    consent_id: bytes = ZERO32  # AccessLogged only
    reason_hash: bytes = ZERO32  # EmergencyAccessLogged only
    request_digest: bytes = ZERO32  # the EIP-712 digest of the accessor's signed request, as the contract logged it


@dataclass(frozen=True)
class EncryptionKeyEvent:
    """``EncryptionKeySet``: ``account`` published the X25519 key that key shares are sealed to."""

    account: str
    public_key: bytes
    at: At


@dataclass(frozen=True)
class BatchAnchor:
    root: bytes
    from_index: int
    to_index: int
    at: At


TrailEvent = (
    VersionAnchored
    | RecordErasure
    | ConsentEvent
    | DelegationEvent
    | RoleEvent
    | CategoryEvent
    | DisclosureEvent
    | BatchAnchor
    | EncryptionKeyEvent
)


@dataclass(frozen=True)
class Act:
    """What one transaction asked of the ledger, as its calldata says (docs/architecture.md, "Signed acts").

    ``sender`` is the transaction's ``from``: the ``msg.sender`` of a direct call. ``function`` is the ledger
    function the transaction calls, "" when it does not call the ledger itself (it goes through another
    contract) or its input is not a call of the ledger's ABI (``problem`` says which). For a by-signature
    function, ``message`` and ``signature`` are its arguments: the signed message (a domain dataclass) and the
    party's signature.
    """

    sender: str
    function: str
    message: SignedMessage | None = None
    signature: bytes = b""
    problem: str = ""


SignatureClaim = tuple[str, bytes, bytes]
"""``(party, digest, signature)``: a signature whose ERC-1271 verdict the trail may carry."""


@dataclass
class Trail:
    """Every ledger event in ``[from_block, to_block]``, in chain order, and the blocks' timestamps."""

    chain_id: int
    contract: str
    from_block: int
    to_block: int
    events: list[TrailEvent] = field(default_factory=list)
    block_timestamps: dict[int, int] = field(default_factory=dict)
    # Set when only this patient's events (and the global ones) were read: see patient_topic_filters.
    patient: str | None = None
    # Transaction hash -> the act of that transaction, for every event that names a party (see ATTRIBUTED_EVENTS);
    # None when the transactions were not read (then no signer is checked).
    acts: dict[bytes, Act] | None = None
    # ERC-1271 verdicts: (party, digest, signature) -> whether the party, a contract at the act's block, accepts
    # the signature (``isValidSignature`` by eth_call at that block). Only parties with code have entries.
    contract_signatures: dict[SignatureClaim, bool] = field(default_factory=dict)

    def of_type(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def versions(self) -> list[VersionAnchored]:
        return self.of_type(VersionAnchored)

    @property
    def erasures(self) -> list[RecordErasure]:
        return self.of_type(RecordErasure)

    @property
    def consents(self) -> list[ConsentEvent]:
        return self.of_type(ConsentEvent)

    @property
    def delegations(self) -> list[DelegationEvent]:
        return self.of_type(DelegationEvent)

    @property
    def roles(self) -> list[RoleEvent]:
        return self.of_type(RoleEvent)

    @property
    def categories(self) -> list[CategoryEvent]:
        return self.of_type(CategoryEvent)

    @property
    def disclosures(self) -> list[DisclosureEvent]:
        return self.of_type(DisclosureEvent)

    @property
    def batches(self) -> list[BatchAnchor]:
        return self.of_type(BatchAnchor)

    @property
    def encryption_keys(self) -> list[EncryptionKeyEvent]:
        return self.of_type(EncryptionKeyEvent)

    def records(self) -> dict[bytes, list[VersionAnchored]]:
        """Record id -> its anchored versions in chain order."""
        result: dict[bytes, list[VersionAnchored]] = {}
        for v in self.versions:
            result.setdefault(v.record_id, []).append(v)
        return result


# ----------------------------------------------------------------- decoding


def _version(a: dict[str, Any], at: At) -> TrailEvent:
    return VersionAnchored(
        record_id=bytes(a["recordId"]),
        patient=a["patient"],
        author=a["author"],
        version=int(a["version"]),
        category=bytes(a["category"]),
        cid=bytes(a["cid"]),
        commitment=bytes(a["commitment"]),
        previous_hash=bytes(a["previousHash"]),
        version_hash=bytes(a["versionHash"]),
        at=at,
    )


def _erasure(a: dict[str, Any], at: At) -> TrailEvent:
    return RecordErasure(bytes(a["recordId"]), a["patient"], a["erasedBy"], int(a["version"]), at)


def _granted(a: dict[str, Any], at: At) -> TrailEvent:
    return ConsentEvent(
        "granted",
        bytes(a["consentId"]),
        a["patient"],
        a["signer"],
        at,
        grantee=a["grantee"],
        scope=bytes(a["scope"]),
        purpose=bytes(a["purpose"]),
        valid_from=int(a["validFrom"]),
        valid_until=int(a["validUntil"]),
    )


def _revoked(a: dict[str, Any], at: At) -> TrailEvent:
    return ConsentEvent("revoked", bytes(a["consentId"]), a["patient"], a["signer"], at)


def _delegate_granted(a: dict[str, Any], at: At) -> TrailEvent:
    return DelegationEvent("granted", a["patient"], a["delegate"], int(a["validUntil"]), at)


def _delegate_revoked(a: dict[str, Any], at: At) -> TrailEvent:
    return DelegationEvent("revoked", a["patient"], a["delegate"], 0, at)


def _role_granted(a: dict[str, Any], at: At) -> TrailEvent:
    return RoleEvent("granted", a["account"], at, role=bytes(a["role"]), by=a["sender"])


def _role_revoked(a: dict[str, Any], at: At) -> TrailEvent:
    return RoleEvent("revoked", a["account"], at, role=bytes(a["role"]), by=a["sender"])


def _onboarded(a: dict[str, Any], at: At) -> TrailEvent:
    return RoleEvent("onboarded", a["provider"], at, name=str(a["name"]))


def _suspended(a: dict[str, Any], at: At) -> TrailEvent:
    return RoleEvent("suspended", a["provider"], at, by=a["by"])


def _reinstated(a: dict[str, Any], at: At) -> TrailEvent:
    return RoleEvent("reinstated", a["provider"], at, by=a["by"])


def _category(a: dict[str, Any], at: At) -> TrailEvent:
    return CategoryEvent(bytes(a["categoryId"]), int(a["index"]), str(a["code"]), at)


def _access(a: dict[str, Any], at: At) -> TrailEvent:
    return DisclosureEvent(
        bytes(a["recordId"]),
        a["patient"],
        a["accessor"],
        int(a["version"]),
        False,
        at,
        purpose=bytes(a["purpose"]),
        consent_id=bytes(a["consentId"]),
        request_digest=bytes(a["requestDigest"]),
    )


def _emergency(a: dict[str, Any], at: At) -> TrailEvent:
    return DisclosureEvent(
        bytes(a["recordId"]),
        a["patient"],
        a["accessor"],
        int(a["version"]),
        True,
        at,
        reason_hash=bytes(a["reasonHash"]),
        request_digest=bytes(a["requestDigest"]),
    )


def _encryption_key(a: dict[str, Any], at: At) -> TrailEvent:
    return EncryptionKeyEvent(a["account"], bytes(a["publicKey"]), at)


def _batch(a: dict[str, Any], at: At) -> TrailEvent:
    return BatchAnchor(bytes(a["root"]), int(a["fromIndex"]), int(a["toIndex"]), at)


_BUILDERS: Final[dict[str, Callable[[dict[str, Any], At], TrailEvent]]] = {
    "RecordAnchored": _version,
    "RecordErased": _erasure,
    "ConsentGranted": _granted,
    "ConsentRevoked": _revoked,
    "DelegateGranted": _delegate_granted,
    "DelegateRevoked": _delegate_revoked,
    "RoleGranted": _role_granted,
    "RoleRevoked": _role_revoked,
    "ProviderOnboarded": _onboarded,
    "ProviderSuspended": _suspended,
    "ProviderReinstated": _reinstated,
    "CategoryRegistered": _category,
    "AccessLogged": _access,
    "EmergencyAccessLogged": _emergency,
    "DisclosureBatchAnchored": _batch,
    "EncryptionKeySet": _encryption_key,
}

TRAIL_EVENTS: Final = tuple(_BUILDERS)
"""The names of the ledger events a trail holds (the others are not read)."""

ATTRIBUTED_EVENTS: Final = (
    "ConsentGranted",
    "ConsentRevoked",
    "DelegateGranted",
    "DelegateRevoked",
    "RecordAnchored",
    "RecordErased",
    "AccessLogged",
    "EmergencyAccessLogged",
    "EncryptionKeySet",
)
"""The events that name the party who acted: the verifier checks each one's transaction (its :class:`Act`)."""


def event_from_decoded(event: DecodedEvent, timestamp: int) -> TrailEvent | None:
    """The trail event for one decoded ledger log, or None for events the audit does not use."""
    builder = _BUILDERS.get(event.name)
    if builder is None:
        return None
    return builder(event.args, At(event.block_number, event.log_index, event.tx_hash, timestamp))


_LOG_ORDER: Final = attrgetter("block_number", "log_index")


def build_trail(
    chain_id: int,
    contract: str,
    from_block: int,
    to_block: int,
    decoded: Iterable[DecodedEvent],
    block_timestamps: dict[int, int],
) -> Trail:
    """A :class:`Trail` from decoded events (any order) and the timestamps of their blocks."""
    events: list[TrailEvent] = []
    for event in sorted(decoded, key=_LOG_ORDER):
        timestamp = block_timestamps.get(event.block_number)
        if timestamp is None:
            raise AuditError(f"no timestamp for block {event.block_number} of event {event.name}")
        item = event_from_decoded(event, timestamp)
        if item is not None:
            events.append(item)
    return Trail(chain_id, checksum_address(contract), from_block, to_block, events, dict(block_timestamps))


# ----------------------------------------------------------------- the acts behind the events

_MESSAGE_CLASSES: Final[dict[str, type]] = {cls.__name__: cls for cls in get_args(SignedMessage)}


def _attribute(eip712_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", eip712_name).lower()  # validFrom -> valid_from


class _Malformed(Exception):
    """The input is not a well-formed call (an offset or length out of range, dirty padding)."""


def _word(data: bytes, position: int) -> bytes:
    if position < 0 or position + 32 > len(data):
        raise _Malformed(f"no 32-byte word at {position} of {len(data)} bytes")
    return data[position : position + 32]


def _bytes_at(data: bytes, position: int) -> bytes:
    length = int.from_bytes(_word(data, position), "big")
    if position + 32 + length > len(data):
        raise _Malformed(f"{length} bytes announced at {position}, the input ends before")
    return data[position + 32 : position + 32 + length]


class CallDecoder:
    """Decodes a ledger transaction into its :class:`Act` by slicing its input's ABI words (pure).

    A by-signature function takes ``(struct, bytes signature)``, its struct the EIP-712 type's fields in order
    (``by_sig`` maps each type to its function, as ``ledger_service.chain.ledger.BY_SIG_FUNCTION``). Offsets
    are followed wherever they point and padding is not read, as Solidity's decoder does; an address or a
    narrow integer with dirty high bits, which Solidity refuses, makes the input malformed.
    """

    def __init__(self, codec: ContractCodec, by_sig: Mapping[str, str]) -> None:
        self._names = {fn.selector: fn.name for fn in codec.functions.values()}
        self._signed: dict[bytes, tuple[str, type, tuple[tuple[str, str], ...], bool]] = {}
        for primary, name in by_sig.items():
            fn = codec.functions.get(name)
            if fn is None:
                continue
            members = EIP712_TYPES[primary]
            struct = "(" + ",".join(m["type"] for m in members) + ")"
            if fn.input_types != (struct, "bytes"):
                raise ValueError(f"{name} takes {fn.input_types}; the EIP-712 type {primary} needs ({struct}, bytes)")
            cls = _MESSAGE_CLASSES[primary]
            layout = tuple((_attribute(m["name"]), m["type"]) for m in members)
            if {attribute for attribute, _ in layout} != {f.name for f in fields(cls)}:
                raise ValueError(f"{cls.__name__}'s fields are not the EIP-712 type {primary}'s")
            self._signed[fn.selector] = (name, cls, layout, any(kind == "bytes" for _, kind in layout))

    def act(self, sender: str, to: str | None, contract: str, data: bytes) -> Act:
        """The act of a transaction from ``sender`` to ``to`` with input ``data``, for the ledger at ``contract``."""
        sender = checksum_address(sender)
        if to is None or checksum_address(to) != checksum_address(contract):
            return Act(sender, "", problem=f"the transaction calls {to or 'no account (a creation)'}, not the ledger")
        name = self._names.get(data[:4])
        if name is None:
            return Act(sender, "", problem=f"its input (selector 0x{data[:4].hex()}) calls no function of the ledger")
        signed = self._signed.get(data[:4])
        if signed is None:
            return Act(sender, name)
        name, cls, layout, dynamic = signed
        try:
            message, signature = self._decode(cls, layout, dynamic, data[4:])
        except _Malformed as exc:
            return Act(sender, "", problem=f"its input is not a well-formed call of {name}: {exc}")
        return Act(sender, name, message, signature)

    @staticmethod
    def _decode(
        cls: type, layout: tuple[tuple[str, str], ...], dynamic: bool, payload: bytes
    ) -> tuple[SignedMessage, bytes]:
        # A struct with a ``bytes`` member is encoded out of line (its head is an offset); else in place.
        start = int.from_bytes(_word(payload, 0), "big") if dynamic else 0
        signature_head = 32 if dynamic else 32 * len(layout)
        values: dict[str, Any] = {}
        for index, (attribute, kind) in enumerate(layout):
            word = _word(payload, start + 32 * index)
            if kind == "bytes":
                values[attribute] = _bytes_at(payload, start + int.from_bytes(word, "big"))
            elif kind == "bytes32":
                values[attribute] = word
            elif kind == "address":
                if any(word[:12]):
                    raise _Malformed(f"{attribute} is not an address (dirty high bytes)")
                values[attribute] = checksum_address(word[12:])
            else:  # uintN, the only other type the messages use
                value = int.from_bytes(word, "big")
                if value >> int(kind[4:]):
                    raise _Malformed(f"{attribute} does not fit a {kind}")
                values[attribute] = value
        signature = _bytes_at(payload, int.from_bytes(_word(payload, signature_head), "big"))
        message: SignedMessage = cls(**values)
        return message, signature
