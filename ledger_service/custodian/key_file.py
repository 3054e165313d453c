"""The key custodian's development implementation: KEKs in a 0600 key file.

:class:`LocalKeyFile` implements :class:`ledger_service.crypto.custody.KeyCustody` (the seam a
KMS/HSM adapter implements too), which the node and the hub use without knowing this room
(docs/architecture.md).
"""

from __future__ import annotations

import os
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger_service.crypto.custody import WrappedKey
from ledger_service.crypto.envelope import DataKey
from ledger_service.crypto.key_file import SecretKey, SecretKeyFile
from ledger_service.errors import DecryptionError, KeyCustodyError

__all__ = ["LocalKeyFile"]

KEK_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_WRAP_VERSION: Final = b"\x01"
_WRAPPED_SIZE: Final = len(_WRAP_VERSION) + _NONCE_SIZE + 32 + 16
_WRAP_DOMAIN: Final = b"consent-ledger/v1/kek-wrap\x00"


def _wrap_aad(kek_id: str, context: bytes) -> bytes:
    # kek_id is length-prefixed and context comes last, so the encoding is unambiguous.
    encoded_id = kek_id.encode()
    return _WRAP_DOMAIN + struct.pack(">H", len(encoded_id)) + encoded_id + bytes(context)


def _check_context(context: object) -> bytes:
    if not isinstance(context, (bytes, bytearray, memoryview)):
        raise KeyCustodyError("wrap context must be bytes")
    return bytes(context)


def _wrap_with(kek: AESGCM, kek_id: str, data_key: DataKey, context: bytes) -> WrappedKey:
    # Random 96-bit nonces: safe for well under 2**32 wraps per KEK, which rotation keeps us far from.
    nonce = os.urandom(_NONCE_SIZE)
    ciphertext = kek.encrypt(nonce, data_key.to_bytes(), _wrap_aad(kek_id, context))
    return WrappedKey(kek_id=kek_id, ciphertext=_WRAP_VERSION + nonce + ciphertext)


def _unwrap_with(kek: AESGCM, wrapped: WrappedKey, context: bytes) -> DataKey:
    blob = wrapped.ciphertext
    if not isinstance(blob, bytes) or len(blob) != _WRAPPED_SIZE or blob[:1] != _WRAP_VERSION:
        raise DecryptionError("wrapped data key failed authentication", kek_id=wrapped.kek_id)
    nonce, body = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
    try:
        return DataKey(kek.decrypt(nonce, body, _wrap_aad(wrapped.kek_id, context)))
    except InvalidTag:
        raise DecryptionError("wrapped data key failed authentication", kek_id=wrapped.kek_id) from None


class LocalKeyFile(SecretKeyFile):
    """Development custody of KEKs (:class:`ledger_service.crypto.custody.KeyCustody`): AES-256-GCM
    key-encryption keys in a :class:`SecretKeyFile`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._aeads: dict[str, AESGCM] = {}
        super().__init__(path)

    def _loaded(self, keks: dict[str, SecretKey]) -> None:
        self._aeads = {kek_id: AESGCM(kek.key) for kek_id, kek in keks.items()}

    def wrap(self, data_key: DataKey, context: bytes) -> WrappedKey:
        if not isinstance(data_key, DataKey):
            raise KeyCustodyError("data_key must be a DataKey")
        ctx = _check_context(context)
        with self._lock:
            kek_id = self._current
            aead = self._aeads[kek_id]
        return _wrap_with(aead, kek_id, data_key, ctx)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> DataKey:
        if not isinstance(wrapped, WrappedKey):
            raise KeyCustodyError("wrapped must be a WrappedKey")
        ctx = _check_context(context)
        with self._lock:
            aead = self._aeads.get(wrapped.kek_id)
            if aead is None:
                # Another process may have rotated since we loaded; look at the file once more.
                self._reload()
                aead = self._aeads.get(wrapped.kek_id)
        if aead is None:
            raise KeyCustodyError(
                "KEK is not available (unknown or retired)", kek_id=wrapped.kek_id, path=str(self._path)
            )
        return _unwrap_with(aead, wrapped, ctx)
