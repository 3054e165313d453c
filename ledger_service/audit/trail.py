"""The ledger's whole history, read from the chain alone, as plain data.

``fetch_trail`` needs only a JSON-RPC URL (an auditor's own node), the ledger's address and the
block to start from (its deployment block, or 0). It reads every event of the contract with batched
``eth_getLogs`` over block ranges, the timestamps of the blocks they are in with batched
``eth_getBlockByNumber``, and decodes them into the frozen data classes below. Nothing here
judges anything: :mod:`ledger_service.audit.verifier` does, as pure functions over a :class:`Trail`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any, Final, Literal, TypeVar

from eth_utils import to_checksum_address

from ledger_service.audit.gcpause import paused_gc
from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.codec.abi import ContractCodec, DecodedEvent
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import hex_to_bytes, parse_log
from ledger_service.domain.codes import ZERO32
from ledger_service.domain.records import RecordVersion
from ledger_service.errors import AuditError, ChainError

LOG_RANGE: Final = 5_000  # blocks per eth_getLogs request
RPC_BATCH: Final = 50  # requests per JSON-RPC batch

T = TypeVar("T")

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``, called as work advances."""


def _no_progress(_phase: str, _done: int, _total: int) -> None:
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
class Disclosure:
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
    | Disclosure
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
    def disclosures(self) -> list[Disclosure]:
        return self.of_type(Disclosure)

    @property
    def batches(self) -> list[BatchAnchor]:
        return self.of_type(BatchAnchor)

    def records(self) -> dict[bytes, list[VersionAnchored]]:
        """Record id -> its anchored versions in chain order."""
        result: dict[bytes, list[VersionAnchored]] = {}
        for v in self.versions:
            result.setdefault(v.record_id, []).append(v)
        return result

    def role_history(self, account: str) -> list[RoleEvent]:
        account = to_checksum_address(account)
        return [e for e in self.roles if e.account == account]


# ----------------------------------------------------------------- decoding (pure)


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
    return Disclosure(
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
    return Disclosure(
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
    return Trail(chain_id, to_checksum_address(contract), from_block, to_block, events, dict(block_timestamps))


# ----------------------------------------------------------------- reading the chain (I/O)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_logs(
    rpc: RpcClient,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    log_range: int = LOG_RANGE,
    progress: Progress = _no_progress,
) -> list[dict[str, Any]]:
    """Every log of ``contract`` in ``[from_block, to_block]``, by batched ranged ``eth_getLogs``."""
    return [
        parse_log(raw)
        for raw in fetch_raw_logs(rpc, contract, from_block, to_block, log_range=log_range, progress=progress)
    ]


def fetch_raw_logs(
    rpc: RpcClient,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    log_range: int = LOG_RANGE,
    progress: Progress = _no_progress,
    topic_filters: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """:func:`fetch_logs` as the node returns them (hex strings), removed logs left out; with
    ``topic_filters``, the logs matching any of them (one ``eth_getLogs`` per filter and range)."""
    ranges = [(start, min(start + log_range - 1, to_block)) for start in range(from_block, to_block + 1, log_range)]
    filters: list[list[Any] | None] = [list(t) for t in topic_filters] if topic_filters else [None]
    queries = [
        {"address": contract, "fromBlock": hex(lo), "toBlock": hex(hi), **({"topics": t} if t else {})}
        for lo, hi in ranges
        for t in filters
    ]
    logs: list[dict[str, Any]] = []
    done = 0
    for group in _chunks(queries, RPC_BATCH):
        for result in rpc.batch([("eth_getLogs", [query]) for query in group]):
            logs.extend(raw for raw in result or [] if not raw.get("removed"))
        done += len(group)
        progress("reading events", done, len(queries))
    return logs


def patient_topic_filters(patient: str, codec: ContractCodec | None = None) -> list[list[Any]]:
    """``eth_getLogs`` topic filters that select one patient's events and every global one.

    Every event about a patient's records, consents and disclosures indexes the patient (second
    topic, or first for delegations); the rest (roles, providers, categories, batch anchors) is the
    same for every patient and small. Together they are all a patient-scoped verification needs.
    """
    return [*_own_topic_filters(patient, codec or ledger_codec()), _shared_topic_filter(codec or ledger_codec())]


def _own_topic_filters(patient: str, codec: ContractCodec) -> list[list[Any]]:
    padded = "0x" + bytes(12).hex() + to_checksum_address(patient)[2:].lower()
    second = [_topic_hex(codec, name) for name in _PATIENT_SECOND_TOPIC]
    first = [_topic_hex(codec, name) for name in _PATIENT_FIRST_TOPIC]
    return [[second, None, padded], [first, padded]]


def _shared_topic_filter(codec: ContractCodec) -> list[Any]:
    per_patient = (*_PATIENT_SECOND_TOPIC, *_PATIENT_FIRST_TOPIC)
    return [[_topic_hex(codec, name) for name in _BUILDERS if name not in per_patient]]


_PATIENT_SECOND_TOPIC: Final = (
    "RecordAnchored",
    "RecordErased",
    "ConsentGranted",
    "ConsentRevoked",
    "AccessLogged",
    "EmergencyAccessLogged",
)
_PATIENT_FIRST_TOPIC: Final = ("DelegateGranted", "DelegateRevoked")


def _topic_hex(codec: ContractCodec, name: str) -> str:
    return "0x" + codec.topic(name).hex()


@dataclass
class _PatientLogs:
    from_block: int
    to_block: int
    to_block_hash: str
    logs: list[dict[str, Any]]


class PatientLogCache:
    """The raw logs of recently audited patients, so that auditing a patient again reads only the
    blocks added since (a node without log indexes, such as anvil, scans every block of the range).

    The global events (roles, providers, categories, batch anchors) are kept once, not per patient.
    An entry is trusted only while the block it ends at keeps its hash: every block links to its
    parent's hash, so an unchanged last block means no block up to it changed. Otherwise the entry
    is read again from the start. Bounded: the least recently audited patients are forgotten.
    """

    def __init__(self, max_patients: int = 1024) -> None:
        self._entries: OrderedDict[tuple[str, str], _PatientLogs] = OrderedDict()
        self._max = max_patients
        self._lock = threading.Lock()

    def logs(
        self,
        rpc: RpcClient,
        contract: str,
        patient: str,
        from_block: int,
        to_block: int,
        codec: ContractCodec,
        progress: Progress = _no_progress,
    ) -> list[dict[str, Any]]:
        """The patient's own logs and the global ones in ``[from_block, to_block]``, in no set order."""
        end = str(rpc.get_block(to_block)["hash"])
        own, shared = _own_topic_filters(patient, codec), [_shared_topic_filter(codec)]
        logs = self._read((contract, patient), rpc, from_block, to_block, end, own, progress)
        return logs + self._read((contract, ""), rpc, from_block, to_block, end, shared, progress)

    def _read(
        self,
        key: tuple[str, str],
        rpc: RpcClient,
        from_block: int,
        to_block: int,
        to_block_hash: str,
        filters: Sequence[Sequence[Any]],
        progress: Progress,
    ) -> list[dict[str, Any]]:
        with self._lock:
            entry = self._entries.get(key)
        start, known = from_block, []
        if entry is not None and entry.from_block == from_block and entry.to_block <= to_block:
            if entry.to_block == to_block:
                unchanged = entry.to_block_hash == to_block_hash
            else:
                try:
                    unchanged = rpc.get_block(entry.to_block).get("hash") == entry.to_block_hash
                except ChainError:  # the block is gone (a reorganization to a shorter chain)
                    unchanged = False
            if unchanged:
                start, known = entry.to_block + 1, entry.logs
        new = (
            fetch_raw_logs(rpc, key[0], start, to_block, progress=progress, topic_filters=filters)
            if start <= to_block
            else []
        )
        logs = known + new
        with self._lock:
            self._entries[key] = _PatientLogs(from_block, to_block, to_block_hash, logs)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max + 1:  # the patients, and the shared entry
                oldest = next(k for k in self._entries if k[1])
                del self._entries[oldest]
        return logs


def fetch_block_headers(
    rpc: RpcClient, blocks: Iterable[int], *, progress: Progress = _no_progress
) -> dict[int, tuple[int, bytes]]:
    """``block -> (timestamp, hash)`` by batched ``eth_getBlockByNumber``."""
    wanted = sorted(set(blocks))
    headers: dict[int, tuple[int, bytes]] = {}
    for group in _chunks(wanted, RPC_BATCH * 2):
        results = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in group])
        for number, block in zip(group, results, strict=True):
            if block is None:
                raise AuditError(f"the node does not have block {number}")
            headers[number] = (int(block["timestamp"], 16), hex_to_bytes(block["hash"]))
        progress("reading block times", len(headers), len(wanted))
    return headers


def fetch_trail(
    rpc: RpcClient,
    contract: str,
    *,
    from_block: int = 0,
    to_block: int | None = None,
    codec: ContractCodec | None = None,
    extra_blocks: Iterable[int] = (),
    progress: Progress = _no_progress,
    patient: str | None = None,
    cache: PatientLogCache | None = None,
) -> Trail:
    """Read the ledger's events in ``[from_block, to_block]`` (default: up to the head) into a :class:`Trail`.

    ``extra_blocks`` are blocks whose timestamps are wanted besides the events' own (e.g. the blocks
    that batched disclosure-log entries name). With ``patient``, only that patient's events and the
    global ones are read (the node filters them), so the cost follows the patient's history, not the
    chain's; a ``cache`` keeps them between calls, so a repeated audit reads only the new blocks.
    Raises :class:`AuditError` if a block's hash changed while reading (a reorganization):
    rerun once the chain is final.
    """
    with paused_gc():
        return _fetch_trail(
            rpc,
            contract,
            from_block=from_block,
            to_block=to_block,
            codec=codec or ledger_codec(),
            extra_blocks=extra_blocks,
            progress=progress,
            patient=to_checksum_address(patient) if patient else None,
            cache=cache,
        )


def _fetch_trail(
    rpc: RpcClient,
    contract: str,
    *,
    from_block: int,
    to_block: int | None,
    codec: ContractCodec,
    extra_blocks: Iterable[int],
    progress: Progress,
    patient: str | None,
    cache: PatientLogCache | None,
) -> Trail:
    contract = to_checksum_address(contract)
    chain_id = rpc.chain_id()
    head = rpc.block_number()
    to_block = head if to_block is None else min(to_block, head)
    if from_block > to_block:
        raise AuditError(f"from block {from_block} is after the last block {to_block}")
    if patient is None:
        raw_logs = fetch_raw_logs(rpc, contract, from_block, to_block, progress=progress)
    elif cache is not None:
        raw_logs = cache.logs(rpc, contract, patient, from_block, to_block, codec, progress)
    else:
        filters = patient_topic_filters(patient, codec)
        raw_logs = fetch_raw_logs(rpc, contract, from_block, to_block, progress=progress, topic_filters=filters)
    # By slicing the ABI layouts (the same results as codec.decode_log over parse_log: see fastlog).
    decode = FastLogDecoder(codec, parse_log).decode_raw
    decoded = [event for event in map(decode, raw_logs) if event is not None]
    headers = fetch_block_headers(
        rpc, [e.block_number for e in decoded] + [b for b in extra_blocks if b <= to_block], progress=progress
    )
    for event in decoded:
        _timestamp, block_hash = headers[event.block_number]
        if block_hash != event.block_hash:
            raise AuditError(
                f"block {event.block_number} changed while reading (hash 0x{event.block_hash.hex()} in the log, "
                f"0x{block_hash.hex()} now): the chain reorganized; verify again once it is final"
            )
    trail = build_trail(chain_id, contract, from_block, to_block, decoded, {n: t for n, (t, _h) in headers.items()})
    trail.patient = patient
    return trail
