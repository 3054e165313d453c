"""JSON-RPC access to the chain over one keep-alive HTTP connection pool, and transaction sending.

Requests and batches go straight to the node over a small thread-safe pool of stdlib
``http.client`` keep-alive connections (JSON built and parsed with the stdlib): nothing per call goes
through web3.py's provider and middleware, nor through a general-purpose HTTP client, which cost
several times what the node does. ``RpcClient.web3`` is still there, built on first use, for anything
that wants web3.py's conveniences off the hot path. Every library error is translated at this boundary
into the ledger's chain errors. Receipts of in-flight transactions are polled for all waiting threads at
once by one :class:`ReceiptWaiter` per client, in one batched request.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger_service.chain.abi import ContractCodec
from ledger_service.chain.txsign import LegacyTransactionSigner
from ledger_service.errors import ChainError, ChainUnavailable, TransactionReverted, TransactionTimeout

if TYPE_CHECKING:
    from web3 import Web3


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


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_loads = json.loads

# Idle keep-alive connections kept, sized for the API's thread pool (~32 request threads) plus the background
# threads and the receipt waiter; a connection idle longer than the expiry is closed rather than reused.
_MAX_IDLE = 48
_IDLE_EXPIRY = 60.0

# What a reused keep-alive socket the server already closed fails with, before any byte of an answer came:
# reset or broken pipe on send, or end of stream / reset where the status line should be (RemoteDisconnected
# is a ConnectionResetError).
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

_Connection = http.client.HTTPConnection  # HTTPSConnection is a subclass


def _without_secrets(url: str) -> str:
    """The node's URL as errors and logs may show it: scheme, host and port. Hosted nodes carry API keys
    in the user info, the path or the query, so none of those is shown."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host
    secret_bearing = parts.path not in ("", "/") or parts.query or parts.username
    return f"{parts.scheme}://{host}{port}{'/…' if secret_bearing else parts.path}"


@dataclass(frozen=True)
class _Endpoint:
    """Where and how to POST: connection factory arguments, request target and fixed headers."""

    host: str
    port: int | None
    target: str
    headers: dict[str, str]
    tls: ssl.SSLContext | None
    error: str | None  # set for a URL no connection can be made to; raised on use, as httpx did

    @classmethod
    def parse(cls, url: str) -> _Endpoint:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            return cls("", None, "/", headers, None, "InvalidURL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return cls("", None, "/", headers, None, "UnsupportedProtocol")
        if parts.username is not None:  # http://user:pass@host: basic auth, as httpx sent it
            userinfo = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        return cls(parts.hostname, port, target, headers, tls, None)

    def connect(self, timeout: float) -> _Connection:
        """A new, not yet opened connection (it opens on its first request)."""
        if self.tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class RpcClient:
    """Raw JSON-RPC over a pool of keep-alive HTTP connections, safe for concurrent threads."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout
        self._endpoint = _Endpoint.parse(url)
        self._shown = _without_secrets(url)
        # Idle connections, most recently returned last, each with the monotonic time it was returned. ``close``
        # starts a new generation: connections checked out before it are closed, not kept, when they come back.
        self._idle: list[tuple[_Connection, float]] = []
        self._generation = 0
        self._pool_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._web3: Web3 | None = None
        self._waiter: ReceiptWaiter | None = None
        self._lazy_lock = threading.Lock()

    @property
    def web3(self) -> Web3:
        """A web3.py handle on the same node, for non-hot uses (built on first access)."""
        with self._lazy_lock:
            if self._web3 is None:
                from web3 import Web3

                provider = Web3.HTTPProvider(
                    self.url, request_kwargs={"timeout": self._timeout}, exception_retry_configuration=None
                )
                self._web3 = Web3(provider)
            return self._web3

    @property
    def receipts(self) -> ReceiptWaiter:
        """The one receipt waiter shared by every sender on this client."""
        waiter = self._waiter
        if waiter is None:
            with self._lazy_lock:
                if self._waiter is None:
                    self._waiter = ReceiptWaiter(self)
                waiter = self._waiter
        return waiter

    def close(self) -> None:
        """Close the idle connections; those in use now are closed when their request ends. The client stays
        usable (later requests open new connections)."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn, _ in idle:
            conn.close()

    def _checkout(self) -> tuple[_Connection, int]:
        """The most recently used live idle connection, or a new one; with its pool generation."""
        now = time.monotonic()
        expired: list[_Connection] = []
        with self._pool_lock:
            generation = self._generation
            if self._idle:
                conn, since = self._idle.pop()
                if now - since < _IDLE_EXPIRY:
                    return conn, generation
                # The ones below it were returned earlier: expired too.
                expired = [conn, *(entry[0] for entry in self._idle)]
                self._idle.clear()
        for old in expired:
            old.close()
        return self._endpoint.connect(self._timeout), generation

    def _checkin(self, conn: _Connection, generation: int) -> None:
        with self._pool_lock:
            if generation == self._generation and len(self._idle) < _MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def _exchange(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` on a pooled connection: the HTTP status and the whole answer."""
        endpoint = self._endpoint
        if endpoint.error is not None:
            raise http.client.InvalidURL(endpoint.error)
        conn, generation = self._checkout()
        try:
            reused = conn.sock is not None
            try:
                conn.request("POST", endpoint.target, body, endpoint.headers)
                response = conn.getresponse()
            except _STALE:
                # The server may close an idle keep-alive socket at any time; that shows up only now, as a
                # reset or end of stream before any byte of an answer (then the request was never processed),
                # so it is sent once more on a fresh connection. Even if a dying server had processed it, that is
                # safe for the reads, and for eth_sendRawTransaction too (the same signed bytes: same hash, or
                # "already known" / "nonce too low", which the sender handles). Anything else (a timeout, a
                # failure after the answer began, any failure on a fresh connection) is not retried.
                if not reused:
                    raise
                conn.close()  # the next request opens a new socket
                conn.request("POST", endpoint.target, body, endpoint.headers)
                response = conn.getresponse()
            content = response.read()
        except BaseException:
            conn.close()
            raise
        self._checkin(conn, generation)  # a server's "Connection: close" left it closed: it reopens on next use
        return response.status, content

    def _post(self, payload: Any) -> Any:
        try:
            status, content = self._exchange(_dumps(payload).encode())
        except (http.client.HTTPException, OSError) as exc:
            raise ChainUnavailable(f"chain RPC {self._shown} unreachable: {type(exc).__name__}") from exc
        if not 200 <= status < 300:
            raise ChainUnavailable(f"chain RPC {self._shown} unreachable: HTTP status {status}")
        try:
            return _loads(content)
        except ValueError as exc:  # not JSON: whatever answered is not a working node
            raise ChainUnavailable(f"chain RPC {self._shown} answered with invalid JSON") from exc

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        response = self._post({"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)})
        if not isinstance(response, dict):
            raise _rpc_error(method, {"message": f"malformed response {str(response)[:80]!r}"})
        error = response.get("error")
        if error:
            raise _rpc_error(method, error)
        return response.get("result")

    def batch_responses(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """The raw response objects (``result`` or ``error``) of a batch, in the order of ``calls``."""
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "method": method, "params": list(params), "id": index}
            for index, (method, params) in enumerate(calls)
        ]
        responses = self._post(payload)
        if not isinstance(responses, list):
            error = responses.get("error") if isinstance(responses, dict) else None
            raise _rpc_error("batch", error or {})
        by_id = sorted(responses, key=lambda r: int(r.get("id") or 0))
        if len(by_id) != len(calls):
            raise _rpc_error("batch", {"message": f"{len(by_id)} responses to {len(calls)} requests"})
        return cast(list[dict[str, Any]], by_id)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of several independent requests in one HTTP round trip, in order."""
        results = []
        for (method, _), response in zip(calls, self.batch_responses(calls), strict=True):
            if response.get("error"):
                raise _rpc_error(method, response["error"])
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
        return None if raw is None else _receipt(tx_hash, raw)


def _receipt(tx_hash: bytes, raw: dict[str, Any]) -> Receipt:
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


def _rpc_error(method: str, error: Any) -> RpcError:
    if not isinstance(error, dict):
        error = {"message": str(error)}
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


class _Watch:
    """One thread waiting for one transaction's receipt."""

    __slots__ = ("done", "error", "receipt", "since")

    def __init__(self, since: float) -> None:
        self.done = threading.Event()
        self.receipt: Receipt | None = None
        self.error: BaseException | None = None
        self.since = since


class ReceiptWaiter:
    """Polls the receipts of every transaction some thread waits for, all in one batched request.

    One daemon thread per :class:`RpcClient` runs while anything is pending: it asks for all pending
    receipts at once every ``fast_interval`` seconds (``slow_interval`` once the youngest pending
    transaction is older than ``slow_after``, so a slow chain is not hammered), wakes each waiter whose
    receipt arrived, and hands a failed poll's error to the waiters it concerned. It stops after
    ``idle_exit`` seconds with nothing pending and starts again on the next watch.
    """

    def __init__(
        self,
        rpc: RpcClient,
        *,
        fast_interval: float = 0.003,
        slow_interval: float = 0.02,
        slow_after: float = 0.5,
        idle_exit: float = 2.0,
    ) -> None:
        self._rpc = rpc
        self._fast = fast_interval
        self._slow = slow_interval
        self._slow_after = slow_after
        self._idle_exit = idle_exit
        self._condition = threading.Condition()
        self._pending: dict[bytes, list[_Watch]] = {}
        self._thread: threading.Thread | None = None
        self._fresh = False

    def watch(self, tx_hash: bytes) -> _Watch:
        watch = _Watch(time.monotonic())
        with self._condition:
            self._pending.setdefault(tx_hash, []).append(watch)
            self._fresh = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="receipt-waiter", daemon=True)
                self._thread.start()
            self._condition.notify_all()
        return watch

    def forget(self, tx_hash: bytes, watch: _Watch) -> None:
        with self._condition:
            watches = self._pending.get(tx_hash)
            if watches is not None and watch in watches:
                watches.remove(watch)
                if not watches:
                    del self._pending[tx_hash]

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._pending:
                    self._condition.wait_for(lambda: bool(self._pending), timeout=self._idle_exit)
                    if not self._pending:
                        self._thread = None
                        return
                self._fresh = False
                hashes = list(self._pending)
                youngest = max(w.since for watches in self._pending.values() for w in watches)
            outcomes = self._poll(hashes)
            with self._condition:
                for tx_hash, outcome in outcomes.items():
                    for watch in self._pending.pop(tx_hash, []):
                        if isinstance(outcome, Receipt):
                            watch.receipt = outcome
                        else:
                            watch.error = outcome
                        watch.done.set()
                interval = self._fast if time.monotonic() - youngest < self._slow_after else self._slow
                # A newly watched transaction is asked for at once; others wait for the interval.
                if self._pending and not self._fresh:
                    self._condition.wait_for(lambda: self._fresh, timeout=interval)

    def _poll(self, hashes: list[bytes]) -> dict[bytes, Receipt | BaseException]:
        """The receipts that arrived and the errors met, by transaction hash (absent: still pending)."""
        calls = [("eth_getTransactionReceipt", ["0x" + tx_hash.hex()]) for tx_hash in hashes]
        outcomes: dict[bytes, Receipt | BaseException] = {}
        try:
            responses = self._rpc.batch_responses(calls)
            for tx_hash, response in zip(hashes, responses, strict=True):
                if response.get("error"):
                    outcomes[tx_hash] = _rpc_error("eth_getTransactionReceipt", response["error"])
                elif response.get("result") is not None:
                    outcomes[tx_hash] = _receipt(tx_hash, response["result"])
        except Exception as exc:  # a failed poll fails the waits it was for, as a poll in each would have
            return dict.fromkeys(hashes, exc)
        return outcomes


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

    def resync(self, address: str, node_pending: int) -> None:
        """Forget nonces the node no longer knows of (a transaction dropped or reorganized out)."""
        ...


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
        self._signer = LegacyTransactionSigner(bytes(self._account.key), chain_id)
        self._codec = codec
        self._chain_id = chain_id
        self._receipt_timeout = receipt_timeout
        self._confirmations = confirmations
        self._poll = poll_interval
        self._clock = clock
        self._address = to_checksum_address(self._account.address)
        self._nonces = NonceManager.shared(rpc, self._address)
        self._nonce_ledger = nonce_ledger
        self._gas_price: int | None = None

    @property
    def address(self) -> str:
        return self._address

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
        """Send a transaction and return its hash without waiting (pipelined nonces).

        Without ``gas`` the limit comes from ``eth_estimateGas``, which also turns a revert into a
        decoded :class:`TransactionReverted` before anything is sent. With a fixed ``gas`` (for known
        calls whose cost is bounded) nothing is simulated: a reverting call is mined with status 0
        and :meth:`wait` explains it with the same decoded error.
        """
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
        raw = self._signer.sign(
            nonce=nonce,
            gas_price=self._price(),
            gas=gas_limit,
            to=bytes.fromhex(to[2:]) if to else b"",
            value=0,
            data=data,
        )
        return _hex_to_bytes(self._rpc.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    def wait(self, tx_hash: bytes, *, action: str, to: str | None = None, data: bytes | None = None) -> Receipt:
        try:
            return self._wait(tx_hash, action=action, to=to, data=data)
        except TransactionTimeout:
            # The transaction may have been dropped (or reorganized out and dropped): its nonce
            # would stay a gap that blocks every later one, so take the node's count again.
            self._resync_nonces()
            raise

    def _resync_nonces(self) -> None:
        with self._nonces.lock:
            self._nonces.resync()
            if self._nonce_ledger is not None:
                try:
                    pending = _int(self._rpc.request("eth_getTransactionCount", [self.address, "pending"]))
                except ChainError:
                    return  # the next allocation reads the node anyway
                self._nonce_ledger.resync(self.address, pending)

    def _wait(self, tx_hash: bytes, *, action: str, to: str | None, data: bytes | None) -> Receipt:
        deadline = self._clock() + self._receipt_timeout
        waiter = self._rpc.receipts
        watch = waiter.watch(tx_hash)
        try:
            while not watch.done.wait(self._poll):
                if self._clock() > deadline and not watch.done.is_set():
                    raise TransactionTimeout(
                        f"{action}: no receipt for 0x{tx_hash.hex()} after {self._receipt_timeout:.0f}s",
                        tx_hash="0x" + tx_hash.hex(),
                    )
        finally:
            waiter.forget(tx_hash, watch)
        if watch.error is not None:
            raise watch.error
        receipt = watch.receipt
        if receipt is None:  # the waiter sets one of the two before it signals
            raise ChainError(f"{action}: the receipt waiter lost 0x{tx_hash.hex()}")
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

    def transact(
        self,
        to: str | None,
        data: bytes,
        *,
        action: str,
        gas: int | None = None,
        on_sent: Callable[[bytes], None] | None = None,
    ) -> Receipt:
        """Submit and wait; ``on_sent`` gets the hash once the node has the transaction, before the wait
        (for callers that trace it, so that a retry after a crash can adopt it)."""
        tx_hash = self.submit(to, data, action=action, gas=gas)
        if on_sent is not None:
            on_sent(tx_hash)
        return self.wait(tx_hash, action=action, to=to, data=data)

    def _explain_failure(self, receipt: Receipt, action: str, to: str | None, data: bytes | None) -> ChainError:
        """The decoded custom error of a mined, reverted call: replayed by ``eth_call`` on the state before
        its block, then (when an earlier transaction of the same block is what made it fail, e.g. a used
        nonce) on the state after it."""
        if to is not None and data is not None:
            for block in (receipt.block_number - 1, receipt.block_number):
                try:
                    self._rpc.call(to, data, block=block, sender=self.address)
                except RpcError as exc:
                    return reverted_from(exc, self._codec, action)
        return TransactionReverted(f"{action} reverted in tx 0x{receipt.tx_hash.hex()}")
