"""Sign-in with Ethereum and bearer tokens.

Nonces are single-use and expire. A nonce is signed, not stored: its expiry and random bytes
under an HMAC, so issuing one writes nothing (anyone may ask for one). A login that uses it
records it in the used-nonce table, which every API replica shares and which keeps only the
nonces not yet expired.
A token is an HMAC-signed claim (address, issued, expiry, id) under a secret in the data
dir; it proves only who the caller is. Roles are read from the chain on each request,
so a role change on chain (a suspension) takes effect at once.

A message's address is an ordinary account (its ECDSA ``personal_sign`` signature is recovered) or a contract
account: one with code answers ERC-1271 ``isValidSignature`` for the message's EIP-191 hash, asked by an
``eth_call`` bounded in gas; one not deployed yet may sign in with an ERC-6492 signature only if it is a passkey
account of this deployment's factory, which the hub deploys first (docs/architecture.md, "Passkey sign-in and
the relay"). Any other signature of an address without code is refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from ledger_service.codec import erc6492
from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.models import AuthNonceRow
from ledger_service.domain import siwe
from ledger_service.errors import ConfigurationError, LedgerError, ValidationError
from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES, personal_message_digest

NONCE_TTL_SECONDS = 600
# expiry (10 hex digits, unix seconds) + 8 random bytes + the first 16 bytes of their HMAC-SHA256:
# 58 alphanumeric characters, as EIP-4361 wants a nonce, within the table's 64.
_SIGNED_NONCE = re.compile(r"([0-9a-f]{10}[0-9a-f]{16})([0-9a-f]{32})")
TOKEN_TTL_SECONDS = 3600


class AuthenticationError(LedgerError):
    """Missing, malformed, forged or expired credentials."""

    code = "unauthorized"


class ContractSigners(Protocol):
    """ERC-1271 of contract accounts (chain/accounts.py, ``ContractSignatures``)."""

    def has_code(self, address: str) -> bool: ...

    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        """Whether ``account`` answers the ERC-1271 magic value, within a bounded gas."""
        ...


class CounterfactualAccounts(Protocol):
    """The deployments ERC-6492 sign-ins may ask for (hub/accounts.py, ``AccountService``)."""

    def deploy_for_sign_in(self, factory: str, calldata: bytes, account: str) -> None:
        """Deploy ``account`` by calling ``factory`` with ``calldata``, if it is one the hub deploys (idempotent);
        ValidationError saying why not otherwise."""
        ...


@dataclass(frozen=True)
class Session:
    address: str
    issued_at: int
    expires_at: int
    token_id: str


def load_or_create_secret(path: Path) -> bytes:
    """The token-signing secret: 32 random bytes in a 0600 file, created on first use.

    Written to a private temp file and published with a hard link, so a process starting at
    the same moment sees either no file or the whole secret, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(f"{path} is accessible by group/others (mode {oct(mode)}); chmod 600 it")
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ConfigurationError(f"{path} holds no usable token secret")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AuthService:
    def __init__(
        self,
        *,
        db: Database,
        secret: bytes,
        chain_id: int,
        clock: Callable[[], float] = time.time,
        token_ttl: int = TOKEN_TTL_SECONDS,
        contracts: ContractSigners | None = None,
        counterfactual: CounterfactualAccounts | None = None,
    ) -> None:
        self.db = db
        self._secret = secret
        self.chain_id = chain_id
        self._clock = clock
        self.token_ttl = token_ttl
        self.contracts = contracts  # None: only ordinary accounts sign in
        self.counterfactual = counterfactual  # None: no account is deployed at sign-in (a node of its own)

    # ------------------------------------------------------------- nonces

    def issue_nonce(self) -> str:
        """A fresh nonce, valid for NONCE_TTL_SECONDS; nothing is stored."""
        body = f"{int(self._clock()) + NONCE_TTL_SECONDS:010x}{secrets.token_hex(8)}"
        return body + self._nonce_mac(body)

    def _nonce_mac(self, body: str) -> str:
        # Its own prefix under the token secret: a nonce's MAC can never pass for a token's.
        return hmac.new(self._secret, b"sign-in nonce " + body.encode(), hashlib.sha256).hexdigest()[:32]

    def _consume_nonce(self, nonce: str) -> None:
        signed = _SIGNED_NONCE.fullmatch(nonce)
        if signed is None or not hmac.compare_digest(self._nonce_mac(signed[1]), signed[2]):
            raise siwe.SiweError("nonce was not issued by this server; request a new one")
        expires = int(signed[1][:10], 16)
        now = int(self._clock())
        if expires < now:
            raise siwe.SiweError("nonce has expired; request a new one")
        try:
            with self.db.session() as s:
                # Expired nonces are refused above, so their rows can go; the margin covers replicas'
                # clocks that differ a little.
                s.execute(delete(AuthNonceRow).where(AuthNonceRow.expires_at < now - NONCE_TTL_SECONDS))
                # The primary key decides: of two logins with the same nonce, one inserts, the other fails.
                s.add(AuthNonceRow(nonce=nonce, expires_at=expires, used=True))
        except DatabaseError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise siwe.SiweError("nonce was already used; request a new one") from None
            raise

    # ------------------------------------------------------------- login

    def login(self, message: str, signature: str, *, origins: Sequence[str]) -> tuple[str, Session]:
        """``origins``: the ones this server is reached at, from its settings (ledger_service/origins.py)."""
        parsed = siwe.parse(message)
        siwe.check(parsed, origins=origins, chain_id=self.chain_id, now=datetime.fromtimestamp(self._clock(), UTC))
        try:
            raw = bytes.fromhex(signature[2:] if signature.startswith("0x") else signature)
        except ValueError as exc:
            raise siwe.SiweError("signature is not hex") from exc
        signer = self._ecdsa_signer(message, raw)
        if signer != parsed.address:
            # Not the address's own key: a contract account's signature, or nobody's.
            self._check_contract_signature(parsed, message, raw, signer)
            return self.issue_token(parsed.address, parsed.expiration_time)
        self._consume_nonce(parsed.nonce)
        return self.issue_token(parsed.address, parsed.expiration_time)

    @staticmethod
    def _ecdsa_signer(message: str, raw: bytes) -> str | None:
        if len(raw) != 65:
            return None
        try:
            return to_checksum_address(Account.recover_message(encode_defunct(text=message), signature=raw))
        except Exception:  # malformed signature bytes
            return None

    def _check_contract_signature(self, parsed: siwe.SiweMessage, message: str, raw: bytes, signer: str | None) -> None:
        """The contract-account paths: ERC-1271 of a deployed account; ERC-6492 of a passkey account of this
        deployment's factory, deployed first. The nonce is spent before any chain work, so a refused attempt
        cannot be replayed to make the hub deploy or ask again."""
        address = parsed.address
        if len(raw) > MAX_SIGNATURE_BYTES + 1024:  # the ERC-6492 wrapper adds the factory call, about 200 bytes
            raise siwe.SiweError(f"signature is longer than a contract account's proof may be ({len(raw)} bytes)")
        wrapped = erc6492.unwrap(raw) if erc6492.is_erc6492(raw) else None
        if erc6492.is_erc6492(raw) and wrapped is None:
            raise siwe.SiweError("signature ends with the ERC-6492 magic but is not abi.encode(factory, calldata, sig)")
        if self.contracts is None:
            raise siwe.SiweError(self._not_signed_by(address, signer))
        deployed = self.contracts.has_code(address)
        if not deployed and wrapped is None:
            raise siwe.SiweError(self._not_signed_by(address, signer))
        self._consume_nonce(parsed.nonce)
        inner = raw
        if wrapped is not None:
            inner = wrapped.signature
            if self.counterfactual is None:
                raise siwe.SiweError("this server deploys no account at sign-in: sign in at the hub")
            try:
                # Deployed or not, the wrapper must name exactly this account's creation by this factory.
                self.counterfactual.deploy_for_sign_in(wrapped.factory, wrapped.factory_calldata, address)
            except ValidationError as exc:
                raise siwe.SiweError(str(exc)) from exc
        if not self.contracts.is_valid_signature(address, personal_message_digest(message), inner):
            raise siwe.SiweError(f"contract account {address} does not accept the signature (ERC-1271)")

    @staticmethod
    def _not_signed_by(address: str, signer: str | None) -> str:
        if signer is None:
            return (
                f"signature is not a personal_sign signature of {address}, which has no code: a contract account "
                "that is not deployed yet signs in with an ERC-6492 signature of this deployment's factory"
            )
        return f"signature is by {signer}, not by {address}"

    # ------------------------------------------------------------- tokens

    def issue_token(self, address: str, not_after: datetime | None = None) -> tuple[str, Session]:
        now = int(self._clock())
        expires = now + self.token_ttl
        if not_after is not None:
            expires = min(expires, int(not_after.timestamp()))
        session = Session(to_checksum_address(address), now, expires, secrets.token_hex(8))
        payload = _b64(
            json.dumps(
                {"sub": session.address, "iat": session.issued_at, "exp": session.expires_at, "jti": session.token_id},
                separators=(",", ":"),
            ).encode()
        )
        mac = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{mac}", session

    def verify_token(self, token: str) -> Session:
        payload, sep, mac = token.partition(".")
        if not sep or not payload or not mac:
            raise AuthenticationError("malformed bearer token")
        expected = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            raise AuthenticationError("bearer token signature is invalid")
        try:
            claims = json.loads(_unb64(payload))
            session = Session(
                to_checksum_address(claims["sub"]), int(claims["iat"]), int(claims["exp"]), str(claims["jti"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthenticationError("malformed bearer token") from exc
        if session.expires_at <= self._clock():
            raise AuthenticationError("bearer token has expired; sign in again")
        return session
