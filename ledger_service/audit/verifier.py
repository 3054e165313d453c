"""The auditor's verification: pure functions over a :class:`~ledger_service.audit.trail.Trail`.

Inputs are plain data: the trail (every ledger event, read from the chain alone), a blob reader
(any :class:`~ledger_service.blobs.BlobStore`: its ``open`` re-hashes every block), and optionally
what the operator claims: its delivery log, which record versions still have wrapped keys, which
records it erased (:class:`OperatorRecords`), and its batched disclosure log (:class:`OperatorLog`).
Nothing is taken on the operator's or the contract's word: every authorization is re-derived by
replaying the events in chain order (consents, revocations, delegations, roles, suspensions,
records) and asking the domain rule (:func:`ledger_service.domain.consent.decide`) at each
disclosure's block time.

Nor is any act taken on the contract's word that its party made it (docs/architecture.md, "Signed acts"):
every event that names a party is matched with its transaction's act. For a by-signature call the EIP-712
digest of the signed message is recomputed, the ECDSA signer recovered (by the contract's rules) and
required to be the party the event names (a contract party may accept it under ERC-1271 instead: the
trail carries that verdict), and the event required to state what the message says; for a direct call the
transaction's sender must be the party. Every batched disclosure-log entry's signed request is checked the
same way.

Each problem becomes a :class:`Violation` with a stable ``code`` (see :data:`VIOLATION_CODES`) and a
message that says what was expected and what was found, naming the record, block, transaction and
entry (delivery row id or disclosure-log leaf index) it concerns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Final, Protocol

from eth_utils import keccak, to_checksum_address

from ledger_service.audit.trail import (
    Act,
    At,
    BatchAnchor,
    CategoryEvent,
    ConsentEvent,
    DelegationEvent,
    DisclosureEvent,
    EncryptionKeyEvent,
    Progress,
    RecordErasure,
    RoleEvent,
    SignatureClaim,
    Trail,
    TrailEvent,
    VersionAnchored,
    no_progress,
)
from ledger_service.blobs.cid import Cid
from ledger_service.codec import eip712
from ledger_service.domain.codes import (
    EMERGENCY_PURPOSE,
    EMERGENCY_ROLE,
    GRANTABLE_PURPOSES,
    PROVIDER_ROLE,
    ZERO32,
    purpose_from_bytes32,
)
from ledger_service.domain.consent import (
    AccessQuery,
    AccessRequest,
    ConsentGrant,
    ConsentRevoke,
    ConsentState,
    DelegateGrant,
    DelegateRevoke,
    Delegation,
    Eip712Domain,
    EmergencyAccessRequest,
    EncryptionKey,
    RecordAmend,
    RecordAnchor,
    RecordErase,
    SignedMessage,
    decide,
    fast_consent_id,
    is_patient_request,
)
from ledger_service.domain.records import chain_breaks, record_id_of
from ledger_service.errors import (
    AuditError,
    BlobError,
    BlobIntegrityError,
    BlobNotFound,
    BlobStoreUnavailable,
    InvalidCid,
)
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import EMPTY_ROOT, MerkleLog, ProofError, verify_consistency
from ledger_service.transparency.signatures import ecdsa_signer

VIOLATION_CODES: Final[dict[str, str]] = {
    "blob-missing": "A record version's ciphertext (or one block of it) is not in the blob store.",
    "blob-corrupt": "A stored block's bytes do not hash to its CID: the blob was altered after it was anchored.",
    "blob-unreadable": "The blob's DAG could not be decoded as the UnixFS file the anchored CID names.",
    "cid-invalid": "The anchored CID is not a CIDv1 the blob store can address.",
    "version-chain-broken": "A record's versions do not form the hash chain the contract computes.",
    "version-author-not-provider": "A version was anchored by an account that was not an active provider then.",
    "version-author-changed": "A version was anchored by another author than the record's, or for another patient.",
    "version-after-erasure": "A version was anchored after the record's erasure event.",
    "version-unknown-category": "A version names a category that was never registered.",
    "erasure-unknown-record": "An erasure event names a record that was never anchored.",
    "erasure-version-mismatch": "An erasure event names another head version than the record had.",
    "erasure-event-missing": "The operator marks a record erased but the chain has no RecordErased event for it.",
    "erased-key-remains": "A commitment salt of an erased record is still in the operator's database.",
    "version-without-event": (
        "The operator's database has an anchored record version that no RecordAnchored event on chain records "
        "(e.g. a reorganization deeper than the confirmation depth removed an acknowledged anchor)."
    ),
    "version-mismatch": "An anchored record version in the operator's database names another CID or version hash "
    "than its RecordAnchored event on chain.",
    "version-unknown-to-operator": "A RecordAnchored event on chain has no row in the operator's database.",
    "consent-id-mismatch": "A ConsentGranted consentId is not keccak(abi.encode(patient, grantee, scope, purpose)).",
    "consent-signer-unauthorized": "A consent was granted or revoked by neither the patient nor a live delegate.",
    "consent-purpose-not-grantable": "A consent names a purpose that cannot be granted (ETREAT or unknown).",
    "revocation-unknown-consent": "A revocation names a consent that was never granted (or of another patient).",
    "disclosure-not-authorized": (
        "No consent active at the disclosure's block covered its record, grantee and purpose, and it was not the "
        "patient's own PATRQT request."
    ),
    "disclosure-consent-mismatch": (
        "A disclosure names another consent than the one the event history says applies (consent 0 for the "
        "patient's own PATRQT request, which needs none)."
    ),
    "disclosure-unknown-record": "A disclosure names a record that did not exist at its block.",
    "disclosure-erased-record": "A disclosure of a record that was already erased.",
    "disclosure-version-mismatch": "A disclosure names a version the record did not have at its block (1 to the head).",
    "disclosure-emergency-purpose": "A consented disclosure used ETREAT, which only break-glass access may use.",
    "emergency-not-authorized": "A break-glass access by an account without EMERGENCY_ROLE or an active PROVIDER_ROLE.",
    "emergency-empty-reason": "A break-glass access without a reason hash.",
    "delivery-without-event": "The operator's delivery log has a release that no disclosure event on chain records.",
    "event-without-delivery": "A disclosure event on chain has no row in the operator's delivery log.",
    "delivery-mismatch": "A delivery-log row's fields differ from its disclosure event (the row was edited).",
    "delivery-duplicate": "Several delivery-log rows claim one disclosure event.",
    "delivery-reason-mismatch": "An emergency delivery's reason text does not hash to the reasonHash on chain.",
    "batch-rollback": "A disclosure-log root was anchored at a smaller size than an earlier one (rolled back).",
    "batch-gap": "A disclosure batch does not start where the previous one ended.",
    "batch-root-mismatch": "The operator's disclosure-log entries do not hash to the anchored root (a fork).",
    "batch-log-truncated": "The operator's disclosure log has fewer entries than an anchored root covers.",
    "batch-consistency-invalid": "The operator's consistency proof between two anchored roots does not verify.",
    "batch-entry-invalid": "A disclosure-log entry is not a canonically encoded disclosure of this ledger.",
    "batch-entry-block-unknown": "A disclosure-log entry names a block the trail has no time for.",
    "batch-entry-time-mismatch": "A disclosure-log entry's timestamp is not the timestamp of the block it names.",
    "act-not-signed-by-party": (
        "An act is not the party's: its signature recovers to another account than the one its event (or batched "
        "entry) names, or to none, and no contract party accepts it under ERC-1271; or a direct call was sent by "
        "another account."
    ),
    "act-unattributable": (
        "An event's transaction does not call the ledger function that emits it (it goes through another "
        "contract, or its input is not such a call), so who acted cannot be established."
    ),
    "act-message-mismatch": "An event states another act than the signed message its transaction carries.",
    "access-digest-mismatch": (
        "A disclosure event's requestDigest is not the EIP-712 digest of the signed request its transaction carries."
    ),
    "erasure-signer-unauthorized": "A record was erased by neither its patient nor a delegate live at that time.",
    "delegate-overrode-revocation": (
        "A delegate granted again a consent the patient had revoked themselves (only the patient may)."
    ),
    "disclosure-request-reused": "One signed access request was logged as more than one disclosure.",
    "disclosure-request-expired": "A batched disclosure was released after its signed request's deadline.",
}


class BlobReader(Protocol):
    """What the verifier needs of a blob store: a verified streaming read."""

    def open(self, cid: Cid) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class Scope:
    """What to verify: one patient, one record, and/or events from a block on (None/0 = everything)."""

    patient: str | None = None
    record_id: bytes | None = None
    from_block: int = 0

    def __post_init__(self) -> None:
        if self.patient is not None:
            object.__setattr__(self, "patient", to_checksum_address(self.patient))

    def covers_patient(self, patient: str) -> bool:
        return self.patient is None or patient == self.patient

    def covers(self, patient: str, record_id: bytes | None, block: int) -> bool:
        return (
            self.covers_patient(patient)
            and (self.record_id is None or record_id == self.record_id)
            and block >= self.from_block
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "recordId": None if self.record_id is None else "0x" + self.record_id.hex(),
            "fromBlock": self.from_block,
        }


@dataclass(frozen=True)
class Delivery:
    """One row of the operator's delivery log (``DeliveryRow``), as plain data."""

    id: int
    record_id: str
    version: int
    patient: str
    accessor: str
    purpose: str
    consent_id: str | None
    emergency: bool
    reason: str | None
    tx_hash: str
    block_number: int
    log_index: int
    status: str = "logged"
    leaf_index: int | None = None  # batched mode: the row's disclosure-log entry instead of an event
    request_digest: str | None = None  # 0x-hex EIP-712 digest of the accessor's signed request


@dataclass(frozen=True)
class OperatorVersion:
    """One row of the operator's record versions (``RecordVersionRow``), as plain data."""

    record_id: str  # 0x-hex
    version: int
    cid: str  # the CID's text form, as the operator stores it
    version_hash: str  # 0x-hex ("" while pending)
    tx_hash: str | None
    block_number: int | None
    state: str  # pending | anchored
    patient: str | None = None  # from the operator's record row, when it has one


@dataclass(frozen=True)
class OperatorRecords:
    """What the operator's database claims (only available when verifying beside the operator)."""

    deliveries: Sequence[Delivery]
    keys_present: Collection[tuple[str, int]]  # (record id 0x-hex, version) that still have a wrapped key
    erased: Collection[str] = ()  # record ids (0x-hex) the operator marks erased
    # The operator's record versions; None when not read (their checks against the chain are then skipped).
    versions: Sequence[OperatorVersion] | None = None
    # The providers whose node keeps this database: every disclosure to them and every version they anchored
    # must have its row here. Another provider's node keeps its own (it relays its signed acts through the hub),
    # so its acts on chain are not expected here. None: every account's (a database that holds everything).
    accounts: Collection[str] | None = None


@dataclass(frozen=True)
class OperatorLog:
    """The operator's batched disclosure log: its entries and the consistency proofs it serves."""

    entries: Sequence[bytes]
    consistency_proof: Callable[[int, int], Sequence[bytes]]

    @classmethod
    def of(cls, log: MerkleLog) -> OperatorLog:
        return cls([log.entry(i) for i in range(log.size)], log.consistency_proof)


@dataclass(frozen=True)
class Violation:
    code: str
    message: str
    record_id: str | None = None
    block: int | None = None
    tx: str | None = None
    entry: str | None = None  # "delivery #12", "leaf 7", "batch 3"
    patient: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "recordId": self.record_id,
            "block": self.block,
            "tx": self.tx,
            "entry": self.entry,
            "patient": self.patient,
        }


@dataclass(frozen=True)
class EmergencyFlag:
    """A break-glass access: reported for review whether or not it was authorized."""

    record_id: str
    patient: str
    accessor: str
    version: int
    block: int
    timestamp: int
    tx: str | None
    reason_hash: str
    reason: str | None
    authorized: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "recordId": self.record_id,
            "patient": self.patient,
            "accessor": self.accessor,
            "version": self.version,
            "block": self.block,
            "timestamp": self.timestamp,
            "tx": self.tx,
            "reasonHash": self.reason_hash,
            "reason": self.reason,
            "authorized": self.authorized,
        }


@dataclass(frozen=True)
class TimelinePoint:
    """One disclosure for the per-patient timeline."""

    patient: str
    record_id: str
    accessor: str
    purpose: str
    block: int
    timestamp: int
    emergency: bool
    ok: bool
    source: str  # "event" or "batch"

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "recordId": self.record_id,
            "accessor": self.accessor,
            "purpose": self.purpose,
            "block": self.block,
            "timestamp": self.timestamp,
            "emergency": self.emergency,
            "ok": self.ok,
            "source": self.source,
        }


@dataclass
class Report:
    chain_id: int
    contract: str
    from_block: int
    to_block: int
    scope: Scope
    started_at: str
    duration: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    emergencies: list[EmergencyFlag] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violations_by_code(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for v in self.violations:
            result[v.code] = result.get(v.code, 0) + 1
        return dict(sorted(result.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chainId": self.chain_id,
            "contract": self.contract,
            "fromBlock": self.from_block,
            "toBlock": self.to_block,
            "scope": self.scope.to_json(),
            "startedAt": self.started_at,
            "durationSeconds": round(self.duration, 3),
            "summary": {**self.counts, "violations": len(self.violations)},
            "violationsByCode": self.violations_by_code(),
            "checks": list(self.checks),
            "notes": list(self.notes),
            "violations": [v.to_json() for v in self.violations],
            "emergencies": [e.to_json() for e in self.emergencies],
            "timeline": [p.to_json() for p in self.timeline],
        }


_CHAIN_ORDER: Final = attrgetter("at.block", "at.log_index")
_EMERGENCY32: Final = EMERGENCY_PURPOSE.encode("ascii").ljust(32, b"\x00")


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value)


_PAD12: Final = b"\x00" * 12


def _record_id_of(patient: str, author: str, salt: bytes) -> bytes:
    """:func:`~ledger_service.domain.records.record_id_of` over the plain 96-byte layout (same results)."""
    if len(patient) == len(author) == 42 and len(salt) == 32:
        try:
            return bytes(keccak(_PAD12 + bytes.fromhex(patient[2:]) + _PAD12 + bytes.fromhex(author[2:]) + salt))
        except ValueError:
            pass
    return record_id_of(patient, author, salt)


def _window(state: ConsentState) -> str:
    until = "no expiry" if state.valid_until == 0 else _when(state.valid_until)
    revoked = ", revoked" if state.revoked else ""
    return f"[{_when(state.valid_from)}, {until}){revoked}"


# ----------------------------------------------------------------- replay of the ledger's state


@dataclass
class _Record:
    patient: str
    author: str
    category: bytes
    head_version: int
    head_hash: bytes
    erased_at: int | None = None  # block of the erasure


@dataclass(slots=True)
class _Access:
    """A disclosure to judge: an on-chain event or a batched log entry."""

    record_id: bytes
    patient: str
    accessor: str
    version: int
    purpose: bytes
    consent_id: bytes
    emergency: bool
    reason_hash: bytes
    block: int
    timestamp: int
    tx: str | None
    entry: str | None
    source: str
    digest: bytes = ZERO32  # of the signed request (the event's requestDigest, or the entry's, recomputed)
    signed: bool = True  # False when the request is not proven to be the accessor's (reported already)


# (field, what the signed message says, what the event says) for each field an act's event restates.
_Restated = list[tuple[str, object, object]]


class _Replay:
    """The ledger's state, rebuilt event by event, and the checks made against it."""

    def __init__(
        self,
        scope: Scope,
        violations: list[Violation],
        *,
        domain: Eip712Domain,
        acts: dict[bytes, Act] | None = None,
        contract_signatures: dict[SignatureClaim, bool] | None = None,
    ) -> None:
        self.scope = scope
        self.out = violations
        self.domain = domain
        self.acts = acts  # None: the transactions were not read, no signer is checked
        self.contract_signatures = contract_signatures or {}
        self.digests: dict[bytes, str] = {}  # request digest -> the disclosure that logged it first
        self.revoked_by_patient: set[bytes] = set()  # consents whose last revocation was the patient's own
        self.consents: dict[bytes, ConsentState] = {}
        self.roles: set[tuple[bytes, str]] = set()
        self.suspended: set[str] = set()
        self.delegations: dict[tuple[str, str], Delegation] = {}
        self.records: dict[bytes, _Record] = {}
        self.categories: dict[bytes, str] = {}
        self.providers: set[str] = set()
        self.emergencies: list[EmergencyFlag] = []
        self.timeline: list[TimelinePoint] = []
        self.counts: dict[str, int] = {
            "consentGrants": 0,
            "consentRevocations": 0,
            "disclosures": 0,
            "emergencyAccesses": 0,
            "batchedDisclosures": 0,
            "erasures": 0,
            "actsChecked": 0,
        }
        self.patients: set[str] = set()
        # Memoized pure functions (a long history repeats the same records, accounts and purposes).
        self._ids: dict[tuple[str, str, bytes, bytes], bytes] = {}
        self._hexes: dict[bytes, str] = {}
        self._purposes: dict[bytes, str] = {}
        self._apply: dict[type, Callable[[Any], None]] = {
            VersionAnchored: self.on_version,
            RecordErasure: self.on_erasure,
            ConsentEvent: self.on_consent,
            DelegationEvent: self.on_delegation,
            RoleEvent: self.on_role,
            CategoryEvent: self.on_category,
            DisclosureEvent: self.on_disclosure,
            BatchAnchor: self.on_batch,
            EncryptionKeyEvent: self.on_encryption_key,
        }

    # ------------------------------------------------------------- helpers

    def consent_id(self, patient: str, grantee: str, scope: bytes, purpose: bytes) -> bytes:
        """:func:`~ledger_service.domain.consent.consent_id`, hand-rolled and memoized (same results)."""
        key = (patient, grantee, scope, purpose)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = fast_consent_id(patient, grantee, scope, purpose)
        return found

    def hex(self, raw: bytes) -> str:
        found = self._hexes.get(raw)
        if found is None:
            found = self._hexes[raw] = _hex(raw)
        return found

    def purpose(self, raw: bytes) -> str:
        found = self._purposes.get(raw)
        if found is None:
            found = self._purposes[raw] = purpose_from_bytes32(raw)
        return found

    def flag(self, code: str, message: str, **where: Any) -> None:
        self.out.append(Violation(code, message, **where))

    def active_provider(self, account: str) -> bool:
        return (PROVIDER_ROLE, account) in self.roles and account not in self.suspended

    def provider_problem(self, account: str) -> str:
        if (PROVIDER_ROLE, account) not in self.roles:
            return f"{account} did not hold PROVIDER_ROLE"
        return f"{account} was suspended"

    def live_delegate(self, patient: str, delegate: str, timestamp: int) -> bool:
        d = self.delegations.get((patient, delegate))
        return d is not None and d.live_at(timestamp)

    # ------------------------------------------------------------- who acted

    def attributed(
        self,
        at: At,
        label: str,
        where: dict[str, Any],
        *,
        actor: str,
        party: str,
        direct: tuple[str, ...],
        by_sig: dict[str, Callable[[SignedMessage], _Restated | None]],
    ) -> tuple[bool, bytes | None]:
        """Whether the event at ``at`` is ``actor``'s act, as its transaction shows; flags it if not.

        ``direct``: the functions ``actor`` may have called itself (it must then be the transaction's sender).
        ``by_sig``: the by-signature functions that emit the event, each with what the event restates of the
        message (None for a message of another type). The signature must be ``actor``'s by ECDSA, or, when
        ``actor`` is ``party`` (the account the contract asks under ERC-1271), accepted by ``party``'s
        ``isValidSignature``. Returns (attributed, the signed message's digest for a by-signature call).
        Without acts (the transactions were not read) every event counts as attributed.
        """
        if self.acts is None:
            return True, None
        self.counts["actsChecked"] += 1
        act = self.acts.get(at.tx_hash)
        if act is None or not act.function:
            why = "the trail has no act for its transaction" if act is None else act.problem
            expected = " or ".join((*direct, *by_sig))
            self.flag("act-unattributable", f"{label}: expected a call of {expected} by {actor}; {why}", **where)
            return False, None
        if act.function in direct:
            if act.sender != actor:
                self.flag(
                    "act-not-signed-by-party",
                    f"{label}: expected {act.function} sent by {actor}; got a transaction from {act.sender}",
                    **where,
                )
                return False, None
            return True, None
        restated = by_sig.get(act.function)
        pairs = restated(act.message) if restated is not None and act.message is not None else None
        if pairs is None:
            expected = " or ".join((*direct, *by_sig))
            self.flag("act-unattributable", f"{label}: expected a call of {expected}; got {act.function}", **where)
            return False, None
        diffs = [f"{name}: message {_shown(m)}, event {_shown(e)}" for name, m, e in pairs if m != e]
        if diffs:
            self.flag(
                "act-message-mismatch",
                f"{label}: expected the event to state the {type(act.message).__name__} signed in its transaction; "
                + "; ".join(diffs),
                **where,
            )
            return False, None
        assert act.message is not None
        digest = eip712.digest(self.domain, act.message)
        return self.signed_by(digest, act.signature, actor, party, label, where), digest

    def signed_by(
        self, digest: bytes, signature: bytes, actor: str, party: str, label: str, where: dict[str, Any]
    ) -> bool:
        """Whether ``signature`` over ``digest`` is ``actor``'s (or, for ``actor`` = ``party``, the contract
        ``party`` accepts it); flags ``act-not-signed-by-party`` if not."""
        recovered = ecdsa_signer(digest, signature)
        if recovered == actor:
            return True
        verdict = self.contract_signatures.get((party, digest, signature)) if actor == party else None
        if verdict:
            return True
        got = f"a signature by {recovered}" if recovered else "no valid ECDSA signature"
        if verdict is False:
            got += f", and the contract {party} refuses it under ERC-1271"
        self.flag(
            "act-not-signed-by-party",
            f"{label}: expected a signature by {actor} over digest 0x{digest.hex()}; got {got}",
            **where,
        )
        return False

    def request_once(self, digest: bytes, what: str, label: str, where: dict[str, Any]) -> bool:
        """A signed request authorizes one disclosure: flags a digest logged before."""
        first = self.digests.get(digest)
        if first is None:
            self.digests[digest] = what
            return True
        self.flag(
            "disclosure-request-reused",
            f"{label}: expected its signed request (digest 0x{digest.hex()}) to be logged once; "
            f"{first} logged it first",
            **where,
        )
        return False

    # ------------------------------------------------------------- events

    def apply(self, event: TrailEvent) -> None:
        handler = self._apply.get(type(event))
        if handler is None:  # a subclass of an event type
            for kind, method in self._apply.items():
                if isinstance(event, kind):
                    handler = method
                    break
            else:
                return
        handler(event)

    def on_delegation(self, event: DelegationEvent) -> None:
        key = (event.patient, event.delegate)
        attributed = True
        if self.scope.covers_patient(event.patient) and event.at.block >= self.scope.from_block:
            where: dict[str, Any] = {"block": event.at.block, "tx": event.at.tx, "patient": event.patient}
            label = f"delegation of {event.patient} to {event.delegate} {event.kind} at block {event.at.block}"
            if event.kind == "granted":

                def granted(m: SignedMessage) -> _Restated | None:
                    if not isinstance(m, DelegateGrant):
                        return None
                    return [
                        ("patient", m.patient, event.patient),
                        ("delegate", m.delegate, event.delegate),
                        ("validUntil", m.valid_until, event.valid_until),
                    ]

                attributed, _ = self.attributed(
                    event.at,
                    label,
                    where,
                    actor=event.patient,
                    party=event.patient,
                    direct=("grantDelegate",),
                    by_sig={"grantDelegateBySig": granted},
                )
            else:

                def revoked(m: SignedMessage) -> _Restated | None:
                    if not isinstance(m, DelegateRevoke):
                        return None
                    return [("patient", m.patient, event.patient), ("delegate", m.delegate, event.delegate)]

                self.attributed(
                    event.at,
                    label,
                    where,
                    actor=event.patient,
                    party=event.patient,
                    direct=("revokeDelegate",),
                    by_sig={"revokeDelegateBySig": revoked},
                )
        if event.kind == "granted" and attributed:
            self.delegations[key] = Delegation(event.patient, event.delegate, event.valid_until)
        else:  # a revocation, or a grant the patient did not make: the delegate holds no power
            self.delegations.pop(key, None)

    def on_encryption_key(self, event: EncryptionKeyEvent) -> None:
        if not (self.scope.covers_patient(event.account) and event.at.block >= self.scope.from_block):
            return
        self.counts["encryptionKeys"] = self.counts.get("encryptionKeys", 0) + 1

        def restated(m: SignedMessage) -> _Restated | None:
            if not isinstance(m, EncryptionKey):
                return None
            return [("account", m.account, event.account), ("publicKey", m.public_key, event.public_key)]

        self.attributed(
            event.at,
            f"encryption key of {event.account} set at block {event.at.block}",
            {"block": event.at.block, "tx": event.at.tx},
            actor=event.account,
            party=event.account,
            direct=("setEncryptionKey",),
            by_sig={"setEncryptionKeyBySig": restated},
        )

    def on_category(self, event: CategoryEvent) -> None:
        self.categories[event.category_id] = event.code

    def on_batch(self, event: BatchAnchor) -> None:
        return  # judged as a sequence in _check_batches

    def on_role(self, event: RoleEvent) -> None:
        if event.kind == "granted":
            self.roles.add((event.role, event.account))
            if event.role == PROVIDER_ROLE:
                self.providers.add(event.account)
        elif event.kind == "revoked":
            self.roles.discard((event.role, event.account))
        elif event.kind == "suspended":
            self.suspended.add(event.account)
        elif event.kind == "reinstated":
            self.suspended.discard(event.account)

    def on_version(self, v: VersionAnchored) -> None:
        in_scope = self.scope.covers(v.patient, v.record_id, v.at.block)
        where: dict[str, Any] = {
            "record_id": _hex(v.record_id),
            "block": v.at.block,
            "tx": v.at.tx,
            "patient": v.patient,
        }
        record = self.records.get(v.record_id)
        if in_scope:

            def anchored(m: SignedMessage) -> _Restated | None:
                if not isinstance(m, RecordAnchor):
                    return None
                return [
                    ("patient", m.patient, v.patient),
                    ("author", m.author, v.author),
                    ("recordId", _record_id_of(m.patient, m.author, m.salt), v.record_id),
                    ("version", 1, v.version),
                    ("category", m.category, v.category),
                    ("cid", m.cid, v.cid),
                    ("commitment", m.commitment, v.commitment),
                    ("previousHash", ZERO32, v.previous_hash),
                ]

            def amended(m: SignedMessage) -> _Restated | None:
                if not isinstance(m, RecordAmend):
                    return None
                return [
                    ("patient", m.patient, v.patient),
                    ("author", m.author, v.author),
                    ("recordId", m.record_id, v.record_id),
                    ("cid", m.cid, v.cid),
                    ("commitment", m.commitment, v.commitment),
                    ("previousHash", m.previous_hash, v.previous_hash),
                ]

            self.attributed(
                v.at,
                f"version {v.version} of record {_hex(v.record_id)} anchored by {v.author} at block {v.at.block}",
                where,
                actor=v.author,
                party=v.author,
                direct=("anchorRecord", "amendRecord"),
                by_sig={"anchorRecordBySig": anchored, "amendRecordBySig": amended},
            )
            if not self.active_provider(v.author):
                self.flag(
                    "version-author-not-provider",
                    f"version {v.version} of record {_hex(v.record_id)}: expected its author to be an active provider "
                    f"at block {v.at.block}; got: {self.provider_problem(v.author)}",
                    **where,
                )
            if v.category not in self.categories:
                self.flag(
                    "version-unknown-category",
                    f"version {v.version} of record {_hex(v.record_id)}: expected a registered category, "
                    f"got {_hex(v.category)}",
                    **where,
                )
            if record is not None and record.erased_at is not None:
                self.flag(
                    "version-after-erasure",
                    f"version {v.version} of record {_hex(v.record_id)} anchored at block {v.at.block}: expected no "
                    f"version after the record's erasure at block {record.erased_at}",
                    **where,
                )
            if record is not None and (record.author != v.author or record.patient != v.patient):
                self.flag(
                    "version-author-changed",
                    f"version {v.version} of record {_hex(v.record_id)}: expected author {record.author} for patient "
                    f"{record.patient}; got author {v.author} for patient {v.patient}",
                    **where,
                )
        if record is None:
            self.records[v.record_id] = _Record(v.patient, v.author, v.category, v.version, v.version_hash)
        else:
            record.head_version, record.head_hash = v.version, v.version_hash

    def on_erasure(self, e: RecordErasure) -> None:
        record = self.records.get(e.record_id)
        where: dict[str, Any] = {
            "record_id": _hex(e.record_id),
            "block": e.at.block,
            "tx": e.at.tx,
            "patient": e.patient,
        }
        in_scope = self.scope.covers(e.patient, e.record_id, e.at.block)
        if in_scope:
            self.counts["erasures"] += 1
            label = f"erasure of record {_hex(e.record_id)} by {e.erased_by} at block {e.at.block}"

            def restated(m: SignedMessage) -> _Restated | None:
                if not isinstance(m, RecordErase):
                    return None
                return [("patient", m.patient, e.patient), ("recordId", m.record_id, e.record_id)]

            self.attributed(
                e.at,
                label,
                where,
                actor=e.erased_by,
                party=e.patient,
                direct=("eraseRecord",),
                by_sig={"eraseRecordBySig": restated},
            )
            if e.erased_by != e.patient and not self.live_delegate(e.patient, e.erased_by, e.at.timestamp):
                self.flag(
                    "erasure-signer-unauthorized",
                    f"{label}: expected the patient {e.patient} or a delegate live at {_when(e.at.timestamp)} to "
                    f"erase it; got {e.erased_by}, "
                    + (
                        "whose delegation was not live then"
                        if (e.patient, e.erased_by) in self.delegations
                        else "no delegate"
                    ),
                    **where,
                )
        if record is None:
            if in_scope:
                self.flag(
                    "erasure-unknown-record",
                    f"RecordErased for {_hex(e.record_id)} at block {e.at.block}: expected an anchored record; "
                    "got none before it",
                    **where,
                )
            return
        if in_scope and e.version != record.head_version:
            self.flag(
                "erasure-version-mismatch",
                f"RecordErased for {_hex(e.record_id)}: expected head version {record.head_version}, got {e.version}",
                **where,
            )
        record.erased_at = e.at.block

    def on_consent(self, c: ConsentEvent) -> None:
        in_scope = self.scope.covers_patient(c.patient) and c.at.block >= self.scope.from_block
        where: dict[str, Any] = {"block": c.at.block, "tx": c.at.tx, "patient": c.patient}
        signer_ok = c.signer == c.patient or self.live_delegate(c.patient, c.signer, c.at.timestamp)
        attributed = True
        if in_scope:
            self.patients.add(c.patient)
            label = f"consent 0x{c.consent_id.hex()} {c.kind} by {c.signer} at block {c.at.block}"
            if c.kind == "granted":

                def granted(m: SignedMessage) -> _Restated | None:
                    if not isinstance(m, ConsentGrant):
                        return None
                    return [
                        ("patient", m.patient, c.patient),
                        ("grantee", m.grantee, c.grantee),
                        ("scope", m.scope, c.scope),
                        ("purpose", m.purpose, c.purpose),
                        ("validFrom", m.valid_from, c.valid_from),
                        ("validUntil", m.valid_until, c.valid_until),
                    ]

                attributed, _ = self.attributed(
                    c.at,
                    label,
                    where,
                    actor=c.signer,
                    party=c.patient,
                    direct=("grantConsent",),
                    by_sig={"grantConsentBySig": granted},
                )
            else:

                def revoked(m: SignedMessage) -> _Restated | None:
                    if not isinstance(m, ConsentRevoke):
                        return None
                    return [("patient", m.patient, c.patient), ("consentId", m.consent_id, c.consent_id)]

                self.attributed(
                    c.at,
                    label,
                    where,
                    actor=c.signer,
                    party=c.patient,
                    direct=("revokeConsent",),
                    by_sig={"revokeConsentBySig": revoked},
                )
            if not signer_ok:
                self.flag(
                    "consent-signer-unauthorized",
                    f"consent 0x{c.consent_id.hex()} {c.kind} at block {c.at.block}: expected the patient {c.patient} "
                    f"or a live delegate to sign; got {c.signer}",
                    **where,
                )
        if c.kind == "revoked":
            if in_scope:
                self.counts["consentRevocations"] += 1
            state = self.consents.get(c.consent_id)
            if state is None or state.patient != c.patient:
                if in_scope:
                    self.flag(
                        "revocation-unknown-consent",
                        f"ConsentRevoked 0x{c.consent_id.hex()} at block {c.at.block}: expected a consent granted "
                        f"earlier by {c.patient}; got "
                        + ("none" if state is None else f"a consent of {state.patient}"),
                        **where,
                    )
                return
            self.consents[c.consent_id] = ConsentState(
                state.consent_id,
                state.patient,
                state.grantee,
                state.scope,
                state.purpose,
                state.valid_from,
                state.valid_until,
                revoked=True,
            )
            if c.signer == c.patient:
                self.revoked_by_patient.add(c.consent_id)
            return
        assert c.grantee is not None
        if in_scope:
            self.counts["consentGrants"] += 1
            expected_id = self.consent_id(c.patient, c.grantee, c.scope, c.purpose)
            if expected_id != c.consent_id:
                self.flag(
                    "consent-id-mismatch",
                    f"ConsentGranted at block {c.at.block}: expected consentId 0x{expected_id.hex()}, "
                    f"got 0x{c.consent_id.hex()}",
                    **where,
                )
            purpose = purpose_from_bytes32(c.purpose)
            if purpose not in GRANTABLE_PURPOSES or c.purpose != purpose.encode("ascii").ljust(32, b"\x00"):
                self.flag(
                    "consent-purpose-not-grantable",
                    f"consent 0x{c.consent_id.hex()}: expected one of {', '.join(GRANTABLE_PURPOSES)}, got {purpose!r}",
                    **where,
                )
        # A consent only counts if it was validly signed: the auditor re-derives, it does not trust.
        if not (signer_ok and attributed):
            return
        if c.signer != c.patient and c.consent_id in self.revoked_by_patient:
            if in_scope:
                self.flag(
                    "delegate-overrode-revocation",
                    f"consent 0x{c.consent_id.hex()} granted at block {c.at.block}: expected only the patient "
                    f"{c.patient} to grant again a consent they revoked themselves; got the delegate {c.signer}",
                    **where,
                )
            return
        self.revoked_by_patient.discard(c.consent_id)
        self.consents[c.consent_id] = ConsentState(
            c.consent_id, c.patient, c.grantee, c.scope, c.purpose, c.valid_from, c.valid_until
        )

    def on_disclosure(self, d: DisclosureEvent) -> None:
        a = _Access(
            d.record_id,
            d.patient,
            d.accessor,
            d.version,
            d.purpose if not d.emergency else _EMERGENCY32,
            d.consent_id,
            d.emergency,
            d.reason_hash,
            d.at.block,
            d.at.timestamp,
            d.at.tx,
            None,
            "event",
            d.request_digest,
        )
        if not self.covers(a):
            return
        label, where = self._label(a), self._where(a)

        def restated(m: SignedMessage) -> _Restated | None:
            if d.emergency and isinstance(m, EmergencyAccessRequest):
                last: tuple[str, object, object] = ("reasonHash", m.reason_hash, d.reason_hash)
            elif not d.emergency and isinstance(m, AccessRequest):
                last = ("purpose", m.purpose, d.purpose)
            else:
                return None
            return [
                ("patient", m.patient, d.patient),
                ("accessor", m.accessor, d.accessor),
                ("recordId", m.record_id, d.record_id),
                ("version", m.version, d.version),
                last,
            ]

        function = "logEmergencyAccessBySig" if d.emergency else "logAccessBySig"
        signed, digest = self.attributed(
            d.at, label, where, actor=d.accessor, party=d.accessor, direct=(), by_sig={function: restated}
        )
        if digest is not None and digest != d.request_digest:
            self.flag(
                "access-digest-mismatch",
                f"{label}: expected requestDigest 0x{digest.hex()}, the digest of the request signed in its "
                f"transaction; the event says 0x{d.request_digest.hex()}",
                **where,
            )
            signed = False
        if d.request_digest != ZERO32 and not self.request_once(d.request_digest, f"tx {d.at.tx}", label, where):
            signed = False
        a.signed = signed
        self.judge(a)

    def judge_entry(self, index: int, entry: DisclosureEntry, timestamp: int) -> None:
        """A batched disclosure: its signed request is checked as an on-chain one is, then it is judged."""
        digest = entry.digest()
        a = _Access(
            entry.record_id,
            entry.patient,
            entry.accessor,
            entry.version,
            entry.purpose,
            entry.consent_id,
            entry.emergency,
            entry.reason_hash,
            entry.block_number,
            timestamp,
            None,
            f"leaf {index}",
            "batch",
            digest,
        )
        if not self.covers(a):
            return
        label, where = self._label(a), self._where(a)
        signed = self.signed_by(digest, entry.signature, entry.accessor, entry.accessor, label, where)
        if timestamp > entry.deadline:
            self.flag(
                "disclosure-request-expired",
                f"{label}: expected a release by the request's deadline {_when(entry.deadline)}; block "
                f"{entry.block_number} is at {_when(timestamp)}",
                **where,
            )
            signed = False
        if entry.timestamp != timestamp:
            self.flag(
                "batch-entry-time-mismatch",
                f"{label}: expected the entry's timestamp to be block {entry.block_number}'s, {timestamp}; "
                f"the entry says {entry.timestamp}",
                **where,
            )
            signed = False
        signed = self.request_once(digest, f"disclosure-log leaf {index}", label, where) and signed
        a.signed = signed
        self.judge(a)

    # ------------------------------------------------------------- the disclosure rule

    def covers(self, a: _Access) -> bool:
        scope = self.scope
        return (
            (scope.patient is None or a.patient == scope.patient)
            and (scope.record_id is None or a.record_id == scope.record_id)
            and a.block >= scope.from_block
        )

    def judge(self, a: _Access) -> None:
        if not self.covers(a):
            return
        self.patients.add(a.patient)
        self.counts["batchedDisclosures" if a.source == "batch" else "disclosures"] += 1
        if a.emergency:
            self.counts["emergencyAccesses"] += 1
        ok = True
        record = self.records.get(a.record_id)
        if record is None or record.patient != a.patient:
            self.flag(
                "disclosure-unknown-record",
                f"{self._label(a)}: expected a record of patient {a.patient} anchored before; got "
                + ("no such record" if record is None else f"a record of {record.patient}"),
                **self._where(a),
            )
            ok = False
        elif record.erased_at is not None:
            self.flag(
                "disclosure-erased-record",
                f"{self._label(a)}: expected a live record; got one erased at block {record.erased_at}",
                **self._where(a),
            )
            ok = False
        elif not 1 <= a.version <= record.head_version:
            self.flag(
                "disclosure-version-mismatch",
                f"{self._label(a)}: expected a version from 1 to the head version {record.head_version}, "
                f"got version {a.version}",
                **self._where(a),
            )
            ok = False
        if a.emergency:
            ok = self._judge_emergency(a, self._label(a), self._where(a)) and ok
        else:
            ok = self._judge_consented(a, record) and ok
        ok = ok and a.signed
        self.timeline.append(
            TimelinePoint(
                a.patient,
                self.hex(a.record_id),
                a.accessor,
                self.purpose(a.purpose),
                a.block,
                a.timestamp,
                a.emergency,
                ok,
                a.source,
            )
        )

    def _where(self, a: _Access) -> dict[str, Any]:
        return {
            "record_id": self.hex(a.record_id),
            "block": a.block,
            "tx": a.tx,
            "entry": a.entry,
            "patient": a.patient,
        }

    def _label(self, a: _Access) -> str:
        what = "break-glass access" if a.emergency else f"{self.purpose(a.purpose)} disclosure"
        return f"{what} of record {self.hex(a.record_id)} to {a.accessor} at block {a.block}"

    def _judge_emergency(self, a: _Access, label: str, where: dict[str, Any]) -> bool:
        ok = True
        problems = []
        if (EMERGENCY_ROLE, a.accessor) not in self.roles:
            problems.append("no EMERGENCY_ROLE")
        if not self.active_provider(a.accessor):
            problems.append(self.provider_problem(a.accessor).replace(f"{a.accessor} ", ""))
        if problems:
            self.flag(
                "emergency-not-authorized",
                f"{label}: expected the accessor to hold EMERGENCY_ROLE and an unsuspended PROVIDER_ROLE; "
                f"got: {'; '.join(problems)}",
                **where,
            )
            ok = False
        if a.reason_hash == ZERO32:
            self.flag("emergency-empty-reason", f"{label}: expected a reason hash, got zero", **where)
            ok = False
        self.emergencies.append(
            EmergencyFlag(
                _hex(a.record_id),
                a.patient,
                a.accessor,
                a.version,
                a.block,
                a.timestamp,
                a.tx,
                _hex(a.reason_hash),
                None,
                ok,
            )
        )
        return ok

    def _judge_consented(self, a: _Access, record: _Record | None) -> bool:
        purpose = self.purpose(a.purpose)
        if purpose == EMERGENCY_PURPOSE:
            self.flag(
                "disclosure-emergency-purpose",
                f"{self._label(a)}: expected a grantable purpose; got ETREAT outside break-glass access",
                **self._where(a),
            )
            return False
        category = record.category if record is not None else ZERO32
        decision = decide(
            AccessQuery(a.patient, a.accessor, a.record_id, category, a.purpose),
            self.consents,
            timestamp=a.timestamp,
            grantee_is_active_provider=self.active_provider(a.accessor),
            id_of=self.consent_id,
        )
        if not decision.allowed:
            label, where = self._label(a), self._where(a)
            candidates = []
            for name, scope in (("the record", a.record_id), ("its category", category), ("all records", ZERO32)):
                state = self.consents.get(self.consent_id(a.patient, a.accessor, scope, a.purpose))
                if state is not None:
                    candidates.append(f"consent 0x{state.consent_id.hex()[:12]}… for {name} valid {_window(state)}")
            known = "; ".join(candidates) if candidates else "no consent of the patient to this grantee and purpose"
            self.flag(
                "disclosure-not-authorized",
                f"{label}: expected a consent of {a.patient} to {a.accessor} for {purpose} covering the record, "
                f"active at {_when(a.timestamp)} (block {a.block}), with the grantee an active provider; "
                f"got: {decision.reason} ({known})",
                **where,
            )
            return False
        # The patient's own PATRQT request is allowed without a consent (decision.consent_id None): logged as 0.
        expected = decision.consent_id or ZERO32
        if (a.source == "event" or a.consent_id != ZERO32) and a.consent_id != expected:
            why = (
                "the first active one by record, category, all records"
                if decision.consent_id is not None
                else "the patient's own PATRQT request needs none"
            )
            self.flag(
                "disclosure-consent-mismatch",
                f"{self._label(a)}: expected consent 0x{expected.hex()} ({why}), got 0x{a.consent_id.hex()}",
                **self._where(a),
            )
            return False
        return True


# ----------------------------------------------------------------- batches


def _entries(trail: Trail, log: OperatorLog, violations: list[Violation]) -> list[tuple[int, DisclosureEntry]]:
    """The operator log's decodable entries of this ledger, as (leaf index, entry)."""
    result = []
    for index, raw in enumerate(log.entries):
        where: dict[str, Any] = {"entry": f"leaf {index}"}
        try:
            entry = DisclosureEntry.decode(raw)
        except Exception as exc:
            violations.append(Violation("batch-entry-invalid", f"disclosure-log leaf {index}: {exc}", **where))
            continue
        if entry.chain_id != trail.chain_id or to_checksum_address(entry.ledger) != trail.contract:
            violations.append(
                Violation(
                    "batch-entry-invalid",
                    f"disclosure-log leaf {index}: expected chain {trail.chain_id} ledger {trail.contract}, "
                    f"got chain {entry.chain_id} ledger {entry.ledger}",
                    record_id=_hex(entry.record_id),
                    **where,
                )
            )
            continue
        result.append((index, entry))
    return result


def _check_batches(trail: Trail, log: OperatorLog | None, scope: Scope, violations: list[Violation]) -> None:
    """Anchored roots move forward only, each consistent with the last; the log's entries hash to them."""
    tree = MerkleLog.of(log.entries) if log is not None else None
    size, root = 0, EMPTY_ROOT
    for number, anchor in enumerate(trail.batches, start=1):
        where: dict[str, Any] = {"block": anchor.at.block, "tx": anchor.at.tx, "entry": f"batch {number}"}
        label = (
            f"disclosure batch {number} (root 0x{anchor.root.hex()}, size {anchor.to_index}, block {anchor.at.block})"
        )
        if anchor.to_index < size or (anchor.to_index == size and anchor.root != root):
            violations.append(
                Violation(
                    "batch-rollback",
                    f"{label}: expected a tree larger than the {size} entries already anchored (root 0x{root.hex()}); "
                    f"got size {anchor.to_index}: the log was rolled back",
                    **where,
                )
            )
            continue  # the trusted checkpoint stays where it was
        if anchor.from_index != size:
            violations.append(
                Violation(
                    "batch-gap",
                    f"{label}: expected the batch to start at index {size}, got {anchor.from_index}",
                    **where,
                )
            )
        if tree is not None and log is not None:
            if anchor.to_index > tree.size:
                violations.append(
                    Violation(
                        "batch-log-truncated",
                        f"{label}: expected the operator's log to hold at least {anchor.to_index} entries, "
                        f"got {tree.size}",
                        **where,
                    )
                )
            else:
                local = tree.root(anchor.to_index)
                if local != anchor.root:
                    violations.append(
                        Violation(
                            "batch-root-mismatch",
                            f"{label}: expected the anchored root; the operator's first {anchor.to_index} entries "
                            f"hash to 0x{local.hex()} (a forked or edited log)",
                            **where,
                        )
                    )
            if size > 0:
                try:
                    proof = list(log.consistency_proof(size, anchor.to_index))
                    verify_consistency(size, anchor.to_index, root, anchor.root, proof)
                except ProofError as exc:
                    violations.append(
                        Violation(
                            "batch-consistency-invalid",
                            f"{label}: expected a consistency proof from size {size} (root 0x{root.hex()}); {exc}",
                            **where,
                        )
                    )
                except Exception as exc:  # the operator's proof source failed: that is a finding, not a crash
                    violations.append(
                        Violation(
                            "batch-consistency-invalid",
                            f"{label}: expected a consistency proof from size {size}; the operator's log gave "
                            f"none ({type(exc).__name__}: {exc})",
                            **where,
                        )
                    )
        size, root = anchor.to_index, anchor.root
    del scope  # batches are global: any rollback or fork concerns every patient


# ----------------------------------------------------------------- delivery log


def _check_deliveries(
    disclosures: Sequence[DisclosureEvent],
    entries: dict[int, DisclosureEntry],
    deliveries: Sequence[Delivery],
    scope: Scope,
    violations: list[Violation],
    emergencies: list[EmergencyFlag],
    accounts: Collection[str] | None = None,
) -> int:
    """Rows and events must match one to one; returns the number of rows checked."""
    by_key = {(d.at.tx, d.at.log_index): d for d in disclosures}
    by_tx: dict[str, list[DisclosureEvent]] = {}
    for d in disclosures:
        by_tx.setdefault(d.at.tx, []).append(d)
    claimed: dict[tuple[str, int], list[Delivery]] = {}
    claimed_leaves: dict[int, list[Delivery]] = {}
    reasons: dict[tuple[str, int], str] = {}
    checked = 0
    hexes: dict[bytes, str] = {}
    purposes: dict[bytes, str] = {}
    for row in deliveries:
        row_record = _parse32(row.record_id)
        if not (
            (scope.patient is None or row.patient == scope.patient)
            and (scope.record_id is None or row_record == scope.record_id)
            and row.block_number >= scope.from_block
        ):
            continue
        checked += 1
        if row.leaf_index is not None:
            claimed_leaves.setdefault(row.leaf_index, []).append(row)
            entry = entries.get(row.leaf_index)
            if entry is None:
                violations.append(
                    Violation(
                        "delivery-without-event",
                        f"{_row_label(row)}: expected disclosure-log leaf {row.leaf_index}; the log has no such entry",
                        **_row_where(row),
                    )
                )
                continue
            _compare(row, _entry_fields(entry), entry.reason_hash, violations)
            continue
        tx = row.tx_hash.lower()
        key = (tx, row.log_index)
        event = by_key.get(key)
        if event is None:
            same_tx = by_tx.get(tx, [])
            if len(same_tx) == 1:
                event, key = same_tx[0], (same_tx[0].at.tx, same_tx[0].at.log_index)
            else:
                violations.append(
                    Violation(
                        "delivery-without-event",
                        f"{_row_label(row)}: expected an AccessLogged or EmergencyAccessLogged event at tx "
                        f"{row.tx_hash} log {row.log_index}; the chain has none",
                        **_row_where(row),
                    )
                )
                continue
        claimed.setdefault(key, []).append(row)
        record_hex = hexes.get(event.record_id)
        if record_hex is None:
            record_hex = hexes[event.record_id] = _hex(event.record_id)
        if event.emergency:
            purpose = EMERGENCY_PURPOSE
        else:
            purpose = purposes.get(event.purpose)  # type: ignore[assignment]
            if purpose is None:
                purpose = purposes[event.purpose] = purpose_from_bytes32(event.purpose)
        consent = None if event.emergency else _hex(event.consent_id)
        if (
            key[1] == row.log_index
            and row.record_id == record_hex
            and row.version == event.version
            and row.patient == event.patient
            and row.accessor == event.accessor
            and row.purpose == purpose
            and row.consent_id == consent
            and row.emergency == event.emergency
            and row.block_number == event.at.block
            and row.request_digest == _hex(event.request_digest)
            and not event.emergency
        ):
            continue  # every field equal as stored: nothing to report (the common case, checked cheaply)
        fields = _event_fields(event)
        if key[1] != row.log_index:
            fields["log_index"] = key[1]
        _compare(row, fields, event.reason_hash if event.emergency else None, violations)
        if event.emergency and row.reason:
            reasons[key] = row.reason
    for key, rows in sorted((k, rows) for k, rows in claimed.items() if len(rows) > 1):
        if len(rows) > 1:
            violations.append(
                Violation(
                    "delivery-duplicate",
                    f"disclosure at tx {key[0]} log {key[1]}: expected one delivery row, got "
                    + ", ".join(f"#{r.id}" for r in rows),
                    record_id=rows[0].record_id,
                    block=rows[0].block_number,
                    tx=key[0],
                    entry=", ".join(f"delivery #{r.id}" for r in rows),
                )
            )
    for leaf, rows in sorted((k, rows) for k, rows in claimed_leaves.items() if len(rows) > 1):
        if len(rows) > 1:
            violations.append(
                Violation(
                    "delivery-duplicate",
                    f"disclosure-log leaf {leaf}: expected one delivery row, got "
                    + ", ".join(f"#{r.id}" for r in rows),
                    record_id=rows[0].record_id,
                    entry=f"leaf {leaf}",
                )
            )
    for d in disclosures:
        key = (d.at.tx, d.at.log_index)
        if accounts is not None and d.accessor not in accounts:
            continue  # released by another provider's node, whose delivery log this is not
        if not d.emergency and is_patient_request(d.patient, d.accessor, d.purpose):
            continue  # the patient's own request, relayed for the patient: no node released it
        if scope.covers(d.patient, d.record_id, d.at.block) and key not in claimed:
            kind = "EmergencyAccessLogged" if d.emergency else "AccessLogged"
            violations.append(
                Violation(
                    "event-without-delivery",
                    f"{kind} of record {_hex(d.record_id)} v{d.version} to {d.accessor} at block {d.at.block} "
                    f"(tx {d.at.tx} log {d.at.log_index}): expected a delivery-log row; the operator has none",
                    record_id=_hex(d.record_id),
                    block=d.at.block,
                    tx=d.at.tx,
                    patient=d.patient,
                )
            )
    for leaf, entry in sorted(entries.items()):
        if scope.covers(entry.patient, entry.record_id, entry.block_number) and leaf not in claimed_leaves:
            violations.append(
                Violation(
                    "event-without-delivery",
                    f"disclosure-log leaf {leaf} (record {_hex(entry.record_id)} to {entry.accessor} at block "
                    f"{entry.block_number}): expected a delivery-log row; the operator has none",
                    record_id=_hex(entry.record_id),
                    block=entry.block_number,
                    entry=f"leaf {leaf}",
                    patient=entry.patient,
                )
            )
    reason_of_tx: dict[str, str] = {}
    for key, reason in reasons.items():
        reason_of_tx[key[0]] = reason  # the last row's reason for a transaction wins, as it always did
    for i, flag in enumerate(emergencies):
        if flag.tx is not None and flag.tx in reason_of_tx:
            emergencies[i] = EmergencyFlag(**{**flag.__dict__, "reason": reason_of_tx[flag.tx]})
    return checked


def _row_where(row: Delivery) -> dict[str, Any]:
    return {
        "record_id": row.record_id,
        "block": row.block_number,
        "tx": row.tx_hash,
        "entry": f"delivery #{row.id}",
    }


def _row_label(row: Delivery) -> str:
    return (
        f"delivery #{row.id} (record {row.record_id} v{row.version} to {row.accessor} for {row.purpose}, "
        f"block {row.block_number})"
    )


def _parse32(value: str) -> bytes | None:
    try:
        raw = bytes.fromhex(value[2:]) if value.startswith("0x") else b""
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _event_fields(d: DisclosureEvent) -> dict[str, object]:
    return {
        "record_id": _hex(d.record_id),
        "version": d.version,
        "patient": d.patient,
        "accessor": d.accessor,
        "purpose": EMERGENCY_PURPOSE if d.emergency else purpose_from_bytes32(d.purpose),
        "consent_id": None if d.emergency else _hex(d.consent_id),
        "emergency": d.emergency,
        "block_number": d.at.block,
        "request_digest": _hex(d.request_digest),
    }


def _entry_fields(e: DisclosureEntry) -> dict[str, object]:
    return {
        "record_id": _hex(e.record_id),
        "version": e.version,
        "patient": e.patient,
        "accessor": e.accessor,
        "purpose": purpose_from_bytes32(e.purpose),
        "consent_id": None if e.emergency else _hex(e.consent_id),
        "emergency": e.emergency,
        "block_number": e.block_number,
        "request_digest": _hex(e.digest()),
    }


def _normal(value: object) -> object:
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


def _compare(
    row: Delivery,
    expected: dict[str, object],
    reason_hash: bytes | None,
    violations: list[Violation],
) -> None:
    label, where = _row_label(row), _row_where(row)
    diffs = []
    for name, chain_value in expected.items():
        row_value = getattr(row, name)
        if _normal(row_value) != _normal(chain_value):
            diffs.append(f"{name}: chain says {chain_value!r}, row says {row_value!r}")
    if diffs:
        violations.append(
            Violation(
                "delivery-mismatch", f"{label}: expected the row to match its disclosure; " + "; ".join(diffs), **where
            )
        )
    if reason_hash is not None and expected.get("emergency"):
        got = keccak(row.reason.encode("utf-8")) if row.reason else None
        if got != reason_hash:
            violations.append(
                Violation(
                    "delivery-reason-mismatch",
                    f"{label}: expected keccak256(reason) = 0x{reason_hash.hex()} as on chain; got "
                    + ("no reason" if got is None else f"0x{got.hex()}"),
                    **where,
                )
            )


# ----------------------------------------------------------------- blobs


def _check_blobs(
    versions: Sequence[VersionAnchored],
    blobs: BlobReader,
    violations: list[Violation],
    progress: Progress,
) -> tuple[int, int]:
    """Stream every version's ciphertext through the verified read; returns (blobs, bytes) checked."""
    checked = total = 0
    for n, v in enumerate(versions, start=1):
        where: dict[str, Any] = {
            "record_id": _hex(v.record_id),
            "block": v.at.block,
            "tx": v.at.tx,
            "patient": v.patient,
        }
        label = f"version {v.version} of record {_hex(v.record_id)}"
        try:
            cid = Cid.parse(v.cid)
        except InvalidCid as exc:
            violations.append(
                Violation("cid-invalid", f"{label}: expected a CIDv1, got 0x{v.cid.hex()} ({exc})", **where)
            )
            continue
        size = 0
        try:
            for chunk in blobs.open(cid):
                size += len(chunk)
        except BlobStoreUnavailable:
            raise
        except BlobNotFound as exc:
            block = exc.details.get("cid", str(cid))
            part = "its root block" if block == str(cid) else f"its block {block}"
            violations.append(
                Violation(
                    "blob-missing",
                    f"{label}: expected blob {cid} in the store; {part} is missing",
                    entry=f"cid {cid}" + ("" if block == str(cid) else f" block {block}"),
                    **where,
                )
            )
            continue
        except BlobIntegrityError as exc:
            block = exc.details.get("cid", str(cid))
            violations.append(
                Violation(
                    "blob-corrupt",
                    f"{label}: expected every block of {cid} to hash to its CID; block {block} does not "
                    "(its bytes were altered)",
                    entry=f"cid {cid} block {block}",
                    **where,
                )
            )
            continue
        except BlobError as exc:
            violations.append(
                Violation(
                    "blob-unreadable", f"{label}: expected the UnixFS file {cid}; {exc}", entry=f"cid {cid}", **where
                )
            )
            continue
        checked += 1
        total += size
        progress("checking blobs", n, len(versions))
    return checked, total


# ----------------------------------------------------------------- the whole verification


def verify(
    trail: Trail,
    blobs: BlobReader | None,
    *,
    operator: OperatorRecords | None = None,
    log: OperatorLog | None = None,
    scope: Scope | None = None,
    progress: Progress = no_progress,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> Report:
    """Verify ``trail`` (and what the operator claims about it) within ``scope``; never raises for findings.

    Everything it judges is given: the trail and the operator's records already fetched, the blobs
    behind a reader. Time comes only from ``clock`` (the run's duration) and ``now`` (the report's
    start, seconds since the epoch). Raises only when verification cannot proceed (the blob store is
    unreachable). Callers replaying a long history pause the cyclic garbage collector around it
    (:func:`ledger_service.audit.gcpause.paused_gc`): this module leaves process state alone.
    """
    scope = scope or Scope()
    if trail.patient is not None and scope.patient != trail.patient:
        # The trail lacks everyone else's events: it can only vouch for its own patient.
        raise AuditError(f"a trail read for patient {trail.patient} verifies only that patient")
    started = clock()
    violations: list[Violation] = []
    report = Report(
        trail.chain_id,
        trail.contract,
        trail.from_block,
        trail.to_block,
        scope,
        _when(now()),
    )
    replay = _Replay(
        scope,
        violations,
        domain=Eip712Domain(trail.chain_id, trail.contract),
        acts=trail.acts,
        contract_signatures=trail.contract_signatures,
    )

    entries: list[tuple[int, DisclosureEntry]] = _entries(trail, log, violations) if log is not None else []
    # Batched entries are judged on the state at the end of the block they name.
    batched = [
        (index, entry)
        for index, entry in entries
        if entry.block_number <= trail.to_block
        and (trail.patient is None or to_checksum_address(entry.patient) == trail.patient)
    ]
    items: list[TrailEvent | tuple[int, DisclosureEntry]]
    if batched:
        timeline: list[tuple[int, int, int, TrailEvent | tuple[int, DisclosureEntry]]] = [
            (e.at.block, e.at.log_index, 0, e) for e in trail.events
        ]
        for index, entry in batched:
            timeline.append((entry.block_number, 2**62, index, (index, entry)))
        timeline.sort(key=lambda item: item[:3])
        items = [item for _block, _pos, _idx, item in timeline]
    else:  # the same stable order by (block, log index), without building a tuple per event
        items = sorted(trail.events, key=_CHAIN_ORDER)
    total = len(items)
    for n, item in enumerate(items, start=1):
        if isinstance(item, tuple):
            index, entry = item
            timestamp = trail.block_timestamps.get(entry.block_number)
            if timestamp is None:
                if scope.covers(entry.patient, entry.record_id, entry.block_number):
                    violations.append(
                        Violation(
                            "batch-entry-block-unknown",
                            f"disclosure-log leaf {index}: expected the time of block {entry.block_number}; "
                            "the trail has none (was it read with the log's blocks?)",
                            record_id=_hex(entry.record_id),
                            block=entry.block_number,
                            entry=f"leaf {index}",
                        )
                    )
                continue
            replay.judge_entry(index, entry, timestamp)
        else:
            replay.apply(item)
        if n % 500 == 0 or n == total:
            progress("replaying events", n, total)

    # Per-record hash chains, with the contract's hash recomputed by the domain code.
    records = trail.records()
    in_scope_records = {
        rid: versions
        for rid, versions in records.items()
        if scope.covers_patient(versions[0].patient) and (scope.record_id is None or rid == scope.record_id)
    }
    for rid, versions in in_scope_records.items():
        problems = chain_breaks([v.domain() for v in versions])
        if problems:
            last = versions[-1]
            for problem in problems:
                violations.append(
                    Violation(
                        "version-chain-broken",
                        f"record {_hex(rid)}: {problem}",
                        record_id=_hex(rid),
                        block=last.at.block,
                        tx=last.at.tx,
                        patient=last.patient,
                    )
                )
        replay.patients.add(versions[0].patient)

    # Blobs of every version in scope whose record is not erased (erasure collects them by design).
    erased = {e.record_id for e in trail.erasures}
    to_check = [
        v
        for rid, versions in in_scope_records.items()
        if rid not in erased
        for v in versions
        if v.at.block >= scope.from_block
    ]
    if blobs is not None:
        blobs_checked, bytes_checked = _check_blobs(to_check, blobs, violations, progress)
        report.checks.append("every block of every record version's ciphertext re-hashed against its anchored CID")
    else:
        blobs_checked = bytes_checked = 0
        report.notes.append("no blob store given: blob existence and integrity were not checked")

    _check_batches(trail, log, scope, violations)
    if trail.batches:
        report.checks.append(
            "anchored disclosure-log roots only move forward, each consistent with the previous one"
            + (" and equal to the root of the operator's log" if log is not None else "")
        )
    if log is None and trail.batches:
        report.notes.append("no operator disclosure log given: anchored roots were checked only for order")

    deliveries_checked = 0
    operator_versions_checked: int | None = None
    if operator is not None:
        deliveries_checked = _check_deliveries(
            [d for d in trail.disclosures],
            dict(entries),
            operator.deliveries,
            scope,
            violations,
            replay.emergencies,
            None if operator.accounts is None else set(operator.accounts),
        )
        _check_erasures(trail, records, operator, scope, violations)
        report.checks.append("operator delivery log matched against on-chain disclosures in both directions")
        if operator.accounts is not None:
            report.notes.append(
                "the operator's database is the node of "
                + (", ".join(sorted(operator.accounts)) or "no provider")
                + ": other providers' disclosures and record versions are kept by their own nodes and were not "
                "looked for in it"
            )
        report.checks.append("erased records: erasure event present, no wrapped key left in the operator DB")
        if operator.versions is not None:
            operator_versions_checked, beyond = _check_versions(
                trail,
                operator.versions,
                scope,
                violations,
                None if operator.accounts is None else set(operator.accounts),
            )
            report.checks.append(
                "operator's anchored record versions matched against RecordAnchored events (CID, version hash) "
                "in both directions"
            )
            if beyond:
                report.notes.append(
                    f"{beyond} anchored version(s) in the operator DB are after the trail's last block "
                    f"{trail.to_block} and were not checked against the chain"
                )
        else:
            report.notes.append("the operator's record versions were not given: not matched against the chain")
    else:
        report.notes.append(
            "no operator database: delivery-log matching and erased-key checks were skipped (auditor-only mode)"
        )

    report.checks[:0] = [
        "record versions: hash chain recomputed; author an active provider at its block; none after erasure",
        "disclosures: consent re-derived from grant/revoke/delegate/role/suspension events at the block's time",
        "break-glass accesses: EMERGENCY_ROLE and an unsuspended PROVIDER_ROLE at the block; flagged for review",
    ]
    if trail.acts is not None:
        report.checks.append(
            "every act's party: each consent, delegation, record version, erasure, disclosure and encryption key "
            "event matched with its transaction; EIP-712 digest recomputed and the signer recovered (or ERC-1271 "
            "for a contract party, or the sender of a direct call) and required to be the party the event names"
        )
    else:
        report.notes.append("the events' transactions were not read: who signed each act was not checked")
    if log is not None:
        report.checks.append(
            "batched disclosures: each entry's signed request recomputed and its signature required to be the "
            "accessor's; released by its deadline; no request logged twice"
        )
    versions_in_scope = sum(len(vs) for vs in in_scope_records.values())
    report.counts = {
        "records": len(in_scope_records),
        "versions": versions_in_scope,
        "blobsChecked": blobs_checked,
        "bytesChecked": bytes_checked,
        **replay.counts,
        "batches": len(trail.batches),
        "deliveriesChecked": deliveries_checked,
        **({} if operator_versions_checked is None else {"operatorVersionsChecked": operator_versions_checked}),
        "patients": len(replay.patients),
        "providers": len(replay.providers),
        "events": len(trail.events),
    }
    report.violations = sorted(violations, key=lambda v: (v.block if v.block is not None else -1, v.code))
    report.emergencies = replay.emergencies
    report.timeline = replay.timeline
    report.duration = clock() - started
    return report


def _cid_text(raw: bytes) -> str:
    try:
        return str(Cid.parse(raw))
    except InvalidCid:
        return "0x" + raw.hex()


def _check_versions(
    trail: Trail,
    rows: Sequence[OperatorVersion],
    scope: Scope,
    violations: list[Violation],
    accounts: Collection[str] | None = None,
) -> tuple[int, int]:
    """The operator's record versions and the chain's RecordAnchored events, matched both ways.

    Every anchored row needs its event (same record and version) with the same CID and version hash;
    every event in the trail needs a row (pending rows count: recovery resolves them). Rows anchored
    before the trail's first block cannot be checked; rows after its last block are counted and
    returned (a verification that read the DB after the chain meets them). Returns (rows checked,
    rows after the trail).
    """
    events: dict[tuple[bytes, int], VersionAnchored] = {}
    for v in trail.versions:
        events.setdefault((v.record_id, v.version), v)
    known: set[tuple[bytes, int]] = set()
    checked = beyond = 0
    for row in rows:
        rid = _parse32(row.record_id)
        if rid is None:
            continue  # not a record id this ledger could anchor; nothing on chain can match it
        known.add((rid, row.version))
        if row.state != "anchored":
            continue
        block = row.block_number
        if block is not None and block < trail.from_block:
            continue
        event = events.get((rid, row.version))
        patient = row.patient if row.patient is not None else (event.patient if event is not None else None)
        if scope.patient is not None and patient != scope.patient:
            continue
        if scope.record_id is not None and rid != scope.record_id:
            continue
        if block is not None and block < scope.from_block:
            continue
        if block is not None and block > trail.to_block:
            beyond += 1
            continue
        checked += 1
        label = f"version {row.version} of record {row.record_id}"
        where: dict[str, Any] = {
            "record_id": row.record_id.lower(),
            "block": block,
            "tx": row.tx_hash,
            "entry": f"record version {row.record_id.lower()} v{row.version}",
            "patient": patient,
        }
        if event is None:
            violations.append(
                Violation(
                    "version-without-event",
                    f"{label} (anchored in tx {row.tx_hash} at block {block} by the operator's account): expected a "
                    "RecordAnchored event for it on chain; the chain has none (was it reorganized away?)",
                    **where,
                )
            )
            continue
        diffs = []
        chain_cid = _cid_text(event.cid)
        if row.cid != chain_cid:
            diffs.append(f"cid: chain says {chain_cid}, row says {row.cid}")
        if row.version_hash.lower() != _hex(event.version_hash):
            diffs.append(f"version hash: chain says {_hex(event.version_hash)}, row says {row.version_hash}")
        if diffs:
            violations.append(
                Violation(
                    "version-mismatch",
                    f"{label} (tx {row.tx_hash}; on chain tx {event.at.tx} at block {event.at.block}): expected the "
                    "row to match its RecordAnchored event; " + "; ".join(diffs),
                    **where,
                )
            )
    for v in trail.versions:
        if (v.record_id, v.version) in known or not scope.covers(v.patient, v.record_id, v.at.block):
            continue
        if accounts is not None and v.author not in accounts:
            continue  # anchored by another provider's node, which keeps its own rows
        violations.append(
            Violation(
                "version-unknown-to-operator",
                f"version {v.version} of record {_hex(v.record_id)} anchored at block {v.at.block} (tx {v.at.tx}): "
                "expected a row for it in the operator's database; it has none",
                record_id=_hex(v.record_id),
                block=v.at.block,
                tx=v.at.tx,
                entry=f"record version {_hex(v.record_id)} v{v.version}",
                patient=v.patient,
            )
        )
    return checked, beyond


def _check_erasures(
    trail: Trail,
    records: dict[bytes, list[VersionAnchored]],
    operator: OperatorRecords,
    scope: Scope,
    violations: list[Violation],
) -> None:
    erasures = {e.record_id: e for e in trail.erasures}
    keys: dict[str, list[int]] = {}
    for record_id, version in operator.keys_present:
        keys.setdefault(record_id.lower(), []).append(version)
    for rid, erasure in erasures.items():
        if not scope.covers(erasure.patient, rid, 0):
            continue
        left = keys.get(_hex(rid))
        if left:
            violations.append(
                Violation(
                    "erased-key-remains",
                    f"record {_hex(rid)} erased at block {erasure.at.block}: expected no commitment salt; the "
                    f"operator DB still has salts for version(s) {', '.join(map(str, sorted(left)))}",
                    record_id=_hex(rid),
                    block=erasure.at.block,
                    tx=erasure.at.tx,
                    patient=erasure.patient,
                )
            )
    for record_id in operator.erased:
        raw = _parse32(record_id)
        if raw is None or raw in erasures:
            continue
        versions = records.get(raw)
        patient = versions[0].patient if versions else None
        if patient is not None and not scope.covers(patient, raw, 0):
            continue
        if patient is None and (scope.patient is not None or (scope.record_id not in (None, raw))):
            continue
        violations.append(
            Violation(
                "erasure-event-missing",
                f"record {record_id}: the operator marks it erased; expected a RecordErased event on chain, got none",
                record_id=record_id,
                patient=patient,
            )
        )
