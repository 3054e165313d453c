"""EIP-712 digests and signer recovery for the ledger's signed message types, without eth-account.

Every field of every message is a static type or ``bytes`` (hashed to one word), so
``hashStruct(m) = keccak(typeHash || one 32-byte word per field)``; the type hashes come from the type
strings in :mod:`ledger_service.domain.consent` and the domain separator is computed once per domain.
This replaces eth-account's generic ``encode_typed_data`` + ``Account.recover_message`` (about a quarter
of a millisecond of CPU a message) with the same bytes (tests/unit/codec/test_eip712.py):

* :func:`digest` is ``keccak(0x1901 || domainSeparator || hashStruct(message))``, exactly the hash
  eth-account signs. A message or domain outside the plain shape (an address that is not ``0x`` + 40
  hex digits, a ``bytes32`` that is not exactly 32 bytes, an integer that is not a plain ``int`` in its
  type's range, ...) goes through eth-account itself, so its result or error is eth-account's.
* :func:`recover` accepts and refuses exactly the signatures ``Account.recover_message`` does (with the
  coincurve backend eth-keys uses here): ``v`` in {0, 1, 27, 28} or 35 and above (EIP-155 style, its
  parity), ``r`` and ``s`` in ``[1, n)``, high ``s`` included (recovery does not enforce low s).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from functools import lru_cache
from typing import Final, get_args

from coincurve import PublicKey
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.consent import (
    EIP712_DOMAIN_TYPE,
    EIP712_TYPES,
    Eip712Domain,
    SignedMessage,
    address_bytes,
    field_attribute,
    type_string,
    typed_data,
)
from ledger_service.domain.passkeys import PASSKEY_TYPES, PasskeyMessage

SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# One field's 32-byte word, or None when the value is not in the plain shape (left to eth-account).
_Encoder = Callable[[object], bytes | None]
_PAD12: Final = b"\x00" * 12


def _address(value: object) -> bytes | None:
    raw = address_bytes(value)
    return None if raw is None else _PAD12 + raw


def _bytes32(value: object) -> bytes | None:
    return value if type(value) is bytes and len(value) == 32 else None


def _bytes(value: object) -> bytes | None:
    """EIP-712 ``bytes``: the keccak256 of the value (a binary CID in the record messages)."""
    return bytes(keccak(value)) if type(value) is bytes else None


def _string(value: object) -> bytes | None:
    if type(value) is not str:
        return None
    try:
        return bytes(keccak(value.encode("utf-8")))
    except UnicodeEncodeError:
        return None


def _uint(bits: int) -> _Encoder:
    limit = 1 << bits

    def encode(value: object) -> bytes | None:
        return value.to_bytes(32, "big") if type(value) is int and 0 <= value < limit else None

    return encode


def _encoder(solidity_type: str) -> _Encoder:
    if solidity_type == "address":
        return _address
    if solidity_type == "bytes32":
        return _bytes32
    if solidity_type == "string":
        return _string
    if solidity_type == "bytes":
        return _bytes
    bits = re.fullmatch(r"uint(\d+)", solidity_type)
    if bits is not None and 8 <= int(bits[1]) <= 256 and int(bits[1]) % 8 == 0:
        return _uint(int(bits[1]))
    raise NotImplementedError(f"EIP-712 field type {solidity_type!r} is not supported by the fast encoder")


def _layout(cls: type, members: list[dict[str, str]]) -> tuple[tuple[str, _Encoder], ...]:
    """(attribute, encoder) per EIP-712 field, in the type's field order."""
    attributes = {f.name for f in fields(cls)}
    layout = []
    for member in members:
        attribute = field_attribute(member["name"])
        if attribute not in attributes:
            raise RuntimeError(f"{cls.__name__} has no attribute {attribute!r} for EIP-712 field {member['name']!r}")
        layout.append((attribute, _encoder(member["type"])))
    return tuple(layout)


def _type_hash(primary: str, members: list[dict[str, str]]) -> bytes:
    encoded = ",".join(f"{m['type']} {m['name']}" for m in members)
    return bytes(keccak(text=f"{primary}({encoded})"))


_MESSAGE_CLASSES: Final = {cls.__name__: cls for cls in get_args(SignedMessage)}
if set(_MESSAGE_CLASSES) != set(EIP712_TYPES):
    raise RuntimeError("SignedMessage and EIP712_TYPES name different message types")

# type(message) -> (typeHash, field layout)
_STRUCTS: Final[dict[type, tuple[bytes, tuple[tuple[str, _Encoder], ...]]]] = {
    cls: (bytes(keccak(text=type_string(name))), _layout(cls, EIP712_TYPES[name]))
    for name, cls in _MESSAGE_CLASSES.items()
} | {
    # A passkey account's own messages (its domain: ledger_service.domain.passkeys.account_domain).
    cls: (_type_hash(cls.__name__, PASSKEY_TYPES[cls.__name__]), _layout(cls, PASSKEY_TYPES[cls.__name__]))
    for cls in get_args(PasskeyMessage)
}
_DOMAIN_TYPE_HASH: Final = _type_hash("EIP712Domain", EIP712_DOMAIN_TYPE)
_DOMAIN_LAYOUT: Final = _layout(Eip712Domain, EIP712_DOMAIN_TYPE)


def _hash_struct(type_hash: bytes, layout: tuple[tuple[str, _Encoder], ...], value: object) -> bytes | None:
    words = [type_hash]
    for attribute, encode in layout:
        word = encode(getattr(value, attribute))
        if word is None:
            return None
        words.append(word)
    return bytes(keccak(b"".join(words)))


@lru_cache(maxsize=64)
def _cached_separator(domain: Eip712Domain) -> bytes | None:
    return _hash_struct(_DOMAIN_TYPE_HASH, _DOMAIN_LAYOUT, domain)


def domain_separator(domain: Eip712Domain) -> bytes | None:
    """``hashStruct(domain)``, cached per domain; None if the domain is not in the plain shape."""
    # Only plain int/str fields reach the cache, so equal keys (1 == True) cannot share an entry.
    if type(domain.chain_id) is not int or type(domain.name) is not str or type(domain.version) is not str:
        return None
    if type(domain.verifying_contract) is not str:
        return None
    return _cached_separator(domain)


def eth_account_digest(domain: Eip712Domain, message: SignedMessage | PasskeyMessage) -> bytes:
    """The digest as eth-account computes it (the slow path, and the reference the tests compare with)."""
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def digest(domain: Eip712Domain, message: SignedMessage | PasskeyMessage) -> bytes:
    """The 32-byte EIP-712 digest ``keccak(0x1901 || domainSeparator || hashStruct(message))``."""
    struct = _STRUCTS.get(type(message))
    separator = domain_separator(domain)
    if struct is not None and separator is not None:
        message_hash = _hash_struct(struct[0], struct[1], message)
        if message_hash is not None:
            return bytes(keccak(b"\x19\x01" + separator + message_hash))
    return eth_account_digest(domain, message)


def _recovery_id(v: int) -> int:
    """eth-account's ``to_standard_v``: 0/1, 27/28, or an EIP-155 ``v`` (35 and above) by its parity."""
    if v in (0, 1):
        return v
    if v in (27, 28):
        return v - 27
    if v >= 35:
        return (v - 35) % 2
    raise ValueError(f"v {v} is invalid, must be one of: 0, 1, 27, 28, 35+")


def recover(message_digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``message_digest`` with ``signature`` (65 bytes: r || s || v).

    Raises ValueError for every signature ``Account.recover_message`` refuses.
    """
    if len(message_digest) != 32:
        raise ValueError("the message digest must be 32 bytes")
    signature = bytes(signature)
    if len(signature) != 65:
        raise ValueError("a signature is 65 bytes (r, s, v)")
    recovery_id = _recovery_id(signature[64])
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise ValueError("signature r and s must be in [1, n)")
    public_key = PublicKey.from_signature_and_message(
        signature[:64] + bytes((recovery_id,)), message_digest, hasher=None
    )
    return checksum_address(bytes(keccak(public_key.format(compressed=False)[1:]))[12:])
