"""Synthetic trails for the verifier's unit tests (no chain): events built as the contract emits them."""

from __future__ import annotations

import itertools
import os

from eth_account import Account
from eth_utils import keccak

from ledger_service.audit.trail import (
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
from ledger_service.domain.codes import (
    DEFAULT_ADMIN_ROLE,
    EMERGENCY_ROLE,
    PROVIDER_ROLE,
    ZERO32,
    category_id,
    purpose_to_bytes32,
)
from ledger_service.domain.consent import consent_id
from ledger_service.domain.records import version_hash

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
START = 1_700_000_000


def address() -> str:
    return str(Account.create().address)


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
    ) -> bytes:
        p = purpose_to_bytes32(purpose)
        cid = consent_id(patient, grantee, scope, p)
        self.add(
            ConsentEvent(
                "granted",
                cid,
                patient,
                signer or patient,
                self.at(),
                grantee=grantee,
                scope=scope,
                purpose=p,
                valid_from=valid_from,
                valid_until=valid_until,
            )
        )
        return cid

    def revoke(self, patient: str, consent: bytes, *, signer: str | None = None) -> None:
        self.add(ConsentEvent("revoked", consent, patient, signer or patient, self.at()))

    def delegate(self, patient: str, delegate: str, valid_until: int = 0) -> None:
        self.add(DelegationEvent("granted", patient, delegate, valid_until, self.at()))

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
        rid = record_id or keccak(os.urandom(32))
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
        event = VersionAnchored(rid, patient, author, version, cat, cid, commitment, prev, vh, self.at())
        self.add(event)
        return event

    def erase(self, patient: str, record_id: bytes) -> RecordErasure:
        event = RecordErasure(record_id, patient, patient, self.heads[record_id][0], self.at())
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
    ) -> DisclosureEvent:
        event = DisclosureEvent(
            record_id,
            patient,
            accessor,
            self.heads[record_id][0],
            False,
            self.at(advance=advance),
            purpose=purpose_to_bytes32(purpose),
            consent_id=consent,
        )
        self.add(event)
        return event

    def emergency(self, record_id: bytes, patient: str, accessor: str, reason: str = "unconscious") -> DisclosureEvent:
        event = DisclosureEvent(
            record_id,
            patient,
            accessor,
            self.heads[record_id][0],
            True,
            self.at(),
            reason_hash=keccak(reason.encode()),
        )
        self.add(event)
        return event

    def batch(self, root: bytes, from_index: int, to_index: int) -> BatchAnchor:
        event = BatchAnchor(root, from_index, to_index, self.at())
        self.add(event)
        return event

    def trail(self) -> Trail:
        return Trail(1, CONTRACT, 0, self.block, list(self.events), dict(self.timestamps))
