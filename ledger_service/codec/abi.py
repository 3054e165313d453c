"""Encode calls and decode results, custom errors and events straight from the ABI.

web3.py's contract layer costs milliseconds per call; eth_abi on precomputed selectors
costs microseconds. This codec is all the service needs of an ABI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from ledger_service.codec.primitives import checksum_address


def _canonical_type(param: Mapping[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _split_tuple(abi_type: str) -> list[str]:
    """``(address,(uint8,bool),bytes32)`` -> ``["address", "(uint8,bool)", "bytes32"]``."""
    inner, parts, depth, start = abi_type[1:-1], [], 0, 0
    for i, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    if inner:
        parts.append(inner[start:])
    return parts


def _normalize(value: Any, abi_type: str) -> Any:
    """eth_abi returns lowercase addresses, also inside tuples; checksum them."""
    if abi_type == "address" and isinstance(value, str):
        return checksum_address(value)
    if abi_type.startswith("(") and abi_type.endswith(")") and isinstance(value, tuple):
        return tuple(_normalize(v, t) for v, t in zip(value, _split_tuple(abi_type), strict=True))
    return value


@dataclass(frozen=True)
class AbiFunction:
    name: str
    selector: bytes
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]


@dataclass(frozen=True)
class AbiError:
    name: str
    selector: bytes
    input_names: tuple[str, ...]
    input_types: tuple[str, ...]


@dataclass(frozen=True)
class AbiEvent:
    name: str
    topic0: bytes
    indexed: tuple[tuple[str, str], ...]  # (name, type) of indexed params, in order
    data: tuple[tuple[str, str], ...]  # (name, type) of non-indexed params, in order


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    address: str

    @classmethod
    def of_log(cls, name: str, args: dict[str, Any], log: Mapping[str, Any]) -> DecodedEvent:
        """The event ``name`` with ``args``, located where the parsed ``log`` (bytes fields) stands."""
        return cls(
            name=name,
            args=args,
            block_number=int(log["blockNumber"]),
            block_hash=bytes(log["blockHash"]),
            tx_hash=bytes(log["transactionHash"]),
            log_index=int(log["logIndex"]),
            address=checksum_address(log["address"]),
        )


# Solidity's built-in revert types.
_ERROR_STRING = keccak(b"Error(string)")[:4]
_PANIC = keccak(b"Panic(uint256)")[:4]


class ContractCodec:
    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self.functions: dict[str, AbiFunction] = {}
        self.errors: dict[bytes, AbiError] = {}
        self.events: dict[bytes, AbiEvent] = {}
        self.events_by_name: dict[str, AbiEvent] = {}
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                inputs = tuple(_canonical_type(p) for p in item["inputs"])
                signature = f"{item['name']}({','.join(inputs)})"
                fn = AbiFunction(
                    item["name"],
                    keccak(signature.encode())[:4],
                    inputs,
                    tuple(_canonical_type(p) for p in item.get("outputs", [])),
                )
                # Overloads are not used by the ledger; the first definition wins.
                self.functions.setdefault(item["name"], fn)
            elif kind == "error":
                inputs = tuple(_canonical_type(p) for p in item["inputs"])
                selector = keccak(f"{item['name']}({','.join(inputs)})".encode())[:4]
                self.errors[selector] = AbiError(
                    item["name"], selector, tuple(p["name"] for p in item["inputs"]), inputs
                )
            elif kind == "event":
                inputs = item["inputs"]
                types = ",".join(_canonical_type(p) for p in inputs)
                event = AbiEvent(
                    item["name"],
                    keccak(f"{item['name']}({types})".encode()),
                    tuple((p["name"], _canonical_type(p)) for p in inputs if p["indexed"]),
                    tuple((p["name"], _canonical_type(p)) for p in inputs if not p["indexed"]),
                )
                self.events[event.topic0] = event
                self.events_by_name[event.name] = event

    # ------------------------------------------------------------- calls

    def encode_call(self, name: str, *args: Any) -> bytes:
        fn = self.functions[name]
        return fn.selector + abi_encode(list(fn.input_types), list(args))

    def decode_result(self, name: str, data: bytes) -> tuple[Any, ...]:
        fn = self.functions[name]
        values = abi_decode(list(fn.output_types), data)
        return tuple(_normalize(v, t) for v, t in zip(values, fn.output_types, strict=True))

    # ------------------------------------------------------------- errors

    def decode_error(self, data: bytes) -> tuple[str, tuple[Any, ...]] | None:
        """``(ErrorName, args)`` for revert data, or None when it is not recognizable."""
        if len(data) < 4:
            return None
        selector, payload = data[:4], data[4:]
        try:
            if selector == _ERROR_STRING:
                return "Error", tuple(abi_decode(["string"], payload))
            if selector == _PANIC:
                return "Panic", tuple(abi_decode(["uint256"], payload))
            error = self.errors.get(selector)
            if error is None:
                return None
            values = abi_decode(list(error.input_types), payload)
        except Exception:
            return None
        return error.name, tuple(_normalize(v, t) for v, t in zip(values, error.input_types, strict=True))

    # ------------------------------------------------------------- events

    def topic(self, event_name: str) -> bytes:
        return self.events_by_name[event_name].topic0

    def decode_log(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        topics = [bytes(t) for t in log["topics"]]
        if not topics:
            return None
        event = self.events.get(topics[0])
        if event is None:
            return None
        args: dict[str, Any] = {}
        for (name, abi_type), topic in zip(event.indexed, topics[1:], strict=True):
            # Indexed dynamic types are hashed into the topic; the ledger only indexes static types.
            args[name] = _normalize(abi_decode([abi_type], topic)[0], abi_type)
        values = abi_decode([t for _, t in event.data], bytes(log["data"]))
        for (name, abi_type), value in zip(event.data, values, strict=True):
            args[name] = _normalize(value, abi_type)
        return DecodedEvent.of_log(event.name, args, log)
