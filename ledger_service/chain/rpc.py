"""JSON-RPC access to the chain over one keep-alive HTTP connection pool.

Requests and batches go straight to the node over a small thread-safe pool of stdlib
``http.client`` keep-alive connections (JSON built and parsed with the stdlib): nothing per call goes
through web3.py's provider and middleware, nor through a general-purpose HTTP client, which cost
several times what the node does. Every library error is translated at this boundary
into the ledger's chain errors. Receipts of in-flight transactions are polled for all waiting threads at
once by one :class:`~ledger_service.chain.receipt_waiter.ReceiptWaiter` per client, in one batched request.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ledger_service.chain.receipt_waiter import ReceiptWaiter
from ledger_service.chain.wire import Receipt, parse_receipt, rpc_error, topic_filter
from ledger_service.codec.primitives import hex_to_bytes, parse_log, to_int
from ledger_service.errors import ChainError, ChainUnavailable


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
        self._waiter: ReceiptWaiter | None = None
        self._lazy_lock = threading.Lock()

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
            raise rpc_error(method, {"message": f"malformed response {str(response)[:80]!r}"})
        error = response.get("error")
        if error:
            raise rpc_error(method, error)
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
            raise rpc_error("batch", error or {})
        by_id = sorted(responses, key=lambda r: int(r.get("id") or 0))
        if len(by_id) != len(calls):
            raise rpc_error("batch", {"message": f"{len(by_id)} responses to {len(calls)} requests"})
        return cast(list[dict[str, Any]], by_id)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of several independent requests in one HTTP round trip, in order."""
        results = []
        for (method, _), response in zip(calls, self.batch_responses(calls), strict=True):
            if response.get("error"):
                raise rpc_error(method, response["error"])
            results.append(response.get("result"))
        return results

    # ------------------------------------------------------------- typed helpers

    def chain_id(self) -> int:
        return to_int(self.request("eth_chainId"))

    def block_number(self) -> int:
        return to_int(self.request("eth_blockNumber"))

    def get_block(self, number: int | str) -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        block = self.request("eth_getBlockByNumber", [tag, False])
        if block is None:
            raise ChainError(f"block {number} not found")
        return cast(dict[str, Any], block)

    def code_at(self, address: str) -> bytes:
        return hex_to_bytes(self.request("eth_getCode", [address, "latest"]))

    def call(
        self, to: str, data: bytes, *, block: int | str = "latest", sender: str | None = None, gas: int | None = None
    ) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        if gas is not None:
            tx["gas"] = hex(gas)
        tag = hex(block) if isinstance(block, int) else block
        return hex_to_bytes(self.request("eth_call", [tx, tag]))

    def get_logs(
        self, address: str | Sequence[str], from_block: int, to_block: int, topics: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"address": address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if topics:
            query["topics"] = [topic_filter(t) for t in topics]
        return [parse_log(raw) for raw in self.request("eth_getLogs", [query])]

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        raw = self.request("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        return None if raw is None else parse_receipt(tx_hash, raw)
