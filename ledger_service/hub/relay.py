"""The hub's relay: any party's signed message of docs/architecture.md ("Signed acts"), sent by the relayer.

The relayer only pays for gas: every act names its party, and the contract accepts it only with that
party's signature (ECDSA, or ERC-1271 for a contract account), so the hub cannot act for anyone.

Before spending gas the relay runs the exact call with ``eth_call`` from the relayer's account, with the
call's fixed gas limit as the bound (a contract account cannot make the check expensive): what would revert
is refused with a clear error and nothing is sent, an access request without consent included. The contract
is the one judge of signatures, nonces and deadlines, so no rule is written twice. An identical message
relayed again answers with the first relay's outcome and sends nothing. Identical means the same EIP-712 digest
*and* the same signature: a patient's and a guardian's signatures of the same fields share one digest but are
two acts, and the second must be judged by the ledger, not answered with the first one's outcome.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from eth_utils import keccak, to_checksum_address
from sqlalchemy import bindparam, select

from ledger_service.chain.ledger import (
    BY_SIG_FUNCTION,
    FIXED_GAS,
    SIGNED_ACT_GAS,
    ConsentLedgerContract,
    record_error,
    struct_tuple,
)
from ledger_service.chain.sender import reverted_from
from ledger_service.chain.wire import Receipt, RpcError
from ledger_service.codec import eip712
from ledger_service.db.database import Database
from ledger_service.db.models import RelayedMessageRow
from ledger_service.domain.codes import hex32
from ledger_service.domain.consent import (
    AccessRequest,
    ConsentGrant,
    DelegateGrant,
    DelegateRevoke,
    Eip712Domain,
    EmergencyAccessRequest,
    EncryptionKey,
    RecordAmend,
    RecordAnchor,
    SignedMessage,
)
from ledger_service.errors import (
    ConsentDenied,
    LedgerError,
    PermissionDenied,
    RelaySuspended,
    SignatureError,
    TransactionReverted,
    ValidationError,
)
from ledger_service.hub.catalog import RecordCatalog
from ledger_service.records.relaying import RecordFacts, RelayOutcome
from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES

# The short kind stored with each relayed message.
KINDS: Final = {
    "ConsentGrant": "grant",
    "ConsentRevoke": "revoke",
    "DelegateGrant": "delegate",
    "DelegateRevoke": "undelegate",
    "RecordAnchor": "anchor",
    "RecordAmend": "amend",
    "AccessRequest": "access",
    "EmergencyAccessRequest": "emergency",
    "RecordErase": "erase",
    "EncryptionKey": "enckey",
}
# The events that answer each act (its outcome is read from the first of them in the receipt).
_EVENTS: Final = {
    "ConsentGrant": "ConsentGranted",
    "ConsentRevoke": "ConsentRevoked",
    "DelegateGrant": "DelegateGranted",
    "DelegateRevoke": "DelegateRevoked",
    "RecordAnchor": "RecordAnchored",
    "RecordAmend": "RecordAnchored",
    "AccessRequest": "AccessLogged",
    "EmergencyAccessRequest": "EmergencyAccessLogged",
    "RecordErase": "RecordErased",
    "EncryptionKey": "EncryptionKeySet",
}

# The contract's custom errors that mean "this signed message is not acceptable", with the reason code
# the API reports (README, "Roles: hub and node").
SIGNATURE_REVERTS: Final = {
    "NonceAlreadyUsed": "nonce-used",
    "SignatureExpired": "deadline-passed",
    "InvalidSigner": "bad-signature",
    "InvalidValidityWindow": "invalid-window",
    "UnknownPurpose": "unknown-purpose",
    "PurposeNotGrantable": "purpose-not-grantable",
    "UnknownConsent": "unknown-consent",
    "ConsentAlreadyRevoked": "already-revoked",
    "RevokedByPatient": "revoked-by-patient",
    "InvalidDelegate": "invalid-delegate",
    "ZeroAddress": "zero-address",
    "EmptyCid": "empty-cid",
    "EmptyReason": "empty-reason",
    "EmptyPublicKey": "empty-public-key",
    "UnknownVersion": "unknown-version",
    "RecordAlreadyExists": "record-exists",
}


# The first relay of a message: every relay looks it up, so the statement is built once.
_RELAYED = select(RelayedMessageRow.tx_hash, RelayedMessageRow.kind).where(
    RelayedMessageRow.digest == bindparam("digest")
)


def _word(address: str) -> bytes:
    """An address as the 32-byte word of an indexed event topic."""
    return b"\x00" * 12 + bytes.fromhex(to_checksum_address(address)[2:])


def relayed_key(digest: bytes, signature: bytes) -> bytes:
    """The key of one relayed act: its message's EIP-712 digest bound to the very signature that authorizes it."""
    return bytes(keccak(digest + signature))


def party_of(message: SignedMessage) -> str:
    """The account a message names as its party (the patient for patient and delegate messages)."""
    if isinstance(message, RecordAnchor | RecordAmend):
        return to_checksum_address(message.author)
    if isinstance(message, AccessRequest | EmergencyAccessRequest):
        return to_checksum_address(message.accessor)
    if isinstance(message, EncryptionKey):
        return to_checksum_address(message.account)
    return to_checksum_address(message.patient)


def refusal(message: SignedMessage, exc: TransactionReverted) -> LedgerError:
    """The domain error for a revert of ``message``'s call (simulated or mined)."""
    name = exc.error_name or ""
    kind = type(message).__name__
    if name == "AccessNotAuthorized":
        return ConsentDenied(f"access refused: no active consent covers this request ({exc})")
    if name in ("NotEmergencyProvider", "NotActiveProvider"):
        return PermissionDenied(f"the ledger refused the {kind}: {exc}")
    reason = SIGNATURE_REVERTS.get(name)
    if reason is not None:
        return SignatureError(f"the ledger refused the {kind}: {exc}", reason=reason)
    return record_error(exc)


# How long a contract account whose relayed transaction reverted after its check passed is refused (seconds).
DEFAULT_REVERT_SUSPENSION: Final = 3600.0


class RevertSuspensions:
    """Contract accounts the relay refuses for a while: each relayed a message whose transaction reverted on
    chain after its gas-bounded ``eth_call`` passed. An ECDSA signature answers the same in both; an ERC-1271
    contract can answer ``eth_call`` one way and the mined transaction another (on ``block.number``,
    ``tx.gasprice``, a toggle), and would make the relayer pay for one reverted transaction after another. So
    one such revert suspends that party (docs/security.md, "Passkey sign-in and relay griefing"). In memory,
    per process, as the rate limits are: a hub replica's own reverts count there."""

    def __init__(self, seconds: float = DEFAULT_REVERT_SUSPENSION, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, tuple[float, str]] = {}

    def check(self, party: str) -> None:
        """Raise RelaySuspended while ``party`` is suspended."""
        with self._lock:
            suspended = self._until.get(party)
            now = self._clock()
            if suspended is not None and suspended[0] <= now:
                del self._until[party]
                suspended = None
        if suspended is not None:
            retry_after = max(1, math.ceil(suspended[0] - now))
            raise RelaySuspended(
                f"{party}'s messages are not relayed for {retry_after} s more: {suspended[1]}",
                retry_after=retry_after,
                reason="reverted-after-check",
            )

    def suspend(self, party: str, why: str) -> None:
        with self._lock:
            # Expired entries go as new ones come: the map holds at most the parties suspended in one period.
            now = self._clock()
            for expired in [p for p, (until, _) in self._until.items() if until <= now]:
                del self._until[expired]
            self._until[party] = (now + self.seconds, why)


class Relay:
    """A :class:`ledger_service.records.relaying.Relayer` sending through ``ledger``'s sender (the relayer)."""

    def __init__(
        self,
        *,
        db: Database,
        ledger: ConsentLedgerContract,
        domain: Eip712Domain,
        wait_for_twin: float = 120.0,
        explain: Callable[[AccessRequest], str] | None = None,
        catalog: RecordCatalog | None = None,
        suspensions: RevertSuspensions | None = None,
    ) -> None:
        if ledger.sender is None:
            raise ValueError("the relay needs a ledger handle with a sender")
        self.db = db
        self.ledger = ledger
        self.domain = domain
        self.wait_for_twin = wait_for_twin
        self.explain = explain  # a plain-words reason for an access refusal (the consent rule over chain state)
        self.catalog = catalog  # records the versions a node of its own anchors (hub/catalog.py)
        self.suspensions = suspensions if suspensions is not None else RevertSuspensions()
        self._lock = threading.Lock()
        self._in_flight: dict[bytes, threading.Event] = {}

    # ------------------------------------------------------------- checks

    def digest(self, message: SignedMessage) -> bytes:
        return eip712.digest(self.domain, message)

    def signer_of(self, message: SignedMessage, signature: bytes) -> str | None:
        """The ECDSA signer of ``message``, or None (not a 65-byte signature, or no address recovers).

        Pure CPU: the API counts relayed messages per signer with it before relaying."""
        if len(signature) != 65:
            return None
        try:
            return eip712.recover(self.digest(message), signature)
        except ValueError:
            return None

    @staticmethod
    def check_shape(message: SignedMessage, signature: bytes, reason: str | None) -> None:
        """What needs no chain: the validation the contract would do last, done first and explained."""
        if not signature or len(signature) > MAX_SIGNATURE_BYTES:
            raise SignatureError(
                f"a signature is 65 bytes (ECDSA) or an ERC-1271 proof of at most {MAX_SIGNATURE_BYTES} bytes",
                reason="bad-signature",
            )
        if isinstance(message, ConsentGrant):
            message.check()
            if to_checksum_address(message.grantee) == to_checksum_address(message.patient):
                raise ValidationError("a patient cannot grant consent to themselves", field="grantee")
        if isinstance(message, DelegateGrant | DelegateRevoke) and to_checksum_address(
            message.delegate
        ) == to_checksum_address(message.patient):
            raise ValidationError("a patient cannot be their own delegate", field="delegate")
        if isinstance(message, EmergencyAccessRequest):
            if not reason or not reason.strip():
                raise ValidationError("an emergency access needs its reason beside the message", field="reason")
            if bytes(keccak(reason.encode("utf-8"))) != message.reason_hash:
                raise ValidationError("keccak256(reason) is not the message's reasonHash", field="reason")
        elif reason is not None:
            raise ValidationError("only an EmergencyAccessRequest takes a reason", field="reason")

    def simulate(self, message: SignedMessage, signature: bytes) -> None:
        """Run the call with ``eth_call`` from the relayer, gas-bounded; raise its refusal if it would revert.
        A party suspended for an earlier revert (:class:`RevertSuspensions`) is refused before that."""
        self.suspensions.check(party_of(message))
        name = BY_SIG_FUNCTION[type(message).__name__]
        data = self.ledger.encode(name, struct_tuple(message), signature)
        assert self.ledger.sender is not None
        try:
            self.ledger.rpc.call(
                self.ledger.address, data, sender=self.ledger.sender.address, gas=FIXED_GAS.get(name, SIGNED_ACT_GAS)
            )
        except RpcError as exc:
            reverted = reverted_from(exc, self.ledger.codec, name)
            if reverted.error_name is None and exc.revert_data is None:
                raise  # not a revert: the chain is unreachable or refused the call itself
            raise self._refused(message, reverted) from exc

    def _refused(self, message: SignedMessage, exc: TransactionReverted) -> LedgerError:
        error = refusal(message, exc)
        if isinstance(error, ConsentDenied) and isinstance(message, AccessRequest) and self.explain is not None:
            return ConsentDenied(self.explain(message))
        return error

    # ------------------------------------------------------------- relaying

    def relay(
        self,
        message: SignedMessage,
        signature: bytes,
        *,
        reason: str | None = None,
        record: RecordFacts | None = None,
    ) -> RelayOutcome:
        outcome = self._relay(message, signature, reason)
        if self.catalog is not None and isinstance(message, RecordAnchor | RecordAmend):
            self.catalog.record(message, outcome, record)
        return outcome

    def _relay(self, message: SignedMessage, signature: bytes, reason: str | None) -> RelayOutcome:
        self.check_shape(message, signature, reason)
        digest = relayed_key(self.digest(message), signature)
        # An identical message already on its way (a client retrying while the first request waits for
        # confirmations) is not sent twice: wait for the first and answer with its outcome.
        with self._lock:
            running = self._in_flight.get(digest)
            if running is None:
                self._in_flight[digest] = threading.Event()
        if running is not None:
            running.wait(timeout=self.wait_for_twin)
            previous = self._replayed(message, digest)
            if previous is not None:
                return previous
            return self._relay(message, signature, reason)  # the twin failed: judge it afresh
        try:
            # Looked up once, holding the slot: a message relayed before answers as the first time did.
            previous = self._replayed(message, digest)
            if previous is not None:
                return previous
            return self._send(message, signature, digest)
        finally:
            with self._lock:
                self._in_flight.pop(digest).set()

    def _send(self, message: SignedMessage, signature: bytes, digest: bytes) -> RelayOutcome:
        # The contract lets a patient name any grantee; a consent to an account that is not an active provider
        # authorizes nothing, so the relay refuses it as the mistake it is.
        if isinstance(message, ConsentGrant) and not self.ledger.is_active_provider(message.grantee):
            raise ValidationError(f"grantee {message.grantee} is not an active provider", field="grantee")
        try:
            self.simulate(message, signature)
        except SignatureError as exc:
            # Its nonce used: by this very message? Relayed by another replica meanwhile, or sent by a relay that
            # died before it could trace it: an access request's event names its digest, so look on chain too.
            if exc.details.get("reason") == "nonce-used":
                previous = self._replayed(message, digest) or self._logged_access(message)
                if previous is not None:
                    return previous
            raise
        kind = type(message).__name__
        sent: list[str] = []

        def trace(tx_hash: bytes) -> None:
            # Written once the node has the transaction and before its receipt: a retry of a request that
            # died while waiting adopts this transaction instead of judging the message again.
            sent.append("0x" + tx_hash.hex())
            row = {
                "digest": hex32(digest),
                "kind": KINDS[kind],
                "patient": party_of(message),
                "consent_id": None,
                "tx_hash": sent[0],
                "created_at": datetime.now(UTC),
            }
            # One constant upsert (not the ORM's merge, a SELECT and then a write): this runs once per relayed
            # message. An access request's trace skips the fsync (Database.relaxed_engine): one a power cut lost
            # is found on chain by the request's digest (_logged_access).
            engine = self.db.relaxed_engine if isinstance(message, AccessRequest | EmergencyAccessRequest) else None
            with (engine or self.db.engine).begin() as connection:
                connection.execute(self.db.upsert(RelayedMessageRow, "digest"), row)

        try:
            receipt = self.ledger.send_signed(message, signature, on_sent=trace)
        except TransactionReverted as exc:
            if sent:
                self._forget(digest, sent[0])
            previous = self._replayed(message, digest)  # it may have landed through a concurrent twin
            if previous is not None:
                return previous
            if sent:
                self._suspend_if_contract(message, exc)
            raise self._refused(message, exc) from exc
        return self._outcome(message, receipt, replayed=False)

    def _suspend_if_contract(self, message: SignedMessage, exc: TransactionReverted) -> None:
        """A mined revert of a message whose simulation passed: a contract party is suspended, unless another
        message took the nonce meanwhile (a race between relays, which the party does not choose alone)."""
        if exc.error_name == "NonceAlreadyUsed":
            return
        party = party_of(message)
        if self.ledger.rpc.code_at(party):
            self.suspensions.suspend(
                party,
                f"its relayed {type(message).__name__} reverted on chain ({exc.error_name or 'no reason given'}) "
                "after its eth_call check passed: a contract account's signature check answered differently on "
                "chain, and the relayer paid for the reverted transaction",
            )

    # How far back an access request that landed without a trace is looked for: its deadline bounds how late it
    # could land, and nodes sign with a window of minutes (node/signing.py, Deadlines).
    LOGGED_ACCESS_LOOKBACK_BLOCKS: Final = 50_000

    def _logged_access(self, message: SignedMessage) -> RelayOutcome | None:
        """The disclosure this very access request logged, found by its ``requestDigest``; None if none did."""
        if not isinstance(message, AccessRequest | EmergencyAccessRequest):
            return None
        name = "AccessLogged" if isinstance(message, AccessRequest) else "EmergencyAccessLogged"
        codec, rpc = self.ledger.codec, self.ledger.rpc
        latest = rpc.block_number()
        topics = [codec.topic(name), message.record_id, _word(message.patient), _word(message.accessor)]
        logs = rpc.get_logs(self.ledger.address, max(0, latest - self.LOGGED_ACCESS_LOOKBACK_BLOCKS), latest, topics)
        wanted = self.digest(message)
        for log in logs:
            event = self.ledger.decode_log(log)
            if event is not None and bytes(event.args["requestDigest"]) == wanted:
                consent = event.args.get("consentId")
                return RelayOutcome(
                    tx_hash="0x" + event.tx_hash.hex(),
                    block_number=event.block_number,
                    replayed=True,
                    version=int(event.args["version"]),
                    consent_id=hex32(consent) if isinstance(consent, bytes) else None,  # zero: the patient's own
                    log_index=event.log_index,
                )
        return None

    def _replayed(self, message: SignedMessage, digest: bytes) -> RelayOutcome | None:
        """The first relay of this exact message, once its transaction is mined; None if there is none.
        A transaction that failed frees the message."""
        with self.db.engine.connect() as connection:  # on every relay's path: a constant Core read, no session
            row = connection.execute(_RELAYED, {"digest": hex32(digest)}).one_or_none()
        if row is None:
            return None
        tx_hash, kind = row
        try:
            receipt = self.ledger.wait_for(bytes.fromhex(tx_hash[2:]), action=f"relayed {kind}")
        except TransactionReverted:
            self._forget(digest, tx_hash)
            return None
        return self._outcome(message, receipt, replayed=True)

    def _forget(self, digest: bytes, tx_hash: str) -> None:
        with self.db.session() as s:
            row = s.get(RelayedMessageRow, hex32(digest))
            if row is not None and row.tx_hash == tx_hash:
                s.delete(row)

    def _outcome(self, message: SignedMessage, receipt: Receipt, *, replayed: bool) -> RelayOutcome:
        wanted = _EVENTS[type(message).__name__]
        topic = self.ledger.codec.topic(wanted)
        for log in receipt.logs:
            if log["topics"] and log["topics"][0] == topic:
                event = self.ledger.decode_log(log)
                if event is None:
                    continue
                args = event.args
                consent = args.get("consentId")
                record_id = args.get("recordId")
                version = args.get("version")
                return RelayOutcome(
                    tx_hash=receipt.tx_hex,
                    block_number=receipt.block_number,
                    replayed=replayed,
                    record_id=hex32(record_id) if isinstance(record_id, bytes) else None,
                    version=int(version) if version is not None else None,
                    # An AccessLogged's consent; zero for the patient's own PATRQT request, which needs none.
                    consent_id=hex32(consent) if isinstance(consent, bytes) else None,
                    log_index=int(log["logIndex"]),
                )
        raise LookupError(f"{wanted} not emitted in {receipt.tx_hex}")
