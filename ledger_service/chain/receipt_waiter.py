"""One poller for the receipts every thread of a process waits for, in one batched request per round."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ledger_service.chain.wire import Receipt, parse_receipt, rpc_error


class BatchRpc(Protocol):
    """What the waiter needs of the RPC client."""

    def batch_responses(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]: ...


class ReceiptWatch:
    """One thread waiting for one transaction's receipt."""

    __slots__ = ("done", "error", "receipt", "since")

    def __init__(self, since: float) -> None:
        self.done = threading.Event()
        self.receipt: Receipt | None = None
        self.error: BaseException | None = None
        self.since = since


class ReceiptWaiter:
    """Polls the receipts of every transaction some thread waits for, all in one batched request.

    One daemon thread per RPC client runs while anything is pending: it asks for all pending
    receipts at once every ``fast_interval`` seconds (``slow_interval`` once the youngest pending
    transaction is older than ``slow_after``, so a slow chain is not hammered), wakes each waiter whose
    receipt arrived, and hands a failed poll's error to the waiters it concerned. It stops after
    ``idle_exit`` seconds with nothing pending and starts again on the next watch.
    """

    def __init__(
        self,
        rpc: BatchRpc,
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
        self._pending: dict[bytes, list[ReceiptWatch]] = {}
        self._thread: threading.Thread | None = None
        self._fresh = False

    def watch(self, tx_hash: bytes) -> ReceiptWatch:
        watch = ReceiptWatch(time.monotonic())
        with self._condition:
            self._pending.setdefault(tx_hash, []).append(watch)
            self._fresh = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="receipt-waiter", daemon=True)
                self._thread.start()
            self._condition.notify_all()
        return watch

    def forget(self, tx_hash: bytes, watch: ReceiptWatch) -> None:
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
                    outcomes[tx_hash] = rpc_error("eth_getTransactionReceipt", response["error"])
                elif response.get("result") is not None:
                    outcomes[tx_hash] = parse_receipt(tx_hash, response["result"])
        except Exception as exc:  # a failed poll fails the waits it was for, as a poll in each would have
            return dict.fromkeys(hashes, exc)
        return outcomes
