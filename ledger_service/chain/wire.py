"""The node's JSON-RPC data as the ledger reads it: hex quantities and data, logs, receipts, and errors.

No I/O here: the transport (:mod:`ledger_service.chain.rpc`), the receipt waiter and the sender
all parse the node's answers with these (hex and logs with :mod:`ledger_service.codec.primitives`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger_service.codec.primitives import hex_to_bytes, parse_log, to_int
from ledger_service.errors import ChainError


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    gas_used: int
    status: int
    logs: list[dict[str, Any]]

    @property
    def tx_hex(self) -> str:
        return "0x" + self.tx_hash.hex()


def parse_receipt(tx_hash: bytes, raw: dict[str, Any]) -> Receipt:
    return Receipt(
        tx_hash=tx_hash,
        block_number=to_int(raw["blockNumber"]),
        block_hash=hex_to_bytes(raw["blockHash"]),
        gas_used=to_int(raw["gasUsed"]),
        status=to_int(raw["status"]),
        logs=[parse_log(log) for log in raw["logs"]],
    )


def topic_filter(topic: Any) -> Any:
    """A topic filter position: None (any), one topic, or a list of alternatives."""
    if isinstance(topic, bytes):
        return "0x" + topic.hex()
    if isinstance(topic, list | tuple):
        return [topic_filter(t) for t in topic]
    return topic


class RpcError(ChainError):
    """The node answered with a JSON-RPC error; ``revert_data`` holds revert bytes if any."""

    code = "rpc-error"

    def __init__(self, message: str, *, rpc_code: int | None, revert_data: bytes | None) -> None:
        super().__init__(message, rpc_code=rpc_code)
        self.rpc_code = rpc_code
        self.revert_data = revert_data


def rpc_error(method: str, error: Any) -> RpcError:
    if not isinstance(error, dict):
        error = {"message": str(error)}
    data = error.get("data")
    revert: bytes | None = None
    if isinstance(data, str) and data.startswith("0x"):
        revert = hex_to_bytes(data)
    elif isinstance(data, dict) and isinstance(data.get("data"), str):
        revert = hex_to_bytes(data["data"])
    message = str(error.get("message", "unknown error"))
    return RpcError(f"{method}: {message}", rpc_code=error.get("code"), revert_data=revert)
