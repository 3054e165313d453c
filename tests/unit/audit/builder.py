"""Synthetic trails for the verifier's unit tests (no chain): events built as the contract emits them, each with
the act of its transaction (the party's EIP-712 message and signature, or a direct call by the party)."""

from __future__ import annotations

import itertools
import os

from coincurve import PrivateKey
from eth_account import Account
from eth_utils import keccak

from ledger_service.audit.trail import (
    Act,
    At,
    BatchAnchor,
    CategoryEvent,
    ConsentEvent,
    DelegationEvent,
    DisclosureEvent,
    RecordErasure,
    RoleEvent,
    Trail,
    TrailEvent,
    VersionAnchored,
)
from ledger_service.blobs import compute_cid
from ledger_service.chain.ledger import BY_SIG_FUNCTION
from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import (
    DEFAULT_ADMIN_ROLE,
    EMERGENCY_ROLE,
    PROVIDER_ROLE,
    ZERO32,
    category_id,
    purpose_to_bytes32,
)
from ledger_service.domain.consent import (
    AccessRequest,
    ConsentGrant,
    ConsentRevoke,
    DelegateGrant,
    Eip712Domain,
    EmergencyAccessRequest,
    RecordAmend,
    RecordAnchor,
    RecordErase,
    SignedMessage,
    consent_id,
)
from ledger_service.domain.records import record_id_of, version_hash
from ledger_service.transparency.entries import DisclosureEntry

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
START = 1_700_000_000
DOMAIN = Eip712Domain(1, CONTRACT)
RELAYER = checksum_address("0x" + "5e" * 20)

# The private key of every account address() made, so that the builder can sign as any of them.
KEYS: dict[str, bytes] = {}


def address() -> str:
    account = Account.create()
    KEYS[account.address] = bytes(account.key)
    return str(account.address)


def sign(message: SignedMessage, signer: str) -> bytes:
    """``signer``'s 65-byte EIP-712 signature (v 27/28, low s) over ``message`` in the test ledger's domain."""
    raw = PrivateKey(KEYS[signer]).sign_recoverable(eip712.digest(DOMAIN, message), hasher=None)
    return raw[:64] + bytes((27 + raw[64],))


class TrailBuilder:
    """Each call mines one block 12 s after the previous one (unless ``same_block``)."""

    def __init__(self) -> None:
        self.events: list[TrailEvent] = []
        self.block = 10
        self.time = START
        self.timestamps: dict[int, int] = {}
        self._log = itertools.count()
        self.admin = address()
        self._tx = itertools.count(1)
        self.heads: dict[bytes, tuple[int, bytes]] = {}
        self.acts: dict[bytes, Act] = {}
        self._nonces = itertools.count()
        self.categories = {code: category_id(code) for code in ("laboratory", "imaging")}
        at = self.at()
        self.events.append(RoleEvent("granted", self.admin, at, role=DEFAULT_ADMIN_ROLE, by=self.admin))
        for index, (code, cat) in enumerate(self.categories.items(), start=1):
            self.events.append(CategoryEvent(cat, index, code, self.at(same_block=True)))

    def at(self, *, same_block: bool = False, advance: int = 12) -> At:
        if not same_block:
            self.block += 1
            self.time += advance
            self._log = itertools.count()
        self.timestamps[self.block] = self.time
        return At(self.block, next(self._log), next(self._tx).to_bytes(32, "big"), self.time)

    def add(self, event: TrailEvent) -> TrailEvent:
        self.events.append(event)
        return event

    def nonce(self) -> int:
        return next(self._nonces)

    def deadline(self) -> int:
        return self.time + 3600

    def signed(self, at: At, message: SignedMessage, signer: str, *, signature: bytes | None = None) -> bytes:
        """Record ``at``'s transaction as the relayed by-signature call of ``message``, signed by ``signer``
        (or carrying ``signature`` as given); returns the signature."""
        signature = sign(message, signer) if signature is None else signature
        self.acts[at.tx_hash] = Act(RELAYER, BY_SIG_FUNCTION[type(message).__name__], message, signature)
        return signature

    def direct(self, at: At, function: str, sender: str) -> None:
        """Record ``at``'s transaction as ``sender``'s own call of ``function``."""
        self.acts[at.tx_hash] = Act(sender, function)

    # ------------------------------------------------------------- roles

    def provider(self, account: str, *, emergency: bool = False) -> str:
        at = self.at()
        self.add(RoleEvent("granted", account, at, role=PROVIDER_ROLE, by=self.admin))
        self.add(RoleEvent("onboarded", account, self.at(same_block=True), name="Clinic"))
        if emergency:
            self.add(RoleEvent("granted", account, self.at(same_block=True), role=EMERGENCY_ROLE, by=self.admin))
        return account

    def suspend(self, account: str) -> None:
        self.add(RoleEvent("suspended", account, self.at(), by=self.admin))

    def reinstate(self, account: str) -> None:
        self.add(RoleEvent("reinstated", account, self.at(), by=self.admin))

    # ------------------------------------------------------------- consent

    def grant(
        self,
        patient: str,
        grantee: str,
        *,
        scope: bytes = ZERO32,
        purpose: str = "TREAT",
        valid_from: int = 0,
        valid_until: int = 0,
        signer: str | None = None,
        signed_by: str | None = None,
    ) -> bytes:
        """A relayed ConsentGrant; the event names ``signer`` (default the patient), whose key signs it unless
        ``signed_by`` names another."""
        p = purpose_to_bytes32(purpose)
        cid = consent_id(patient, grantee, scope, p)
        at = self.at()
        message = ConsentGrant(patient, grantee, scope, p, valid_from, valid_until, self.nonce(), self.deadline())
        self.signed(at, message, signed_by or signer or patient)
        self.add(
            ConsentEvent(
                "granted",
                cid,
                patient,
                signer or patient,
                at,
                grantee=grantee,
                scope=scope,
                purpose=p,
                valid_from=valid_from,
                valid_until=valid_until,
            )
        )
        return cid

    def revoke(self, patient: str, consent: bytes, *, signer: str | None = None) -> None:
        at = self.at()
        self.signed(at, ConsentRevoke(patient, consent, self.nonce(), self.deadline()), signer or patient)
        self.add(ConsentEvent("revoked", consent, patient, signer or patient, at))

    def delegate(self, patient: str, delegate: str, valid_until: int = 0) -> None:
        at = self.at()
        self.signed(at, DelegateGrant(patient, delegate, valid_until, self.nonce(), self.deadline()), patient)
        self.add(DelegationEvent("granted", patient, delegate, valid_until, at))

    # ------------------------------------------------------------- records

    def anchor(
        self,
        patient: str,
        author: str,
        content: bytes,
        *,
        record_id: bytes | None = None,
        category: str = "laboratory",
        previous: bytes | None = None,
    ) -> VersionAnchored:
        salt = os.urandom(32)
        rid = record_id or record_id_of(patient, author, salt)
        version, head = self.heads.get(rid, (0, ZERO32))
        version += 1
        prev = head if previous is None else previous
        cid = compute_cid(content).cid.bytes
        commitment = keccak(content)
        cat = self.categories[category]
        vh = version_hash(
            record_id=rid,
            version=version,
            patient=patient,
            author=author,
            category=cat,
            cid=cid,
            commitment=commitment,
            previous_hash=prev,
        )
        self.heads[rid] = (version, vh)
        at = self.at()
        if version > 1:
            self.signed(
                at, RecordAmend(patient, author, rid, cid, commitment, prev, self.nonce(), self.deadline()), author
            )
        elif record_id is None:
            self.signed(
                at, RecordAnchor(patient, author, cat, salt, cid, commitment, self.nonce(), self.deadline()), author
            )
        else:  # an id chosen by the test: no salt makes it, so the author sends it itself
            self.direct(at, "anchorRecord", author)
        event = VersionAnchored(rid, patient, author, version, cat, cid, commitment, prev, vh, at)
        self.add(event)
        return event

    def erase(self, patient: str, record_id: bytes, *, by: str | None = None) -> RecordErasure:
        at = self.at()
        self.signed(at, RecordErase(patient, record_id, self.nonce(), self.deadline()), by or patient)
        event = RecordErasure(record_id, patient, by or patient, self.heads[record_id][0], at)
        self.add(event)
        return event

    # ------------------------------------------------------------- disclosures

    def access(
        self,
        record_id: bytes,
        patient: str,
        accessor: str,
        consent: bytes,
        *,
        purpose: str = "TREAT",
        advance: int = 12,
        same_block: bool = False,
        version: int | None = None,
    ) -> DisclosureEvent:
        """An AccessLogged of the accessor's relayed AccessRequest (for the head version unless ``version``)."""
        at = self.at(advance=advance, same_block=same_block)
        version = self.heads[record_id][0] if version is None else version
        request = AccessRequest(
            patient, accessor, record_id, version, purpose_to_bytes32(purpose), self.nonce(), self.deadline()
        )
        self.signed(at, request, accessor)
        event = DisclosureEvent(
            record_id,
            patient,
            accessor,
            version,
            False,
            at,
            purpose=purpose_to_bytes32(purpose),
            consent_id=consent,
            request_digest=eip712.digest(DOMAIN, request),
        )
        self.add(event)
        return event

    def emergency(self, record_id: bytes, patient: str, accessor: str, reason: str = "unconscious") -> DisclosureEvent:
        at = self.at()
        version = self.heads[record_id][0]
        request = EmergencyAccessRequest(
            patient, accessor, record_id, version, keccak(reason.encode()), self.nonce(), self.deadline()
        )
        self.signed(at, request, accessor)
        event = DisclosureEvent(
            record_id,
            patient,
            accessor,
            version,
            True,
            at,
            reason_hash=keccak(reason.encode()),
            request_digest=eip712.digest(DOMAIN, request),
        )
        self.add(event)
        return event

    def entry(
        self,
        record_id: bytes,
        patient: str,
        accessor: str,
        consent: bytes,
        *,
        purpose: str = "TREAT",
        reason: str | None = None,
        version: int | None = None,
        signer: str | None = None,
    ) -> DisclosureEntry:
        """A batched disclosure released at the current block: the accessor's signed request as a log entry
        (signed by ``signer`` instead, if given). Not an event: the caller puts it in an operator log."""
        version = self.heads.get(record_id, (1, ZERO32))[0] if version is None else version
        request: AccessRequest | EmergencyAccessRequest
        if reason is None:
            request = AccessRequest(
                patient, accessor, record_id, version, purpose_to_bytes32(purpose), self.nonce(), self.deadline()
            )
        else:
            request = EmergencyAccessRequest(
                patient, accessor, record_id, version, keccak(reason.encode()), self.nonce(), self.deadline()
            )
        self.timestamps[self.block] = self.time
        return DisclosureEntry.of_request(
            request,
            sign(request, signer or accessor),
            domain=DOMAIN,
            consent_id=consent,
            block_number=self.block,
            timestamp=self.time,
        )

    def batch(self, root: bytes, from_index: int, to_index: int) -> BatchAnchor:
        event = BatchAnchor(root, from_index, to_index, self.at())
        self.add(event)
        return event

    def trail(self) -> Trail:
        return Trail(1, CONTRACT, 0, self.block, list(self.events), dict(self.timestamps), acts=dict(self.acts))
