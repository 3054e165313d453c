"""Account addresses in their EIP-55 form, memoized (a ledger has few distinct accounts).

:func:`checksum_address` is EIP-55 over one keccak: the same string ``eth_utils.to_checksum_address`` gives
(tests/unit/codec/test_primitives.py). A value of another shape than ``0x`` + 40 hex digits or 20 raw bytes
goes to eth-utils itself, so what it accepts and the errors it raises stay eth-utils'.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from eth_utils import keccak

_HEX_ADDRESS: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]{40}")


def _eip55(lower: str) -> str:
    nibbles = bytes(keccak(lower.encode("ascii"))).hex()[:40]
    return "0x" + "".join(c.upper() if h >= "8" else c for c, h in zip(lower, nibbles, strict=True))


@lru_cache(maxsize=1 << 16)
def _checksum_text(value: str) -> str:
    if _HEX_ADDRESS.fullmatch(value):
        return _eip55(value[-40:].lower())
    return _reference(value)  # raises: a failed call is not cached


@lru_cache(maxsize=1 << 16)
def _checksum_raw(value: bytes) -> str:
    return _eip55(value.hex())


def _reference(value: object) -> str:
    from eth_utils import to_checksum_address  # other shapes: eth-utils' own acceptance and errors

    return str(to_checksum_address(value))  # type: ignore[type-var]


def checksum_address(value: str | bytes) -> str:
    """The EIP-55 ``0x`` form of an address given as hex text (any case, ``0x`` optional) or 20 bytes."""
    if isinstance(value, str):
        return _checksum_text(value)
    if isinstance(value, bytes) and len(value) == 20:
        return _checksum_raw(value)
    return _reference(value)
