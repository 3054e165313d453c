"""The patients' passkey accounts, as the hub serves them (docs/architecture.md, "Passkey accounts").

The hub's relayer creates an account for a passkey's public key (``PatientAccountFactory.createAccount``, which
anyone may call: the address binds the key, and only the key's holder can sign for it) and relays the
account's own signed ``AddPasskey`` / ``RemovePasskey`` messages, which the account alone judges. As in the
relay of the ledger's messages (hub/relay.py), every transaction is first run as an ``eth_call`` bounded by its
fixed gas limit, so what would revert is refused with a clear error and nothing is sent, and an identical
message sent again answers with the first transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from sqlalchemy import select

from ledger_service.chain.accounts import PatientAccounts
from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.db.database import Database
from ledger_service.db.models import RelayedMessageRow
from ledger_service.domain.codes import hex32
from ledger_service.domain.passkeys import AddPasskey, Passkey, PasskeyMessage, account_domain
from ledger_service.errors import (
    AccountNotFound,
    InvalidPasskey,
    LedgerError,
    PasskeyRefused,
    SignatureError,
    TransactionReverted,
    ValidationError,
)
from ledger_service.hub.relay import relayed_key
from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES

T = TypeVar("T")

# The kinds stored with each relayed passkey change (RelayedMessageRow.kind).
KINDS: Final = {"AddPasskey": "passkey-add", "RemovePasskey": "passkey-remove"}

# The account's custom errors that mean "this signed message is not acceptable", as the relay words them.
SIGNATURE_REVERTS: Final = {
    "NonceAlreadyUsed": "nonce-used",
    "SignatureExpired": "deadline-passed",
    "InvalidSignature": "bad-signature",
}
# Its errors about the passkeys' state, with the reason the problem names.
PASSKEY_REVERTS: Final = {
    "PasskeyAlreadyAdded": "already-a-passkey",
    "UnknownPasskey": "not-a-passkey",
    "LastPasskey": "last-passkey",
    "TooManyPasskeys": "too-many-passkeys",
}


@dataclass(frozen=True)
class CreatedAccount:
    address: str
    tx_hash: str | None  # None: the account was there already, nothing was sent


@dataclass(frozen=True)
class AccountView:
    address: str
    deployed: bool
    passkeys: list[Passkey]


def refusal(action: str, exc: TransactionReverted) -> LedgerError:
    """The domain error for a revert of an account or factory call (simulated or mined)."""
    name = exc.error_name or ""
    if name in SIGNATURE_REVERTS:
        return SignatureError(f"the account refused the {action}: {exc}", reason=SIGNATURE_REVERTS[name])
    if name in PASSKEY_REVERTS:
        return PasskeyRefused(f"the account refused the {action}: {exc}", reason=PASSKEY_REVERTS[name])
    if name == "InvalidPasskey":
        return InvalidPasskey(f"the {action} names a key off the P-256 curve: {exc}", field="publicKey")
    return exc


class AccountService:
    """Creation of passkey accounts and the relay of their passkey changes, by ``accounts``' sender."""

    def __init__(self, *, db: Database, accounts: PatientAccounts, chain_id: int, wait_for_twin: float = 120.0) -> None:
        if accounts.sender is None:
            raise ValueError("the account service needs an accounts handle with the relayer's sender")
        self.db = db
        self.accounts = accounts
        self.chain_id = chain_id
        self.wait_for_twin = wait_for_twin
        self._lock = threading.Lock()
        self._in_flight: dict[str, threading.Event] = {}

    @property
    def factory(self) -> str:
        return self.accounts.factory

    @contextmanager
    def _alone(self, key: str) -> Iterator[bool]:
        """One request per key at a time in this process: True for the first; a twin waits for it, then
        gets False and looks at what the first one left (on chain, or in the trace)."""
        with self._lock:
            running = self._in_flight.get(key)
            if running is None:
                self._in_flight[key] = threading.Event()
        if running is not None:
            running.wait(timeout=self.wait_for_twin)
            yield False
            return
        try:
            yield True
        finally:
            with self._lock:
                self._in_flight.pop(key).set()

    def _once(self, key: str, work: Callable[[], T]) -> T:
        while True:
            with self._alone(key) as first:
                if first:
                    return work()

    # ------------------------------------------------------------- accounts

    def create(self, key: Passkey) -> CreatedAccount:
        """The account of ``key``, created by the relayer unless it exists. Idempotent: the factory itself
        returns an existing account without reverting, and a twin request waits for the first."""
        address = self.accounts.account_of(key)

        def create() -> CreatedAccount:
            if self.accounts.has_code(address):
                return CreatedAccount(address, None)
            data = self.accounts.create_call(key)
            factory = self.accounts.factory
            try:
                self.accounts.simulate(factory, "createAccount", data)
                receipt = self.accounts.send(factory, "createAccount", data)
            except TransactionReverted as exc:
                raise refusal("account creation", exc) from exc
            created = self.accounts.created_account(receipt)
            # None: another relayer's createAccount landed first; this one found the account and did nothing.
            return CreatedAccount(address, receipt.tx_hex if created == address else None)

        return self._once(address, create)

    def describe(self, address: str) -> AccountView:
        account = checksum_address(address)
        if self.accounts.first_passkey(account) is None:
            raise AccountNotFound(f"no passkey account of this deployment's factory is deployed at {account}")
        return AccountView(account, True, self.accounts.passkeys(account))

    def deploy_for_sign_in(self, factory: str, calldata: bytes, account: str) -> None:
        """The ERC-6492 deployment a sign-in's signature asks for (hub/auth.py), run only if it is this
        deployment's factory creating exactly the message's account; ValidationError (why) otherwise."""
        if checksum_address(factory) != self.accounts.factory:
            raise ValidationError(
                f"the ERC-6492 signature deploys with {checksum_address(factory)}, not with this deployment's "
                f"PatientAccountFactory {self.accounts.factory}: only its accounts are deployed at sign-in"
            )
        key = self.accounts.created_key(calldata)
        if key is None:
            raise ValidationError("the ERC-6492 signature's factory calldata is not createAccount(qx, qy)")
        key = Passkey.of(key.x, key.y)
        created = self.accounts.account_of(key)
        if created != checksum_address(account):
            raise ValidationError(
                f"the ERC-6492 signature's createAccount makes {created}, not the message's account {account}"
            )
        self.create(key)

    # ------------------------------------------------------------- passkeys

    def change_passkey(self, account: str, message: PasskeyMessage, signature: bytes) -> tuple[str, bool]:
        """Relay the account's signed AddPasskey or RemovePasskey: (transaction hash, whether an identical
        message was relayed before and this answers with its transaction)."""
        account = checksum_address(account)
        kind = type(message).__name__
        action = "new passkey" if isinstance(message, AddPasskey) else "passkey removal"
        Passkey.of(message.qx, message.qy)
        if not signature or len(signature) > MAX_SIGNATURE_BYTES:
            raise SignatureError(
                f"a passkey signature is a WebAuthn assertion of at most {MAX_SIGNATURE_BYTES} bytes",
                reason="bad-signature",
            )
        if self.accounts.first_passkey(account) is None:
            raise AccountNotFound(f"no passkey account of this deployment's factory is deployed at {account}")
        try:
            digest = eip712.digest(account_domain(self.chain_id, account), message)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        key = hex32(relayed_key(digest, signature))

        def send() -> tuple[str, bool]:
            previous = self._replayed(key)
            if previous is not None:
                return previous, True
            name, data = self.accounts.passkey_call(message, signature)
            try:
                self.accounts.simulate(account, name, data)
            except TransactionReverted as exc:
                if exc.error_name == "NonceAlreadyUsed":
                    previous = self._replayed(key)  # relayed by another replica meanwhile
                    if previous is not None:
                        return previous, True
                raise refusal(action, exc) from exc
            sent: list[str] = []

            def trace(tx_hash: bytes) -> None:
                # Before the receipt: a retry after a crash adopts this transaction instead of sending again.
                sent.append("0x" + tx_hash.hex())
                row = {"kind": KINDS[kind], "patient": account, "consent_id": None, "tx_hash": sent[0]}
                with self.db.engine.begin() as connection:
                    connection.execute(
                        self.db.dialect_insert(RelayedMessageRow)
                        .values(digest=key, created_at=datetime.now(UTC), **row)
                        .on_conflict_do_update(index_elements=["digest"], set_=row)
                    )

            try:
                receipt = self.accounts.send(account, name, data, on_sent=trace)
            except TransactionReverted as exc:
                if sent:
                    self._forget(key, sent[0])
                raise refusal(action, exc) from exc
            return receipt.tx_hex, False

        return self._once(key, send)

    def _replayed(self, key: str) -> str | None:
        """The transaction of the first relay of this exact message once mined; None if there is none (a
        transaction that reverted frees the message)."""
        with self.db.session() as s:
            row = s.execute(
                select(RelayedMessageRow.tx_hash, RelayedMessageRow.kind).where(RelayedMessageRow.digest == key)
            ).one_or_none()
        if row is None:
            return None
        tx_hash, kind = row
        try:
            receipt = self.accounts.wait_for(bytes.fromhex(tx_hash[2:]), action=f"relayed {kind}")
        except TransactionReverted:
            self._forget(key, tx_hash)
            return None
        return receipt.tx_hex

    def _forget(self, key: str, tx_hash: str) -> None:
        with self.db.session() as s:
            row = s.get(RelayedMessageRow, key)
            if row is not None and row.tx_hash == tx_hash:
                s.delete(row)
