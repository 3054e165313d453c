"""HPKE sealing to one X25519 recipient, the one suite of the service (docs/architecture.md, "Key custody"
and "Record titles"): RFC 9180 base mode, single shot, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
AES-256-GCM, empty AAD. Wire form: ``enc (32) || ciphertext``. Callers bind what the bytes are in ``info``
(a key share's slot, a record label's record version), so sealed bytes moved elsewhere do not open.

The portal opens the same bytes with consent_api/static/js/key_shares.js (vendored hpke-js).
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger_service.errors import DecryptionError, KeyCustodyError

__all__ = [
    "ENC_SIZE",
    "LABEL_INFO_DOMAIN",
    "PUBLIC_KEY_SIZE",
    "TAG_SIZE",
    "label_info",
    "open_sealed",
    "public_key_bytes",
    "seal_to",
]

PUBLIC_KEY_SIZE: Final = 32
ENC_SIZE: Final = 32
TAG_SIZE: Final = 16
SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
LABEL_INFO_DOMAIN: Final = b"consent-ledger/v2/record-label\x00"


def public_key_bytes(key: X25519PublicKey | X25519PrivateKey) -> bytes:
    """The raw 32-byte X25519 public key (what the chain's ``encryptionKeyOf`` holds)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal_to(plaintext: bytes, recipient: bytes, info: bytes) -> bytes:
    """``plaintext`` sealed to the raw X25519 public key ``recipient`` under ``info``."""
    if recipient == bytes(PUBLIC_KEY_SIZE):
        raise KeyCustodyError("the recipient has no encryption key")
    if len(recipient) != PUBLIC_KEY_SIZE:
        raise KeyCustodyError("a recipient key is a 32-byte X25519 public key")
    try:
        public = X25519PublicKey.from_public_bytes(recipient)
    except ValueError:
        raise KeyCustodyError("the recipient's encryption key is not an X25519 public key") from None
    return SUITE.encrypt(plaintext, public, info=info)


def open_sealed(
    sealed: bytes,
    private_key: X25519PrivateKey,
    info: bytes,
    *,
    failure: str = "the sealed bytes do not open with this key for this record version",
) -> bytes:
    """The plaintext of ``sealed``; :class:`DecryptionError` with ``failure`` (which never holds the bytes)
    if it was sealed to another key, under another ``info``, or altered."""
    if len(sealed) < ENC_SIZE + TAG_SIZE:
        raise DecryptionError(failure)
    try:
        return SUITE.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionError(failure) from None


def label_info(*, chain_id: int, ledger: str, record_id: bytes, version: int, recipient: bytes) -> bytes:
    """HPKE ``info`` of a sealed record label: domain, chain id (32 bytes), ledger (20), record id (32),
    version (4), recipient public key (32)."""
    raw_ledger = bytes.fromhex(ledger.removeprefix("0x"))
    if len(raw_ledger) != 20 or len(record_id) != 32 or len(recipient) != PUBLIC_KEY_SIZE:
        raise KeyCustodyError("a label's ledger, record id or recipient has the wrong size")
    if not 0 < version < 2**32 or chain_id < 0:
        raise KeyCustodyError("a label's version is 1 to 2^32 - 1")
    return b"".join(
        (LABEL_INFO_DOMAIN, chain_id.to_bytes(32, "big"), raw_ledger, record_id, struct.pack(">I", version), recipient)
    )
