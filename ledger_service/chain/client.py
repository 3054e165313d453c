"""JSON-RPC access to the chain through web3.py's HTTP provider, and transaction sending.

Raw ``make_request``/``make_batch_request`` on a keep-alive session, beneath web3.py's
contract layer (which costs more than the node does). Every library error is translated
at this boundary into the ledger's chain errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import RPCEndpoint

from ledger_service.chain.abi import ContractCodec
from ledger_service.errors import ChainError, ChainUnavailable, TransactionReverted, TransactionTimeout


def _hex_to_bytes(value: str | None) -> bytes:
    if not value:
        return b""
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _int(value: str | int) -> int:
    return value if isinstance(value, int) else int(value, 16)


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


def _parse_log(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": raw["address"],
        "topics": [_hex_to_bytes(t) for t in raw["topics"]],
        "data": _hex_to_bytes(raw["data"]),
        "blockNumber": _int(raw["blockNumber"]),
        "blockHash": _hex_to_bytes(raw["blockHash"]),
        "transactionHash": _hex_to_bytes(raw["transactionHash"]),
        "logIndex": _int(raw["logIndex"]),
        "removed": bool(raw.get("removed", False)),
    }


class RpcClient:
    """Raw JSON-RPC over one keep-alive HTTP session."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._provider = Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.web3 = Web3(self._provider)

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        try:
            response = self._provider.make_request(RPCEndpoint(method), list(params))
        except (requests.RequestException, OSError) as exc:
            raise ChainUnavailable(f"chain RPC {self.url} unreachable: {type(exc).__name__}") from exc
        error = response.get("error")
        if error:
            raise _rpc_error(method, cast(dict[str, Any], error))
        return response.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of several independent requests in one HTTP round trip, in order."""
        if not calls:
            return []
        try:
            responses = self._provider.make_batch_request([(RPCEndpoint(m), list(p)) for m, p in calls])
        except (requests.RequestException, OSError) as exc:
            raise ChainUnavailable(f"chain RPC {self.url} unreachable: {type(exc).__name__}") from exc
        if not isinstance(responses, list):
            raise _rpc_error("batch", cast(dict[str, Any], responses.get("error") or {}))
        by_id = sorted(responses, key=lambda r: int(r.get("id") or 0))
        results = []
        for (method, _), response in zip(calls, by_id, strict=True):
            if response.get("error"):
                raise _rpc_error(method, cast(dict[str, Any], response["error"]))
            results.append(response.get("result"))
        return results

    # ------------------------------------------------------------- typed helpers

    def chain_id(self) -> int:
        return _int(self.request("eth_chainId"))

    def block_number(self) -> int:
        return _int(self.request("eth_blockNumber"))

    def get_block(self, number: int | str) -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        block = self.request("eth_getBlockByNumber", [tag, False])
        if block is None:
            raise ChainError(f"block {number} not found")
        return cast(dict[str, Any], block)

    def code_at(self, address: str) -> bytes:
        return _hex_to_bytes(self.request("eth_getCode", [address, "latest"]))

    def call(self, to: str, data: bytes, *, block: int | str = "latest", sender: str | None = None) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        tag = hex(block) if isinstance(block, int) else block
        return _hex_to_bytes(self.request("eth_call", [tx, tag]))

    def get_logs(
        self, address: str | Sequence[str], from_block: int, to_block: int, topics: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"address": address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if topics:
            query["topics"] = [_topic_filter(t) for t in topics]
        return [_parse_log(raw) for raw in self.request("eth_getLogs", [query])]

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        raw = self.request("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if raw is None:
            return None
        return Receipt(
            tx_hash=tx_hash,
            block_number=_int(raw["blockNumber"]),
            block_hash=_hex_to_bytes(raw["blockHash"]),
            gas_used=_int(raw["gasUsed"]),
            status=_int(raw["status"]),
            logs=[_parse_log(log) for log in raw["logs"]],
        )


def _topic_filter(topic: Any) -> Any:
    """A topic filter position: None (any), one topic, or a list of alternatives."""
    if isinstance(topic, bytes):
        return "0x" + topic.hex()
    if isinstance(topic, list | tuple):
        return [_topic_filter(t) for t in topic]
    return topic


class RpcError(ChainError):
    """The node answered with a JSON-RPC error; ``revert_data`` holds revert bytes if any."""

    code = "rpc-error"

    def __init__(self, message: str, *, rpc_code: int | None, revert_data: bytes | None) -> None:
        super().__init__(message, rpc_code=rpc_code)
        self.rpc_code = rpc_code
        self.revert_data = revert_data


def _rpc_error(method: str, error: dict[str, Any]) -> RpcError:
    data = error.get("data")
    revert: bytes | None = None
    if isinstance(data, str) and data.startswith("0x"):
        revert = _hex_to_bytes(data)
    elif isinstance(data, dict) and isinstance(data.get("data"), str):
        revert = _hex_to_bytes(data["data"])
    message = str(error.get("message", "unknown error"))
    return RpcError(f"{method}: {message}", rpc_code=error.get("code"), revert_data=revert)


def reverted_from(exc: RpcError, codec: ContractCodec, action: str) -> TransactionReverted:
    """A domain revert with the decoded custom error, e.g. ``AccessNotAuthorized(...)``."""
    decoded = codec.decode_error(exc.revert_data or b"")
    if decoded is None:
        return TransactionReverted(f"{action} reverted: {exc.message}")
    name, args = decoded
    rendered = ", ".join(("0x" + a.hex()) if isinstance(a, bytes) else str(a) for a in args)
    return TransactionReverted(f"{action} reverted with {name}({rendered})", error_name=name, args=args)


_NONCE_RETRIES = 5


def _is_nonce_clash(exc: RpcError) -> bool:
    text = exc.message.lower()
    # geth/anvil and Besu word these differently.
    markers = (
        "nonce too low",
        "already known",
        "known transaction",
        "replacement transaction underpriced",
        "transaction already imported",
    )
    return any(marker in text for marker in markers)


class NonceManager:
    """Hands out consecutive nonces for one sender, safe under concurrent threads.

    The counter starts from the node's pending count; after any failed submission it is
    re-read, since the node is the authority on what it has accepted.
    """

    _shared: ClassVar[dict[tuple[str, str], NonceManager]] = {}
    _shared_lock = threading.Lock()

    def __init__(self, rpc: RpcClient, address: str) -> None:
        self._rpc = rpc
        self._address = address
        self._next: int | None = None
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, rpc: RpcClient, address: str) -> NonceManager:
        """One manager per (node, account) in this process, however many senders use it."""
        key = (rpc.url, to_checksum_address(address))
        with cls._shared_lock:
            manager = cls._shared.get(key)
            if manager is None:
                manager = cls._shared[key] = cls(rpc, key[1])
            return manager

    def take(self) -> int:
        """Caller must hold ``lock`` so nonces reach the node in order."""
        if self._next is None:
            self._next = _int(self._rpc.request("eth_getTransactionCount", [self._address, "pending"]))
        nonce = self._next
        self._next += 1
        return nonce

    def resync(self) -> None:
        self._next = None


T = TypeVar("T")


class NonceLedger(Protocol):
    """Allocates an account's nonces across processes (API replicas, the CLI beside a server).

    ``allocate`` serialises senders of one account, picks ``max(recorded next, node's pending
    count)``, calls ``send(nonce)`` and records ``nonce + 1`` only if the send succeeded.
    """

    def allocate(self, address: str, node_pending: Callable[[], int], send: Callable[[int], T]) -> T: ...


class TransactionSender:
    """Signs locally, submits, and waits for a receipt (with confirmations) or a timeout."""

    def __init__(
        self,
        rpc: RpcClient,
        private_key: str,
        codec: ContractCodec,
        *,
        chain_id: int,
        receipt_timeout: float = 60.0,
        confirmations: int = 0,
        poll_interval: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        nonce_ledger: NonceLedger | None = None,
    ) -> None:
        self._rpc = rpc
        self._account: LocalAccount = Account.from_key(private_key)
        self._codec = codec
        self._chain_id = chain_id
        self._receipt_timeout = receipt_timeout
        self._confirmations = confirmations
        self._poll = poll_interval
        self._clock = clock
        self._nonces = NonceManager.shared(rpc, self._account.address)
        self._nonce_ledger = nonce_ledger
        self._gas_price: int | None = None

    @property
    def address(self) -> str:
        return to_checksum_address(self._account.address)

    def _price(self) -> int:
        if self._gas_price is None:
            self._gas_price = _int(self._rpc.request("eth_gasPrice"))
        return self._gas_price

    def estimate(self, to: str | None, data: bytes, action: str) -> int:
        tx: dict[str, Any] = {"from": self.address, "data": "0x" + data.hex()}
        if to:
            tx["to"] = to
        try:
            return _int(self._rpc.request("eth_estimateGas", [tx]))
        except RpcError as exc:
            raise reverted_from(exc, self._codec, action) from exc

    def submit(self, to: str | None, data: bytes, *, action: str, gas: int | None = None) -> bytes:
        """Send a transaction and return its hash without waiting (pipelined nonces)."""
        gas_limit = gas if gas is not None else self.estimate(to, data, action) * 12 // 10 + 10_000
        with self._nonces.lock:
            for attempt in range(_NONCE_RETRIES):
                try:
                    if self._nonce_ledger is not None:
                        return self._nonce_ledger.allocate(
                            self.address,
                            lambda: _int(self._rpc.request("eth_getTransactionCount", [self.address, "pending"])),
                            lambda nonce: self._send(to, data, gas_limit, nonce),
                        )
                    return self._send(to, data, gas_limit, self._nonces.take())
                except RpcError as exc:
                    self._nonces.resync()
                    if exc.revert_data is not None:
                        raise reverted_from(exc, self._codec, action) from exc
                    # Another process used this account meanwhile: take a fresh nonce and retry.
                    if _is_nonce_clash(exc) and attempt + 1 < _NONCE_RETRIES:
                        continue
                    raise
                except ChainError:
                    self._nonces.resync()
                    raise
        raise ChainError(f"{action}: could not obtain a usable nonce")

    def _send(self, to: str | None, data: bytes, gas_limit: int, nonce: int) -> bytes:
        tx: dict[str, Any] = {
            "nonce": nonce,
            "gas": gas_limit,
            "gasPrice": self._price(),
            "data": data,
            "chainId": self._chain_id,
            "value": 0,
        }
        if to:
            tx["to"] = to_checksum_address(to)
        signed = self._account.sign_transaction(tx)
        return _hex_to_bytes(self._rpc.request("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]))

    def wait(self, tx_hash: bytes, *, action: str, to: str | None = None, data: bytes | None = None) -> Receipt:
        deadline = self._clock() + self._receipt_timeout
        receipt = None
        while receipt is None:
            receipt = self._rpc.receipt(tx_hash)
            if receipt is not None:
                break
            if self._clock() > deadline:
                raise TransactionTimeout(
                    f"{action}: no receipt for 0x{tx_hash.hex()} after {self._receipt_timeout:.0f}s",
                    tx_hash="0x" + tx_hash.hex(),
                )
            time.sleep(self._poll)
        if receipt.status != 1:
            raise self._explain_failure(receipt, action, to, data)
        if self._confirmations > 0:
            target = receipt.block_number + self._confirmations
            while self._rpc.block_number() < target:
                if self._clock() > deadline:
                    raise TransactionTimeout(f"{action}: 0x{tx_hash.hex()} not confirmed in time")
                time.sleep(self._poll * 5)
            # The receipt must still be there after the confirmations (no reorg dropped it).
            final = self._rpc.receipt(tx_hash)
            if final is None or final.block_hash != receipt.block_hash:
                raise TransactionTimeout(f"{action}: 0x{tx_hash.hex()} was reorganized out; resubmit")
            receipt = final
        return receipt

    def transact(self, to: str | None, data: bytes, *, action: str, gas: int | None = None) -> Receipt:
        tx_hash = self.submit(to, data, action=action, gas=gas)
        return self.wait(tx_hash, action=action, to=to, data=data)

    def _explain_failure(self, receipt: Receipt, action: str, to: str | None, data: bytes | None) -> ChainError:
        if to is not None and data is not None:
            try:
                self._rpc.call(to, data, block=receipt.block_number - 1, sender=self.address)
            except RpcError as exc:
                return reverted_from(exc, self._codec, action)
        return TransactionReverted(f"{action} reverted in tx 0x{receipt.tx_hash.hex()}")
