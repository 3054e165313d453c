"""Follows the ledger's events into an :class:`IndexStore` (the metadata DB), ``confirmations`` blocks behind
the head.

The cursor (block number and hash) and the hashes of recently indexed blocks live in the
store, so a restart resumes where it stopped. Before each step the cursor's hash is checked
against the chain: on a mismatch (a reorg) the indexer walks back to the newest block it
still agrees with, deletes everything it indexed above it, and indexes the new branch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger_service.chain.rpc import RpcClient
from ledger_service.codec.abi import ContractCodec, DecodedEvent
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import parse_log, to_int
from ledger_service.errors import ChainError, LedgerError

log = logging.getLogger(__name__)

KEEP_BLOCK_HASHES = 512


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def event_args_json(event: DecodedEvent) -> str:
    return json.dumps({k: _jsonable(v) for k, v in event.args.items()}, sort_keys=True)


@dataclass(frozen=True)
class IndexedEvent:
    """One ledger event as the index keeps it (hashes as ``0x`` hex, arguments as JSON)."""

    name: str
    patient: str | None
    record_id: str | None
    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    args: str


class IndexStore(Protocol):
    """Where the indexer keeps its cursor, the hashes of the blocks it indexed and their events."""

    def cursor(self) -> tuple[int, str] | None:
        """The last indexed block's number and hash; None before the first step."""
        ...

    def indexed_blocks(self, at_or_below: int) -> list[tuple[int, str]]:
        """The kept (number, hash) of indexed blocks up to ``at_or_below``, newest first."""
        ...

    def rewind(self, fork_point: int, fork_hash: str) -> None:
        """Forget every event and block hash above ``fork_point`` and move the cursor there, at once."""
        ...

    def append(
        self, events: Sequence[IndexedEvent], blocks: Mapping[int, str], cursor: tuple[int, str], keep_from: int
    ) -> None:
        """Add one step's events and block hashes, drop the hashes below ``keep_from`` and move the cursor, at
        once."""
        ...


@dataclass(frozen=True)
class IndexStep:
    from_block: int
    to_block: int
    events: int
    rewound_to: int | None = None


class EventIndexer:
    def __init__(
        self,
        rpc: RpcClient,
        store: IndexStore,
        codec: ContractCodec,
        address: str,
        *,
        start_block: int,
        confirmations: int = 0,
        max_range: int = 2_000,
        on_events: Callable[[list[DecodedEvent]], None] | None = None,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.codec = codec
        self._decode = FastLogDecoder(codec, parse_log).decode_log  # codec/logs.py: by slicing
        self.address = address
        self.start_block = start_block
        self.confirmations = confirmations
        self.max_range = max_range
        self.on_events = on_events
        self._lock = threading.Lock()

    # ------------------------------------------------------------- cursor

    def cursor(self) -> tuple[int, str | None]:
        stored = self.store.cursor()
        return (self.start_block - 1, None) if stored is None else stored

    def _block_hash(self, number: int) -> str:
        return str(self.rpc.get_block(number)["hash"])

    def _rewind(self, cursor_number: int) -> int:
        """The newest indexed block still on the canonical chain; drop what is above it."""
        fork_point = self.start_block - 1
        for number, block_hash in self.store.indexed_blocks(at_or_below=cursor_number):
            if self._block_hash(number) == block_hash:
                fork_point = number
                break
        self.store.rewind(fork_point, self._block_hash(fork_point) if fork_point >= 0 else "0x")
        log.warning("chain reorganization: rewound the event index to block %d", fork_point)
        return fork_point

    # ------------------------------------------------------------- stepping

    def step(self) -> IndexStep | None:
        """Index one range of confirmed blocks; None when already at the confirmed head."""
        with self._lock:
            number, block_hash = self.cursor()
            rewound: int | None = None
            if block_hash is not None and number >= 0 and self._block_hash(number) != block_hash:
                number = rewound = self._rewind(number)
            target = self.rpc.block_number() - self.confirmations
            if target <= number:
                return IndexStep(number + 1, number, 0, rewound) if rewound is not None else None
            first, last = number + 1, min(target, number + self.max_range)
            logs = self.rpc.get_logs(self.address, first, last)
            heads = self.rpc.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in sorted({lg["blockNumber"] for lg in logs} | {last})]
            )
            by_number = {to_int(h["number"]): h for h in heads if h is not None}
            # Logs and headers must describe the same branch, else a reorg raced this step.
            for lg in logs:
                header = by_number.get(lg["blockNumber"])
                if header is None or header["hash"] != "0x" + lg["blockHash"].hex():
                    raise ChainError(f"block {lg['blockNumber']} changed while indexing; retrying")
            events = [e for e in (self._decode(lg) for lg in logs) if e is not None]
            self.store.append(
                [
                    IndexedEvent(
                        name=event.name,
                        patient=event.args.get("patient"),
                        record_id=("0x" + event.args["recordId"].hex()) if "recordId" in event.args else None,
                        block_number=event.block_number,
                        block_hash="0x" + event.block_hash.hex(),
                        block_timestamp=to_int(by_number[event.block_number]["timestamp"]),
                        tx_hash="0x" + event.tx_hash.hex(),
                        log_index=event.log_index,
                        args=event_args_json(event),
                    )
                    for event in events
                ],
                {n: header["hash"] for n, header in by_number.items()},
                (last, by_number[last]["hash"]),
                keep_from=last - KEEP_BLOCK_HASHES,
            )
            if events and self.on_events is not None:
                self.on_events(events)
            return IndexStep(first, last, len(events), rewound)

    def catch_up(self, max_steps: int = 10_000) -> int:
        """Index until the confirmed head; returns the number of events indexed."""
        total = 0
        for _ in range(max_steps):
            step = self.step()
            if step is None:
                break
            total += step.events
        return total

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Follow the chain until ``stop`` is set; errors are logged and retried."""
        while not stop.is_set():
            try:
                self.catch_up()
            except LedgerError as exc:
                log.warning("indexer: %s", exc)
            stop.wait(interval)
