"""What the auditor reads from a node: the material the pure checks are then run over (I/O lives here).

:mod:`ledger_service.audit.verifier` and :mod:`ledger_service.transparency.receipts` judge plain data
only; this module fetches it with an :class:`~ledger_service.chain.rpc.RpcClient`. :func:`fetch_trail`
needs only a JSON-RPC URL (an auditor's own node), the ledger's address and the block to start from (its
deployment block, or 0). It reads every event of the contract with batched ``eth_getLogs`` over block
ranges, the timestamps of the blocks they are in with batched ``eth_getBlockByNumber``, and decodes them
into a :class:`~ledger_service.audit.trail.Trail`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ledger_service.audit.trail import TRAIL_EVENTS, Progress, Trail, build_trail, no_progress
from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.codec.abi import ContractCodec
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import checksum_address, hex_to_bytes, parse_log
from ledger_service.errors import AuditError, ChainError
from ledger_service.transparency.receipts import (
    DisclosureReceipt,
    ReceiptError,
    check_anchor,
    check_receipt,
    parse_receipt,
)

LOG_RANGE: Final = 5_000  # blocks per eth_getLogs request
RPC_BATCH: Final = 50  # requests per JSON-RPC batch

T = TypeVar("T")


def verify_receipt(receipt_json: Any, rpc: RpcClient, *, codec: ContractCodec | None = None) -> DisclosureReceipt:
    """Check a receipt against the chain alone; returns it parsed, or raises :class:`ReceiptError`."""
    receipt = parse_receipt(receipt_json)
    check_receipt(receipt)
    chain_id = rpc.chain_id()
    if chain_id != receipt.chain_id:
        raise ReceiptError(f"the node is on chain {chain_id}; the receipt is for chain {receipt.chain_id}")
    tx = rpc.receipt(receipt.anchor.tx_hash)
    if tx is None:
        raise ReceiptError(f"anchoring tx 0x{receipt.anchor.tx_hash.hex()} is not on this chain")
    if tx.status != 1:
        raise ReceiptError(f"anchoring tx 0x{receipt.anchor.tx_hash.hex()} reverted")
    canonical = rpc.get_block(tx.block_number)
    if canonical.get("hash") != "0x" + tx.block_hash.hex():
        raise ReceiptError(f"anchoring block {tx.block_number} is no longer canonical")
    check_anchor(receipt, tx.logs, codec or ledger_codec())
    return receipt


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_logs(
    rpc: RpcClient,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    log_range: int = LOG_RANGE,
    progress: Progress = no_progress,
) -> list[dict[str, Any]]:
    """Every log of ``contract`` in ``[from_block, to_block]``, by batched ranged ``eth_getLogs``."""
    return [
        parse_log(raw)
        for raw in fetch_raw_logs(rpc, contract, from_block, to_block, log_range=log_range, progress=progress)
    ]


def fetch_raw_logs(
    rpc: RpcClient,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    log_range: int = LOG_RANGE,
    progress: Progress = no_progress,
    topic_filters: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """:func:`fetch_logs` as the node returns them (hex strings), removed logs left out; with
    ``topic_filters``, the logs matching any of them (one ``eth_getLogs`` per filter and range)."""
    ranges = [(start, min(start + log_range - 1, to_block)) for start in range(from_block, to_block + 1, log_range)]
    filters: list[list[Any] | None] = [list(t) for t in topic_filters] if topic_filters else [None]
    queries = [
        {"address": contract, "fromBlock": hex(lo), "toBlock": hex(hi), **({"topics": t} if t else {})}
        for lo, hi in ranges
        for t in filters
    ]
    logs: list[dict[str, Any]] = []
    done = 0
    for group in _chunks(queries, RPC_BATCH):
        for result in rpc.batch([("eth_getLogs", [query]) for query in group]):
            logs.extend(raw for raw in result or [] if not raw.get("removed"))
        done += len(group)
        progress("reading events", done, len(queries))
    return logs


def patient_topic_filters(patient: str, codec: ContractCodec | None = None) -> list[list[Any]]:
    """``eth_getLogs`` topic filters that select one patient's events and every global one.

    Every event about a patient's records, consents and disclosures indexes the patient (second
    topic, or first for delegations); the rest (roles, providers, categories, batch anchors) is the
    same for every patient and small. Together they are all a patient-scoped verification needs.
    """
    return [*_own_topic_filters(patient, codec or ledger_codec()), _shared_topic_filter(codec or ledger_codec())]


def _own_topic_filters(patient: str, codec: ContractCodec) -> list[list[Any]]:
    padded = "0x" + bytes(12).hex() + checksum_address(patient)[2:].lower()
    second = [_topic_hex(codec, name) for name in _PATIENT_SECOND_TOPIC]
    first = [_topic_hex(codec, name) for name in _PATIENT_FIRST_TOPIC]
    return [[second, None, padded], [first, padded]]


def _shared_topic_filter(codec: ContractCodec) -> list[Any]:
    per_patient = (*_PATIENT_SECOND_TOPIC, *_PATIENT_FIRST_TOPIC)
    return [[_topic_hex(codec, name) for name in TRAIL_EVENTS if name not in per_patient]]


_PATIENT_SECOND_TOPIC: Final = (
    "RecordAnchored",
    "RecordErased",
    "ConsentGranted",
    "ConsentRevoked",
    "AccessLogged",
    "EmergencyAccessLogged",
)
_PATIENT_FIRST_TOPIC: Final = ("DelegateGranted", "DelegateRevoked")


def _topic_hex(codec: ContractCodec, name: str) -> str:
    return "0x" + codec.topic(name).hex()


@dataclass
class _PatientLogs:
    from_block: int
    to_block: int
    to_block_hash: str
    logs: list[dict[str, Any]]


class PatientLogCache:
    """The raw logs of recently audited patients, so that auditing a patient again reads only the
    blocks added since (a node without log indexes, such as anvil, scans every block of the range).

    The global events (roles, providers, categories, batch anchors) are kept once, not per patient.
    An entry is trusted only while the block it ends at keeps its hash: every block links to its
    parent's hash, so an unchanged last block means no block up to it changed. Otherwise the entry
    is read again from the start. Bounded: the least recently audited patients are forgotten.
    """

    def __init__(self, max_patients: int = 1024) -> None:
        self._entries: OrderedDict[tuple[str, str], _PatientLogs] = OrderedDict()
        self._max = max_patients
        self._lock = threading.Lock()

    def logs(
        self,
        rpc: RpcClient,
        contract: str,
        patient: str,
        from_block: int,
        to_block: int,
        codec: ContractCodec,
        progress: Progress = no_progress,
    ) -> list[dict[str, Any]]:
        """The patient's own logs and the global ones in ``[from_block, to_block]``, in no set order."""
        end = str(rpc.get_block(to_block)["hash"])
        own, shared = _own_topic_filters(patient, codec), [_shared_topic_filter(codec)]
        logs = self._read((contract, patient), rpc, from_block, to_block, end, own, progress)
        return logs + self._read((contract, ""), rpc, from_block, to_block, end, shared, progress)

    def _read(
        self,
        key: tuple[str, str],
        rpc: RpcClient,
        from_block: int,
        to_block: int,
        to_block_hash: str,
        filters: Sequence[Sequence[Any]],
        progress: Progress,
    ) -> list[dict[str, Any]]:
        with self._lock:
            entry = self._entries.get(key)
        start, known = from_block, []
        if entry is not None and entry.from_block == from_block and entry.to_block <= to_block:
            if entry.to_block == to_block:
                unchanged = entry.to_block_hash == to_block_hash
            else:
                try:
                    unchanged = rpc.get_block(entry.to_block).get("hash") == entry.to_block_hash
                except ChainError:  # the block is gone (a reorganization to a shorter chain)
                    unchanged = False
            if unchanged:
                start, known = entry.to_block + 1, entry.logs
        new = (
            fetch_raw_logs(rpc, key[0], start, to_block, progress=progress, topic_filters=filters)
            if start <= to_block
            else []
        )
        logs = known + new
        with self._lock:
            self._entries[key] = _PatientLogs(from_block, to_block, to_block_hash, logs)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max + 1:  # the patients, and the shared entry
                oldest = next(k for k in self._entries if k[1])
                del self._entries[oldest]
        return logs


def fetch_block_headers(
    rpc: RpcClient, blocks: Iterable[int], *, progress: Progress = no_progress
) -> dict[int, tuple[int, bytes]]:
    """``block -> (timestamp, hash)`` by batched ``eth_getBlockByNumber``."""
    wanted = sorted(set(blocks))
    headers: dict[int, tuple[int, bytes]] = {}
    for group in _chunks(wanted, RPC_BATCH * 2):
        results = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in group])
        for number, block in zip(group, results, strict=True):
            if block is None:
                raise AuditError(f"the node does not have block {number}")
            headers[number] = (int(block["timestamp"], 16), hex_to_bytes(block["hash"]))
        progress("reading block times", len(headers), len(wanted))
    return headers


def fetch_trail(
    rpc: RpcClient,
    contract: str,
    *,
    from_block: int = 0,
    to_block: int | None = None,
    codec: ContractCodec | None = None,
    extra_blocks: Iterable[int] = (),
    progress: Progress = no_progress,
    patient: str | None = None,
    cache: PatientLogCache | None = None,
) -> Trail:
    """Read the ledger's events in ``[from_block, to_block]`` (default: up to the head) into a :class:`Trail`.

    ``extra_blocks`` are blocks whose timestamps are wanted besides the events' own (e.g. the blocks
    that batched disclosure-log entries name). With ``patient``, only that patient's events and the
    global ones are read (the node filters them), so the cost follows the patient's history, not the
    chain's; a ``cache`` keeps them between calls, so a repeated audit reads only the new blocks.
    Raises :class:`AuditError` if a block's hash changed while reading (a reorganization):
    rerun once the chain is final. Callers reading a long history pause the cyclic garbage collector
    around this and the verification (:func:`ledger_service.audit.gcpause.paused_gc`).
    """
    codec = codec or ledger_codec()
    patient = checksum_address(patient) if patient else None
    contract = checksum_address(contract)
    chain_id = rpc.chain_id()
    head = rpc.block_number()
    to_block = head if to_block is None else min(to_block, head)
    if from_block > to_block:
        raise AuditError(f"from block {from_block} is after the last block {to_block}")
    if patient is None:
        raw_logs = fetch_raw_logs(rpc, contract, from_block, to_block, progress=progress)
    elif cache is not None:
        raw_logs = cache.logs(rpc, contract, patient, from_block, to_block, codec, progress)
    else:
        filters = patient_topic_filters(patient, codec)
        raw_logs = fetch_raw_logs(rpc, contract, from_block, to_block, progress=progress, topic_filters=filters)
    # By slicing the ABI layouts (the same results as codec.decode_log over parse_log: see codec/logs.py).
    decode = FastLogDecoder(codec, parse_log).decode_raw
    decoded = [event for event in map(decode, raw_logs) if event is not None]
    headers = fetch_block_headers(
        rpc, [e.block_number for e in decoded] + [b for b in extra_blocks if b <= to_block], progress=progress
    )
    for event in decoded:
        _timestamp, block_hash = headers[event.block_number]
        if block_hash != event.block_hash:
            raise AuditError(
                f"block {event.block_number} changed while reading (hash 0x{event.block_hash.hex()} in the log, "
                f"0x{block_hash.hex()} now): the chain reorganized; verify again once it is final"
            )
    trail = build_trail(chain_id, contract, from_block, to_block, decoded, {n: t for n, (t, _h) in headers.items()})
    trail.patient = patient
    return trail
