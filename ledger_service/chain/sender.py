"""Transaction sending: local signing, nonces shared per account, and waiting for receipts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger_service.chain.receipt_waiter import ReceiptWatch
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.wire import Receipt, RpcError
from ledger_service.codec.abi import ContractCodec
from ledger_service.codec.primitives import hex_to_bytes, to_int
from ledger_service.codec.txsign import LegacyTransactionSigner
from ledger_service.errors import ChainError, TransactionReverted, TransactionTimeout


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
        # With a nonce ledger: whether the node's pending count was read since the last clash. The ledger's
        # count covers every process sharing the DB; the node's only matters for sends it never saw (another
        # tool on the account, a reservation lost to a power cut), and such a send shows as a clash.
        self.node_count_read = False
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

    @classmethod
    def forget_node(cls, url: str) -> None:
        """A node this process starts at ``url`` begins its own count: drop the counters kept for an
        earlier node at that URL (they would hand out nonces the new chain only queues, never mines)."""
        with cls._shared_lock:
            for key in [key for key in cls._shared if key[0] == url]:
                del cls._shared[key]

    def take(self) -> int:
        """Caller must hold ``lock`` so nonces reach the node in order."""
        if self._next is None:
            self._next = to_int(self._rpc.request("eth_getTransactionCount", [self._address, "pending"]))
        nonce = self._next
        self._next += 1
        return nonce

    def resync(self) -> None:
        self._next = None
        self.node_count_read = False


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

    @property
    def rpc(self) -> RpcClient:
        return self._rpc

    def _price(self) -> int:
        if self._gas_price is None:
            self._gas_price = to_int(self._rpc.request("eth_gasPrice"))
        return self._gas_price

    def estimate(self, to: str | None, data: bytes, action: str) -> int:
        tx: dict[str, Any] = {"from": self.address, "data": "0x" + data.hex()}
        if to:
            tx["to"] = to
        try:
            return to_int(self._rpc.request("eth_estimateGas", [tx]))
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
                        tx_hash = self._nonce_ledger.allocate(
                            self.address,
                            self._node_pending,
                            lambda nonce: self._send(to, data, gas_limit, nonce),
                        )
                        self._nonces.node_count_read = True
                        return tx_hash
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

    def _node_pending(self) -> int:
        """The node's pending count, once per process and again after each clash (0: trust the ledger's)."""
        if self._nonces.node_count_read:
            return 0
        return to_int(self._rpc.request("eth_getTransactionCount", [self.address, "pending"]))

    def _send(self, to: str | None, data: bytes, gas_limit: int, nonce: int) -> bytes:
        raw = self._signer.sign(
            nonce=nonce,
            gas_price=self._price(),
            gas=gas_limit,
            to=bytes.fromhex(to[2:]) if to else b"",
            value=0,
            data=data,
        )
        return hex_to_bytes(self._rpc.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    def wait(
        self,
        tx_hash: bytes,
        *,
        action: str,
        to: str | None = None,
        data: bytes | None = None,
        watch: ReceiptWatch | None = None,
    ) -> Receipt:
        try:
            return self._wait(tx_hash, action=action, to=to, data=data, watch=watch)
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
                    pending = to_int(self._rpc.request("eth_getTransactionCount", [self.address, "pending"]))
                except ChainError:
                    return  # the next allocation reads the node anyway
                self._nonce_ledger.resync(self.address, pending)

    def _wait(
        self, tx_hash: bytes, *, action: str, to: str | None, data: bytes | None, watch: ReceiptWatch | None = None
    ) -> Receipt:
        deadline = self._clock() + self._receipt_timeout
        waiter = self._rpc.receipts
        watch = watch or waiter.watch(tx_hash)
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
        if on_sent is None:
            return self.wait(tx_hash, action=action, to=to, data=data)
        watch = self._rpc.receipts.watch(tx_hash)  # the receipt is asked for while on_sent writes its trace
        try:
            on_sent(tx_hash)
        except BaseException:
            self._rpc.receipts.forget(tx_hash, watch)
            raise
        return self.wait(tx_hash, action=action, to=to, data=data, watch=watch)

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
