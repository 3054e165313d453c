"""Relaying patients' signed consent messages, and reading consent state back.

The relay checks everything the contract will check (signer, nonce, deadline, purpose,
window) before spending gas, so a bad message is a clear 4xx, not a reverted
transaction. An identical signed message submitted again returns the first result.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.chain.wire import Receipt
from ledger_service.codec import eip712
from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow, RelayedMessageRow
from ledger_service.domain.codes import ZERO32, hex32, purpose_from_bytes32
from ledger_service.domain.consent import (
    ConsentGrant,
    ConsentRevoke,
    ConsentState,
    DelegateGrant,
    Eip712Domain,
    SignedMessage,
)
from ledger_service.errors import SignatureError, TransactionReverted, ValidationError


@dataclass(frozen=True)
class RelayResult:
    tx_hash: str
    consent_id: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class _ChainState:
    """What the relay checks read from the chain, in one batched round trip at the latest block."""

    nonce: int
    timestamp: int
    delegate_live: bool | None = None  # whether the signer is a live delegate (asked only when it is not the patient)
    provider_active: bool | None = None  # relay_grant: whether the grantee is an active provider
    consent_patient: str | None = None  # relay_revoke: the consent's patient (the zero address if unknown)


@dataclass(frozen=True)
class _Recovered:
    """The signer and digest of a message, or the error its signature raised (kept until its turn)."""

    signer: str | None
    digest: bytes
    error: SignatureError | None


@dataclass(frozen=True)
class ConsentView:
    state: ConsentState
    status: str
    granted_at: int
    tx_hash: str
    signer: str
    revoked_at: int | None
    revoke_tx: str | None


@dataclass(frozen=True)
class DelegateView:
    delegate: str
    valid_until: int
    live: bool


# The contract's custom errors that mean "this signed message is not acceptable".
_SIGNATURE_REVERTS = {
    "InvalidAccountNonce": "stale-nonce",
    "SignatureExpired": "deadline-passed",
    "InvalidSigner": "bad-signature",
    "InvalidValidityWindow": "invalid-window",
    "UnknownPurpose": "unknown-purpose",
    "PurposeNotGrantable": "purpose-not-grantable",
    "UnknownConsent": "unknown-consent",
    "ConsentAlreadyRevoked": "already-revoked",
    "InvalidDelegate": "invalid-delegate",
    "ZeroAddress": "zero-address",
}


class ConsentService:
    def __init__(
        self,
        *,
        db: Database,
        ledger: ConsentLedgerContract,
        domain: Eip712Domain,
        indexer: EventIndexer,
        chain_time: Callable[[], int],
        wait_for_twin: float = 120.0,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.domain = domain
        self.indexer = indexer
        self.chain_time = chain_time
        self.wait_for_twin = wait_for_twin
        self._relay_lock = threading.Lock()
        self._in_flight: dict[bytes, threading.Event] = {}

    # ------------------------------------------------------------- signature checks

    def _recover(self, message: SignedMessage, signature: bytes) -> tuple[str, bytes]:
        # The digest is also the replay key stored with each relayed message (same bytes as eth-account's).
        digest = eip712.digest(self.domain, message)
        if len(signature) != 65:
            raise SignatureError("signature must be 65 bytes (r, s, v)", reason="bad-signature")
        # The ledger verifies with OpenZeppelin's ECDSA, which takes only v = 27 or 28 and a low s (no
        # malleable twin): refuse the rest here rather than send a transaction bound to revert.
        if signature[64] not in (27, 28) or int.from_bytes(signature[32:64], "big") > eip712.SECP256K1_N // 2:
            raise SignatureError(
                "signature must have v = 27 or 28 and a low s (as the ledger's ECDSA requires)", reason="bad-signature"
            )
        try:
            signer = eip712.recover(digest, signature)
        except Exception as exc:  # refused exactly where eth-account's recover_message refuses
            raise SignatureError("signature does not recover to an address", reason="bad-signature") from exc
        return signer, digest

    def _recover_once(self, message: SignedMessage, signature: bytes) -> _Recovered:
        try:
            signer, digest = self._recover(message, signature)
        except SignatureError as exc:
            return _Recovered(None, b"", exc)
        return _Recovered(signer, digest, None)

    def signer_of(self, message: SignedMessage, signature: bytes) -> str | None:
        """Who signed ``message`` (patient or delegate), or None for a signature the relay refuses.

        Pure CPU (~55 us): the API counts relayed messages per signer with it before relaying."""
        return self._recover_once(message, signature).signer

    def _chain_state(
        self,
        patient: str,
        signer: str | None,
        *,
        delegate_allowed: bool,
        provider: str | None = None,
        consent_id: bytes | None = None,
    ) -> _ChainState:
        """The nonce, the latest block's time and whatever else the relay will check, in one round trip."""
        calls: list[tuple[str, tuple[Any, ...]]] = [("nonces", (patient,))]
        ask_delegate = delegate_allowed and signer is not None and signer != patient
        if ask_delegate:
            calls.append(("delegation", (patient, signer)))
        if provider is not None:
            calls.append(("isActiveProvider", (to_checksum_address(provider),)))
        if consent_id is not None:
            calls.append(("consent", (consent_id,)))
        results, block = self.ledger.views(calls, with_block=True)
        answers = iter(results[1:])
        return _ChainState(
            nonce=int(results[0][0]),
            timestamp=int(block["timestamp"], 16) if block else self.chain_time(),
            delegate_live=bool(next(answers)[1]) if ask_delegate else None,
            provider_active=bool(next(answers)[0]) if provider is not None else None,
            consent_patient=str(next(answers)[0][0]) if consent_id is not None else None,
        )

    def _check_common(
        self,
        patient: str,
        nonce: int,
        deadline: int,
        signer: str,
        *,
        delegate_allowed: bool,
        state: _ChainState | None = None,
    ) -> None:
        if state is None or (delegate_allowed and signer != patient and state.delegate_live is None):
            state = self._chain_state(patient, signer, delegate_allowed=delegate_allowed)
        # The signature first: until it matches, nothing else in the message is the patient's word.
        if signer != patient:
            live = delegate_allowed and bool(state.delegate_live)
            if not live:
                who = "a live delegate" if delegate_allowed else "the patient"
                raise SignatureError(
                    f"signed by {signer}, which is not the patient {patient} or {who}", reason="bad-signature"
                )
        now = state.timestamp
        if deadline < now:
            raise SignatureError(f"deadline {deadline} has passed (chain time {now})", reason="deadline-passed")
        current = state.nonce
        if nonce != current:
            raise SignatureError(f"nonce {nonce} is not the patient's current nonce {current}", reason="stale-nonce")

    def _replayed(self, digest: bytes) -> RelayResult | None:
        """The first relay of this exact message, once its transaction is mined; None if there is none.

        The row is written as soon as the node has the transaction, before its receipt, so a retry of
        a request that died (or failed) while waiting adopts that transaction instead of judging the
        message again (its nonce is used by then). A transaction that failed frees the message.
        """
        with self.db.session() as s:
            row = s.get(RelayedMessageRow, hex32(digest))
            if row is None:
                return None
            tx_hash, kind, consent = row.tx_hash, row.kind, row.consent_id
        if self.ledger.has_sender:
            try:
                self.ledger.wait_for(bytes.fromhex(tx_hash[2:]), action=f"relayed {kind}")
            except TransactionReverted:
                self._forget_relayed(digest, tx_hash)
                return None
        return RelayResult(tx_hash=tx_hash, consent_id=consent, replayed=True)

    def _forget_relayed(self, digest: bytes, tx_hash: str) -> None:
        with self.db.session() as s:
            row = s.get(RelayedMessageRow, hex32(digest))
            if row is not None and row.tx_hash == tx_hash:
                s.delete(row)

    def _relay(
        self,
        kind: str,
        message: SignedMessage,
        signature: bytes,
        submit: Callable[[Callable[[bytes], None]], Receipt],
        consent: str | None,
        recovered: _Recovered | None = None,
        state: _ChainState | None = None,
    ) -> RelayResult:
        """Relay a checked message. ``recovered`` and ``state`` are what the caller already read (the
        signature's recovery and the chain state of its pre-checks, read before a twin could change it)."""
        if recovered is None:
            signer, digest = self._recover(message, signature)
        elif recovered.error is not None or recovered.signer is None:
            raise recovered.error or SignatureError("signature does not recover", reason="bad-signature")
        else:
            signer, digest = recovered.signer, recovered.digest
        previous = self._replayed(digest)
        if previous is not None:
            return previous
        # An identical message already on its way (a client retrying while the first request waits
        # for confirmations) is not sent twice: wait for the first and answer with its result.
        with self._relay_lock:
            running = self._in_flight.get(digest)
            if running is None:
                self._in_flight[digest] = threading.Event()
        if running is not None:
            running.wait(timeout=self.wait_for_twin)
            previous = self._replayed(digest)
            if previous is not None:
                return previous
            # The twin failed: judge the message afresh (the chain may have moved meanwhile).
            return self._relay(kind, message, signature, submit, consent)
        try:
            return self._submit_once(kind, message, signature, submit, consent, signer, digest, state)
        finally:
            with self._relay_lock:
                self._in_flight.pop(digest).set()

    def _submit_once(
        self,
        kind: str,
        message: SignedMessage,
        signature: bytes,
        submit: Callable[[Callable[[bytes], None]], Receipt],
        consent: str | None,
        signer: str,
        digest: bytes,
        state: _ChainState | None = None,
    ) -> RelayResult:
        patient = to_checksum_address(message.patient)
        self._check_common(
            patient,
            message.nonce,
            message.deadline,
            signer,
            delegate_allowed=not isinstance(message, DelegateGrant),
            state=state,
        )
        sent: list[str] = []

        def trace(tx_hash: bytes) -> None:
            # Written once the node has the transaction and before its receipt: see _replayed.
            sent.append("0x" + tx_hash.hex())
            with self.db.session() as s:
                s.merge(
                    RelayedMessageRow(
                        digest=hex32(digest),
                        kind=kind,
                        patient=patient,
                        consent_id=consent,
                        tx_hash=sent[0],
                        created_at=datetime.now(UTC),
                    )
                )

        try:
            receipt = submit(trace)
        except TransactionReverted as exc:
            if sent:
                self._forget_relayed(digest, sent[0])
            # The same message may have landed through a concurrent identical request.
            previous = self._replayed(digest)
            if previous is not None:
                return previous
            reason = _SIGNATURE_REVERTS.get(exc.error_name or "")
            if reason is None:
                raise
            raise SignatureError(f"the ledger refused the {kind}: {exc}", reason=reason) from exc
        return RelayResult(tx_hash=receipt.tx_hex, consent_id=consent)

    # ------------------------------------------------------------- relays

    # Each relay reads everything its checks need from the chain in one batched round trip, then
    # raises the same errors in the same order as checking them one by one would.

    def relay_grant(self, grant: ConsentGrant, signature: bytes) -> RelayResult:
        grant.check()
        if grant.grantee == grant.patient:
            raise ValidationError("a patient cannot grant consent to themselves", field="grantee")
        recovered = self._recover_once(grant, signature)
        patient = to_checksum_address(grant.patient)
        state = self._chain_state(patient, recovered.signer, delegate_allowed=True, provider=grant.grantee)
        if not state.provider_active:
            raise ValidationError(f"grantee {grant.grantee} is not an active provider", field="grantee")
        return self._relay(
            "grant",
            grant,
            signature,
            lambda trace: self.ledger.grant_by_sig(grant, signature, on_sent=trace),
            hex32(grant.consent_id),
            recovered,
            state,
        )

    def relay_revoke(self, revoke: ConsentRevoke, signature: bytes) -> RelayResult:
        recovered = self._recover_once(revoke, signature)
        patient = to_checksum_address(revoke.patient)
        state = self._chain_state(patient, recovered.signer, delegate_allowed=True, consent_id=revoke.consent_id)
        on_chain = state.consent_patient or "0x0"
        if int(on_chain, 16) == 0 or to_checksum_address(on_chain) != patient:
            raise ValidationError(
                f"no consent {hex32(revoke.consent_id)} of patient {revoke.patient}", field="consentId"
            )
        return self._relay(
            "revoke",
            revoke,
            signature,
            lambda trace: self.ledger.revoke_by_sig(revoke, signature, on_sent=trace),
            hex32(revoke.consent_id),
            recovered,
            state,
        )

    def relay_delegate(self, grant: DelegateGrant, signature: bytes) -> RelayResult:
        if to_checksum_address(grant.delegate) == to_checksum_address(grant.patient):
            raise ValidationError("a patient cannot be their own delegate", field="delegate")
        recovered = self._recover_once(grant, signature)
        state = None
        if recovered.signer is not None:
            state = self._chain_state(to_checksum_address(grant.patient), recovered.signer, delegate_allowed=False)
        return self._relay(
            "delegate",
            grant,
            signature,
            lambda trace: self.ledger.delegate_by_sig(grant, signature, on_sent=trace),
            None,
            recovered,
            state,
        )

    # ------------------------------------------------------------- reads

    def _events(self, patient: str, names: tuple[str, ...]) -> list[ChainEventRow]:
        self.indexer.catch_up()
        with self.db.session() as s:
            return list(
                s.execute(
                    select(ChainEventRow)
                    .where(ChainEventRow.patient == patient, ChainEventRow.name.in_(names))
                    .order_by(ChainEventRow.block_number, ChainEventRow.log_index)
                ).scalars()
            )

    def consents_of(self, patient: str) -> list[ConsentView]:
        """Every consent the patient has granted, with its status now (replayed from events)."""
        patient = to_checksum_address(patient)
        now = self.chain_time()
        views: dict[str, dict[str, Any]] = {}
        for row in self._events(patient, ("ConsentGranted", "ConsentRevoked")):
            args = json.loads(row.args)
            consent = args["consentId"]
            if row.name == "ConsentGranted":
                views[consent] = {
                    "state": ConsentState(
                        bytes.fromhex(consent[2:]),
                        patient,
                        to_checksum_address(args["grantee"]),
                        bytes.fromhex(args["scope"][2:]),
                        bytes.fromhex(args["purpose"][2:]),
                        int(args["validFrom"]),
                        int(args["validUntil"]),
                    ),
                    "granted_at": row.block_timestamp,
                    "tx_hash": row.tx_hash,
                    "signer": to_checksum_address(args["signer"]),
                    "revoked_at": None,
                    "revoke_tx": None,
                }
            elif consent in views:
                view = views[consent]
                state: ConsentState = view["state"]
                view["state"] = ConsentState(**{**state.__dict__, "revoked": True})
                view["revoked_at"], view["revoke_tx"] = row.block_timestamp, row.tx_hash
        return [
            ConsentView(status=v["state"].status_at(now), **v)
            for v in sorted(views.values(), key=lambda v: v["granted_at"], reverse=True)
        ]

    def delegates_of(self, patient: str) -> list[DelegateView]:
        patient = to_checksum_address(patient)
        seen: dict[str, None] = {}
        for row in self._events(patient, ("DelegateGranted",)):
            seen[to_checksum_address(json.loads(row.args)["delegate"])] = None
        views = []
        for delegate in seen:
            valid_until, live = self.ledger.delegation(patient, delegate)
            views.append(DelegateView(delegate, valid_until, live))
        return views


def scope_kind(scope: bytes, categories: dict[str, bytes]) -> tuple[str, str]:
    """("all" | "category" | "record", a human label) for a consent scope."""
    if scope == ZERO32:
        return "all", "All records"
    for code, category in categories.items():
        if category == scope:
            return "category", code
    return "record", hex32(scope)


@dataclass(frozen=True)
class ConsentSummary:
    """A consent as the API shows it; one shape for the patient's list and the FHIR Consent bundle.

    Field names are those of the API's ``ConsentOut``.
    """

    consent_id: str
    patient: str
    grantee: str
    grantee_name: str | None
    scope: str
    scope_kind: str
    scope_label: str
    purpose: str
    valid_from: int
    valid_until: int
    status: str
    granted_at: int
    tx_hash: str
    signer: str
    revoked_at: int | None
    revoke_tx_hash: str | None

    @property
    def scope_value(self) -> str:
        """FHIR's scope value: "" for all records, else the category code or the record id."""
        return "" if self.scope_kind == "all" else self.scope_label


def consent_summaries(
    consents: ConsentService,
    patient: str,
    categories: dict[str, bytes],
    name_of: Callable[[str], str | None],
) -> list[ConsentSummary]:
    """The patient's grants with status, scope kind and label, and the grantee's directory name."""
    out = []
    for view in consents.consents_of(patient):
        kind, label = scope_kind(view.state.scope, categories)
        out.append(
            ConsentSummary(
                consent_id=hex32(view.state.consent_id),
                patient=patient,
                grantee=view.state.grantee,
                grantee_name=name_of(view.state.grantee),
                scope=hex32(view.state.scope),
                scope_kind=kind,
                scope_label=label,
                purpose=purpose_from_bytes32(view.state.purpose),
                valid_from=view.state.valid_from,
                valid_until=view.state.valid_until,
                status=view.status,
                granted_at=view.granted_at,
                tx_hash=view.tx_hash,
                signer=view.signer,
                revoked_at=view.revoked_at,
                revoke_tx_hash=view.revoke_tx,
            )
        )
    return out
