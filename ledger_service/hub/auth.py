"""Sign-in with Ethereum and bearer tokens.

Nonces are single-use and expire. A nonce is signed, not stored: its expiry and random bytes
under an HMAC, so issuing one writes nothing (anyone may ask for one). A login that uses it
records it in the used-nonce table, which every API replica shares and which keeps only the
nonces not yet expired.
A token is an HMAC-signed claim (address, issued, expiry, id) under a secret in the data
dir; it proves only who the caller is. Roles are read from the chain on each request,
so a role change on chain (a suspension) takes effect at once.
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

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.models import AuthNonceRow
from ledger_service.domain import siwe
from ledger_service.errors import ConfigurationError, LedgerError

NONCE_TTL_SECONDS = 600
# expiry (10 hex digits, unix seconds) + 8 random bytes + the first 16 bytes of their HMAC-SHA256:
# 58 alphanumeric characters, as EIP-4361 wants a nonce, within the table's 64.
_SIGNED_NONCE = re.compile(r"([0-9a-f]{10}[0-9a-f]{16})([0-9a-f]{32})")
TOKEN_TTL_SECONDS = 3600


class AuthenticationError(LedgerError):
    """Missing, malformed, forged or expired credentials."""

    code = "unauthorized"


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
    ) -> None:
        self.db = db
        self._secret = secret
        self.chain_id = chain_id
        self._clock = clock
        self.token_ttl = token_ttl

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
            signer = Account.recover_message(encode_defunct(text=message), signature=raw)
        except Exception as exc:  # malformed hex or signature bytes
            raise siwe.SiweError("signature is not a valid personal_sign signature") from exc
        if to_checksum_address(signer) != parsed.address:
            raise siwe.SiweError(f"signature is by {signer}, not by {parsed.address}")
        self._consume_nonce(parsed.nonce)
        return self.issue_token(parsed.address, parsed.expiration_time)

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
