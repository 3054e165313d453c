"""ERC-6492 signatures: a contract account's signature made before the account is deployed.

The wrapper is ``abi.encode(address factory, bytes factoryCalldata, bytes signature)`` followed by the 32-byte
magic ``0x6492…6492``: calling ``factory`` with ``factoryCalldata`` deploys the account, which then answers
ERC-1271 for ``signature``. Pure: this module only recognizes and decodes the wrapper; which factories and
calldata a verifier runs is its own policy (ledger_service/hub/auth.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError

from ledger_service.codec.primitives import checksum_address

ERC6492_MAGIC: Final = bytes.fromhex("6492" * 16)
_TYPES: Final = ("address", "bytes", "bytes")


@dataclass(frozen=True)
class Erc6492Signature:
    factory: str
    factory_calldata: bytes
    signature: bytes


def is_erc6492(signature: bytes) -> bool:
    """Whether ``signature`` ends with the ERC-6492 magic (the only way the standard marks a wrapper)."""
    return len(signature) > len(ERC6492_MAGIC) and signature.endswith(ERC6492_MAGIC)


def unwrap(signature: bytes) -> Erc6492Signature | None:
    """The wrapper's three parts, or None if ``signature`` is not a well-formed ERC-6492 wrapper: the magic is
    missing, or what precedes it is not exactly the canonical ``abi.encode`` of (address, bytes, bytes)."""
    if not is_erc6492(signature):
        return None
    body = signature[: -len(ERC6492_MAGIC)]
    try:
        factory, calldata, inner = abi_decode(_TYPES, body, strict=True)
    except (DecodingError, ValueError, OverflowError):
        return None
    wrapped = Erc6492Signature(checksum_address(factory), bytes(calldata), bytes(inner))
    # One encoding only: trailing bytes or odd offsets would make two byte strings of one signature.
    if wrap(wrapped) != signature:
        return None
    return wrapped


def wrap(signature: Erc6492Signature) -> bytes:
    """The ERC-6492 bytes of a counterfactual signature."""
    return abi_encode(_TYPES, (signature.factory, signature.factory_calldata, signature.signature)) + ERC6492_MAGIC
