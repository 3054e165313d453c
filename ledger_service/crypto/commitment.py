"""Salted plaintext commitment anchored on chain.

The chain proves which plaintext a record version had without revealing it: a reader of
the chain sees only ``sha256(domain || salt || plaintext)``. The random salt stops
dictionary attacks on low-entropy plaintext (e.g. a short lab result); it is stored
off-chain in the node's DB and destroyed on erasure, after which the on-chain
commitment is unlinkable to any guessed plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Final

from ledger_service.errors import CryptoError

__all__ = ["COMMITMENT_DOMAIN", "SALT_SIZE", "PlaintextCommitment", "new_salt", "verify_commitment"]

COMMITMENT_DOMAIN: Final = b"consent-ledger/commitment/v1"
SALT_SIZE: Final = 32
DIGEST_SIZE: Final = 32


def new_salt() -> bytes:
    """32 random bytes from the OS CSPRNG."""
    return os.urandom(SALT_SIZE)


class PlaintextCommitment:
    """Incremental ``sha256(COMMITMENT_DOMAIN || salt || plaintext)`` so large records stream through."""

    __slots__ = ("_hash",)

    def __init__(self, salt: bytes) -> None:
        if not isinstance(salt, (bytes, bytearray, memoryview)) or len(salt) != SALT_SIZE:
            raise CryptoError(f"commitment salt must be {SALT_SIZE} bytes")
        self._hash = hashlib.sha256(COMMITMENT_DOMAIN)
        self._hash.update(salt)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def digest(self) -> bytes:
        """The 32-byte commitment so far; may be called repeatedly."""
        return self._hash.digest()

    def __repr__(self) -> str:
        return "PlaintextCommitment(<in progress>)"


def verify_commitment(salt: bytes, chunks: Iterable[bytes], expected: bytes) -> bool:
    """Whether ``chunks`` (the plaintext) match ``expected``; constant-time comparison."""
    hasher = PlaintextCommitment(salt)
    for chunk in chunks:
        hasher.update(chunk)
    return hmac.compare_digest(hasher.digest(), bytes(expected))
