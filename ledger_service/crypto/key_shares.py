"""Sealed key shares: a record version's data-key share, encrypted to one recipient (docs/architecture.md,
"Key custody").

A share travels sealed twice: from the provider's node to custodian ``i`` (recipient: the custodian's
long-term key) and from custodian ``i`` to the accessor (recipient: the accessor's encryption key on chain).
Both use HPKE (RFC 9180) base mode, single shot: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, empty
AAD. ``info`` binds the chain, the ledger, the record version, the custodian index and the recipient, so a
sealed share opens only as what it was sealed for: moved to another record, version, custodian slot or
recipient it fails. Wire form: ``enc (32) || ciphertext (33 + 16)``, 81 bytes; JSON carries 0x-hex.

The share itself is Shamir's over GF(2^8) (:mod:`ledger_service.crypto.shamir`): 32 bytes of ``y`` then the
one-byte ``x``, which is the custodian's index.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_utils import keccak

from ledger_service.crypto.sealing import PUBLIC_KEY_SIZE, open_sealed, public_key_bytes, seal_to
from ledger_service.errors import DecryptionError, KeyCustodyError

__all__ = [
    "SEALED_SHARE_SIZE",
    "SHARE_DEPOSIT_TYPE",
    "SHARE_SIZE",
    "ShareSlot",
    "deposit_digest",
    "open_share",
    "public_key_bytes",
    "seal_share",
]

SHARE_SIZE: Final = 33
SEALED_SHARE_SIZE: Final = 32 + SHARE_SIZE + 16
_INFO_DOMAIN: Final = b"consent-ledger/v2/key-share\x00"


@dataclass(frozen=True)
class ShareSlot:
    """Which share a sealed share is: custodian ``index``'s share of ``record_id`` at ``version``, on the
    ledger ``ledger`` of chain ``chain_id``."""

    chain_id: int
    ledger: str
    record_id: bytes
    version: int
    index: int

    def __post_init__(self) -> None:
        if len(self.record_id) != 32:
            raise KeyCustodyError("a share's record id must be 32 bytes")
        if not 1 <= self.index <= 255:
            raise KeyCustodyError(f"a custodian index is 1 to 255, got {self.index}")
        if not 0 < self.version < 2**32 or self.chain_id < 0:
            raise KeyCustodyError("a share's version is 1 to 2^32 - 1")

    def info(self, recipient: bytes) -> bytes:
        """HPKE ``info``: domain, chain id (32 bytes), ledger (20), record id (32), version (4), index (1),
        recipient public key (32)."""
        if len(recipient) != PUBLIC_KEY_SIZE:
            raise KeyCustodyError("a recipient key is a 32-byte X25519 public key")
        ledger = bytes.fromhex(self.ledger.removeprefix("0x"))
        if len(ledger) != 20:
            raise KeyCustodyError("the ledger address must be 20 bytes")
        return b"".join(
            (
                _INFO_DOMAIN,
                self.chain_id.to_bytes(32, "big"),
                ledger,
                self.record_id,
                struct.pack(">IB", self.version, self.index),
                recipient,
            )
        )


def seal_share(share: bytes, slot: ShareSlot, recipient: bytes) -> bytes:
    """``share`` sealed to the X25519 public key ``recipient`` (32 raw bytes) as ``slot``."""
    if len(share) != SHARE_SIZE or share[-1] != slot.index:
        raise KeyCustodyError(f"custodian {slot.index}'s share must be {SHARE_SIZE} bytes ending in its index")
    if recipient == bytes(PUBLIC_KEY_SIZE):
        raise KeyCustodyError("the recipient has no encryption key")
    return seal_to(share, recipient, slot.info(recipient))


def open_share(sealed: bytes, slot: ShareSlot, private_key: X25519PrivateKey) -> bytes:
    """The share in ``sealed``, opened with ``private_key`` as ``slot``; :class:`DecryptionError` if it was
    sealed to another key, as another slot, or altered."""
    if len(sealed) != SEALED_SHARE_SIZE:
        raise DecryptionError(f"a sealed share is {SEALED_SHARE_SIZE} bytes, got {len(sealed)}")
    share = open_sealed(
        sealed,
        private_key,
        slot.info(public_key_bytes(private_key)),
        failure="the sealed share does not open with this key for this record version",
    )
    if len(share) != SHARE_SIZE or share[-1] != slot.index:
        raise DecryptionError(f"the sealed share is not custodian {slot.index}'s share")
    return share


# EIP-712 (off chain, in the ledger's domain): the record's author deposits a sealed share with a custodian.
SHARE_DEPOSIT_TYPE: Final = (
    "ShareDeposit(address patient,address author,bytes32 recordId,uint32 version,uint8 custodian,bytes32 sealedShare)"
)
_SHARE_DEPOSIT_TYPE_HASH: Final = bytes(keccak(text=SHARE_DEPOSIT_TYPE))


def deposit_digest(domain_separator: bytes, slot: ShareSlot, *, patient: str, author: str, sealed: bytes) -> bytes:
    """The EIP-712 digest the author signs to deposit ``sealed`` (hashed: ``sealedShare`` is its keccak256)."""

    def address_word(account: str) -> bytes:
        raw = bytes.fromhex(account.removeprefix("0x"))
        if len(raw) != 20:
            raise KeyCustodyError("an address is 20 bytes")
        return bytes(12) + raw

    struct_hash = keccak(
        b"".join(
            (
                _SHARE_DEPOSIT_TYPE_HASH,
                address_word(patient),
                address_word(author),
                slot.record_id,
                slot.version.to_bytes(32, "big"),
                slot.index.to_bytes(32, "big"),
                bytes(keccak(sealed)),
            )
        )
    )
    return bytes(keccak(b"\x19\x01" + domain_separator + bytes(struct_hash)))
