"""The node's signing seam: its provider's keys sign EIP-712 digests, nothing else (docs/architecture.md).

A provider's anchors, amendments and access requests are messages signed with the provider's own key and
relayed by anyone: the key never signs a transaction and never leaves the node. :class:`DigestSigner` is the
seam: :class:`LocalKeySigner` holds a key in memory (dev, or a key file the operator mounts); a KMS/HSM
adapter implements the same ``sign_digest`` (docs/operations.md, "Provider keys"). The nonces of those
messages are allocated through the node's DB (:class:`MessageNonces`), so replicas of one node never sign
two messages with one nonce.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

from coincurve import PrivateKey
from eth_utils import keccak

from ledger_service.codec.primitives import checksum_address
from ledger_service.db.nonces import DbNonceLedger
from ledger_service.errors import ConfigurationError, PermissionDenied, SignatureError

T = TypeVar("T")


class DigestSigner(Protocol):
    """Signs 32-byte digests for one account; returns 65 bytes ``r || s || v`` with ``v`` in {27, 28}, low s."""

    @property
    def address(self) -> str: ...

    def sign_digest(self, digest: bytes) -> bytes: ...


class LocalKeySigner:
    """A :class:`DigestSigner` over a secp256k1 key held in this process."""

    def __init__(self, private_key: str | bytes) -> None:
        raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
        if len(raw) != 32:
            raise ConfigurationError("a provider key is 32 bytes (64 hexadecimal digits)")
        try:
            self._key = PrivateKey(raw)
        except ValueError as exc:
            raise ConfigurationError("a provider key is not a valid secp256k1 key") from exc
        public = self._key.public_key.format(compressed=False)[1:]
        self._address = checksum_address(bytes(keccak(public))[12:])

    @property
    def address(self) -> str:
        return self._address

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        signature = self._key.sign_recoverable(digest, hasher=None)  # r || s || recovery id; s is low
        return signature[:64] + bytes((27 + signature[64],))

    def __repr__(self) -> str:  # never the key
        return f"LocalKeySigner({self._address})"


class ProviderKeys:
    """The provider accounts this node signs for."""

    def __init__(self, signers: Iterable[DigestSigner]) -> None:
        self._signers = {checksum_address(s.address): s for s in signers}

    @classmethod
    def from_private_keys(cls, keys: Iterable[str]) -> ProviderKeys:
        return cls(LocalKeySigner(k) for k in keys)

    @property
    def accounts(self) -> list[str]:
        return sorted(self._signers)

    def holds(self, account: str) -> bool:
        return checksum_address(account) in self._signers

    def signer_for(self, provider: str) -> DigestSigner:
        signer = self._signers.get(checksum_address(provider))
        if signer is None:
            raise PermissionDenied(f"this node holds no signing key for provider {provider}", account=provider)
        return signer


# Message nonces share the transaction nonces' table under a key of their own: "m" + the address's 40 hex digits.
_MESSAGE_KEY: Final = "m"


class MessageNonces:
    """Unused message nonces of the node's signers, allocated through the DB shared by the node's processes.

    The first allocation for a signer starts above every nonce it used on chain (``fresh_nonce``), so a node
    restored on a new DB does not reuse nonces its signer already spent; after that, allocation needs no chain.
    A nonce whose message is refused stays unused on chain (nonces are unordered: a gap costs nothing).
    """

    def __init__(self, ledger: DbNonceLedger, fresh_nonce: Callable[[str], int]) -> None:
        self._ledger = ledger
        self._fresh_nonce = fresh_nonce
        self._floors: dict[str, int] = {}
        self._lock = threading.Lock()

    def allocate(self, signer: str, *, resync: bool = False) -> int:
        """A nonce of ``signer`` no message of this node used. ``resync`` after the ledger refused one as used
        (another node signed for the same account): start again above every nonce used on chain."""
        signer = checksum_address(signer)
        with self._lock:
            floor = None if resync else self._floors.get(signer)
        if floor is None:
            floor = self._fresh_nonce(signer)
            with self._lock:
                self._floors[signer] = floor
        key = _MESSAGE_KEY + signer[2:].lower()
        chosen = floor
        return self._ledger.allocate(key, lambda: chosen, lambda nonce: nonce)


def worth_signing_again(exc: BaseException) -> bool:
    """Whether the ledger refused a signed message for what signing it again fixes: its nonce was used already
    (another node signed for the same account), or its deadline passed (the chain's clock jumped ahead)."""
    return isinstance(exc, SignatureError) and exc.details.get("reason") in ("nonce-used", "deadline-passed")


def relayed_signing_again_once(relay_signed: Callable[[bool], T]) -> T:
    """``relay_signed(resync)`` signs a message with a nonce allocated with that ``resync`` and relays it: called
    again once with ``resync=True`` when the ledger refused it for what signing it again fixes."""
    try:
        return relay_signed(False)
    except Exception as exc:
        if not worth_signing_again(exc):
            raise
    return relay_signed(True)


class Deadlines:
    """Signature deadlines in chain time: now on chain plus ``window`` seconds (15 minutes: long enough for a
    slow chain, short enough that a version left pending by a crash is discarded soon after its anchor can no
    longer land, see ``UploadService.recover_pending``).

    The chain's clock may run ahead of this machine's (a dev chain moved by ``evm_increaseTime``), so the
    offset is read from the latest block and refreshed every ``refresh`` seconds, not per message."""

    def __init__(self, chain_time: Callable[[], int], *, window: int = 900, refresh: float = 30.0) -> None:
        self._chain_time = chain_time
        self.window = window
        self._refresh = refresh
        self._offset: float | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def next(self, *, fresh: bool = False) -> int:
        """A deadline ``window`` seconds ahead of the chain; ``fresh`` reads the chain's clock first."""
        now = time.time()
        with self._lock:
            stale = fresh or self._offset is None or time.monotonic() - self._read_at > self._refresh
        if stale:
            offset = max(0.0, self._chain_time() - now)
            with self._lock:
                self._offset, self._read_at = offset, time.monotonic()
        assert self._offset is not None
        return int(now + self._offset) + self.window
