"""Whose signature a signed message carries, by the ledger's own rules (docs/architecture.md, "Signed acts").

The contract accepts a signature for a party if it is a 65-byte ECDSA signature of that party (OpenZeppelin's
``ECDSA.tryRecover``: ``v`` 27 or 28, ``s`` in the lower half of the curve order), or, when the party is a
contract, if the party's ``isValidSignature(digest, signature)`` (ERC-1271) answers its magic value. The
hub checks the signed request of a batched disclosure by these rules before it appends the entry; the auditor
and a receipt's holder check them again. Everything here is pure: the ERC-1271 call is built and its answer
read here, the caller runs it (``eth_call`` at the block in question, gas-bounded).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from coincurve import PublicKey
from eth_utils import keccak

from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.consent import (
    AccessRequest,
    EmergencyAccessRequest,
    EncryptionKey,
    RecordAmend,
    RecordAnchor,
    SignedMessage,
)

SECP256K1_HALF_N: Final = eip712.SECP256K1_N // 2
# bytes4(keccak256("isValidSignature(bytes32,bytes)")), both the selector and the answer that means "valid".
ERC1271_MAGIC: Final = bytes.fromhex("1626ba7e")
# The gas an ERC-1271 check may use: a contract account cannot make a check (the hub's, the auditor's) costly.
# Room for a passkey account's heaviest signature, by the last of its 8 passkeys after the 7 others were tried:
# 228,728 as an isValidSignature transaction (docs/architecture.md, "Passkey accounts").
ERC1271_GAS: Final = 400_000
# An ERC-1271 proof may be longer than ECDSA's 65 bytes (a multisig's), but not without bound.
MAX_SIGNATURE_BYTES: Final = 4096


def ecdsa_signer(digest: bytes, signature: bytes) -> str | None:
    """The checksummed address whose key made ``signature`` over ``digest``, or None if the contract's ECDSA
    check would refuse it (not 65 bytes, ``v`` not 27/28, ``r`` zero, ``s`` zero or in the upper half)."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if len(digest) != 32 or not (0 < r < eip712.SECP256K1_N and 0 < s <= SECP256K1_HALF_N):
        return None
    # eip712.recover's steps, with the public key -> address step memoized: an audit recovers the same few
    # signers' keys over and over (tests/unit/audit/test_verifier_signers.py compares the two).
    try:
        public = PublicKey.from_signature_and_message(
            signature[:64] + bytes((signature[64] - 27,)), digest, hasher=None
        )
    except ValueError:  # no point on the curve for this r
        return None
    return _address_of(public.format(compressed=False)[1:])


@lru_cache(maxsize=1 << 12)
def _address_of(public_key: bytes) -> str:
    return checksum_address(bytes(keccak(public_key))[12:])


def personal_message_digest(text: str) -> bytes:
    """EIP-191 version ``0x45`` (``personal_sign``): ``keccak256("\\x19Ethereum Signed Message:\\n" || len || text)``,
    the hash a sign-in message's signer signs; a contract account's ERC-1271 answer is asked for this hash."""
    data = text.encode("utf-8")
    return bytes(keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data))


def erc1271_call(digest: bytes, signature: bytes) -> bytes:
    """The calldata of ``isValidSignature(bytes32 digest, bytes signature)``."""
    padded = signature + b"\x00" * (-len(signature) % 32)
    return b"".join((ERC1271_MAGIC, digest, (64).to_bytes(32, "big"), len(signature).to_bytes(32, "big"), padded))


def erc1271_accepted(result: bytes) -> bool:
    """Whether ``isValidSignature`` returned the magic value, as OpenZeppelin's ``SignatureChecker`` reads it:
    at least one word, the first ``bytes32(0x1626ba7e)``."""
    return len(result) >= 32 and result[:32] == ERC1271_MAGIC + b"\x00" * 28


def signing_party(message: SignedMessage) -> str:
    """The account whose signature a message needs (for a patient's messages a live delegate may sign
    instead, by ECDSA only; the contract account that may answer ERC-1271 is always this one)."""
    if isinstance(message, RecordAnchor | RecordAmend):
        return checksum_address(message.author)
    if isinstance(message, AccessRequest | EmergencyAccessRequest):
        return checksum_address(message.accessor)
    if isinstance(message, EncryptionKey):
        return checksum_address(message.account)
    return checksum_address(message.patient)
