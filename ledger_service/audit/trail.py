"""The ledger's whole history as plain data: the events the verifier judges, in chain order.

A :class:`Trail` is built from decoded logs and their blocks' timestamps by :func:`build_trail`; reading
them from a node is :func:`ledger_service.audit.fetch.fetch_trail`'s job. Nothing here does I/O or judges
anything: :mod:`ledger_service.audit.verifier` does, as pure functions over a :class:`Trail`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any, Final, Literal, TypeVar

from ledger_service.codec.abi import DecodedEvent
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import ZERO32
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
)


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
    )


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
}

TRAIL_EVENTS: Final = tuple(_BUILDERS)
"""The names of the ledger events a trail holds (the others are not read)."""


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
