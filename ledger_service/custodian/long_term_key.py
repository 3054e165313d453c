"""A custodian's long-term X25519 keys (docs/architecture.md, "Key custody").

A provider's node seals each share it deposits to the custodian's current public key; the custodian opens it
once, at deposit, and keeps the share re-wrapped under a per-record key of its own store. So the long-term key
rotates without re-encrypting anything: older keys only open deposits sealed before the rotation, and are
retired once none can still arrive. This is the development implementation (a 0600 key file); a KMS/HSM
adapter offers the same two operations, :attr:`public_key` and :meth:`open_share`.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger_service.crypto.key_shares import ShareSlot, open_share, public_key_bytes
from ledger_service.custodian.key_file import SecretKeyFile, _Kek
from ledger_service.errors import KeyCustodyError

__all__ = ["CustodianKeyFile"]


class CustodianKeyFile(SecretKeyFile):
    """X25519 private keys in a :class:`SecretKeyFile`; the current one's public key is published."""

    file_format = "consent-ledger/custodian-key-file/v1"
    id_prefix = "x25519-"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._private: dict[bytes, X25519PrivateKey] = {}
        self._current_public = b""
        super().__init__(path)

    def _loaded(self, keks: dict[str, _Kek]) -> None:
        self._private = {}
        for kek in keks.values():
            private = X25519PrivateKey.from_private_bytes(kek.key)
            self._private[public_key_bytes(private)] = private

    @property
    def public_key(self) -> bytes:
        """The current 32-byte X25519 public key (``GET /v1/custodian``)."""
        with self._lock:
            return public_key_bytes(X25519PrivateKey.from_private_bytes(self._keks[self._current].key))

    def public_keys(self) -> tuple[bytes, ...]:
        """Every public key a deposit may still be sealed to, oldest first."""
        with self._lock:
            return tuple(self._private)

    def open_share(self, sealed: bytes, slot: ShareSlot, recipient: bytes) -> bytes:
        """Open a share sealed to ``recipient``, one of this custodian's public keys."""
        with self._lock:
            private = self._private.get(recipient)
        if private is None:
            self._reload()  # another process may have rotated
            with self._lock:
                private = self._private.get(recipient)
        if private is None:
            raise KeyCustodyError(f"0x{recipient.hex()} is not a key of this custodian (retired, or another's)")
        return open_share(sealed, slot, private)
