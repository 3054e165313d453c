"""The small byte, hex and address helpers every codec module shares, each defined once here.

:func:`checksum_address` is the domain's (ledger_service/domain/addresses.py), re-exported here.
"""

from __future__ import annotations

from typing import Any

from ledger_service.domain.addresses import checksum_address
from ledger_service.domain.codes import ZERO32

__all__ = ["ZERO32", "checksum_address", "hex_to_bytes", "parse_log", "to_int"]


def hex_to_bytes(value: str | None) -> bytes:
    """``0x``-prefixed (or bare) hex as JSON-RPC writes it; empty or None is no bytes."""
    if not value:
        return b""
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def to_int(value: str | int) -> int:
    """A JSON-RPC quantity (``0x`` hex), or an int already."""
    return value if isinstance(value, int) else int(value, 16)


def parse_log(raw: dict[str, Any]) -> dict[str, Any]:
    """A log as ``eth_getLogs`` returns it (hex strings) with bytes and ints, as ``ContractCodec.decode_log``
    reads it."""
    return {
        "address": raw["address"],
        "topics": [hex_to_bytes(t) for t in raw["topics"]],
        "data": hex_to_bytes(raw["data"]),
        "blockNumber": to_int(raw["blockNumber"]),
        "blockHash": hex_to_bytes(raw["blockHash"]),
        "transactionHash": hex_to_bytes(raw["transactionHash"]),
        "logIndex": to_int(raw["logIndex"]),
        "removed": bool(raw.get("removed", False)),
    }
