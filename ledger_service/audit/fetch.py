"""What the auditor reads from a node: the material the pure checks are then run over (I/O lives here).

:mod:`ledger_service.audit.verifier` and :mod:`ledger_service.transparency.receipts` judge plain data
only; this module fetches it with an :class:`~ledger_service.chain.rpc.RpcClient`. :func:`fetch_trail`
needs only a JSON-RPC URL (an auditor's own node), the ledger's address and the block to start from (its
deployment block, or 0). It reads every event of the contract with batched ``eth_getLogs`` over block
ranges, the timestamps of the blocks they are in with batched ``eth_getBlockByNumber``, the call of the
ledger behind every event that names a party (its input decoded into the act: who called, and for a
by-signature call the signed message and its signature), by batched ``trace_transaction`` or, on a node
without the trace API, batched ``eth_getTransactionByHash`` (whole blocks where they are mostly such
transactions), and, for a party that is a contract, its ERC-1271 answers by batched ``eth_call``; and hands
it all over as a :class:`~ledger_service.audit.trail.Trail` of plain data. Judging the signatures is the
verifier's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ledger_service.audit.trail import (
    ATTRIBUTED_EVENTS,
    TRAIL_EVENTS,
    Act,
    CallDecoder,
    Progress,
    SignatureClaim,
    Trail,
    build_trail,
    no_progress,
)
from ledger_service.chain.ledger import BY_SIG_FUNCTION, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.codec import eip712
from ledger_service.codec.abi import ContractCodec, DecodedEvent
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import checksum_address, hex_to_bytes, parse_log
from ledger_service.domain.consent import Eip712Domain
from ledger_service.errors import AuditError, ChainError
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.receipts import (
    DisclosureReceipt,
    ReceiptError,
    check_anchor,
    check_receipt,
    parse_receipt,
    signed_by_accessor,
)
from ledger_service.transparency.signatures import ERC1271_GAS, erc1271_accepted, erc1271_call, signing_party

LOG_RANGE: Final = 5_000  # blocks per eth_getLogs request
RPC_BATCH: Final = 50  # requests per JSON-RPC batch
TX_BATCH: Final = 200  # eth_getTransactionByHash per JSON-RPC batch (small answers: many per round trip)
BLOCK_BATCH: Final = 4  # whole blocks (with their transactions) per JSON-RPC batch: large answers

T = TypeVar("T")


def verify_receipt(receipt_json: Any, rpc: RpcClient, *, codec: ContractCodec | None = None) -> DisclosureReceipt:
    """Check a receipt against the chain alone; returns it parsed, or raises :class:`ReceiptError`.

    Beside the proof and the anchor: the entry's request is its accessor's (ECDSA, or, for an accessor that
    is a contract, ``isValidSignature`` at the entry's block), and the entry's block has the entry's time."""
    receipt = parse_receipt(receipt_json)
    entry = receipt.entry
    chain_id = rpc.chain_id()
    if chain_id != receipt.chain_id:
        raise ReceiptError(f"the node is on chain {chain_id}; the receipt is for chain {receipt.chain_id}")
    contract_signature = None
    if not signed_by_accessor(entry) and fetch_contract_parties(rpc, [entry.accessor], at_block=entry.block_number):
        claim = (entry.accessor, entry.digest(), entry.signature)
        contract_signature = fetch_contract_signatures(rpc, [(claim, entry.block_number)])[claim]
    check_receipt(receipt, contract_signature=contract_signature)
    try:
        released_in = rpc.get_block(entry.block_number)
    except ChainError as exc:
        raise ReceiptError(f"the entry's block {entry.block_number} is not on this chain") from exc
    if int(released_in["timestamp"], 16) != entry.timestamp:
        raise ReceiptError(
            f"the entry says block {entry.block_number} is at {entry.timestamp}; the chain says "
            f"{int(released_in['timestamp'], 16)}"
        )
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

    The global events (roles, providers, categories, batch anchors) are kept once, not per patient, and so
    are the acts of the transactions read (a transaction's hash commits to what the act is made of).
    An entry is trusted only while the block it ends at keeps its hash: every block links to its
    parent's hash, so an unchanged last block means no block up to it changed. Otherwise the entry
    is read again from the start. Bounded: the least recently audited patients are forgotten.
    """

    def __init__(self, max_patients: int = 1024, max_acts: int = 200_000) -> None:
        self._entries: OrderedDict[tuple[str, str], _PatientLogs] = OrderedDict()
        self._max = max_patients
        self._lock = threading.Lock()
        # The acts of transactions read before (tx hash -> act), the least recently used forgotten first.
        self._acts: OrderedDict[bytes, Act] = OrderedDict()
        self._max_acts = max_acts

    def known_acts(self, tx_hashes: Iterable[bytes]) -> dict[bytes, Act]:
        with self._lock:
            found = {h: self._acts[h] for h in tx_hashes if h in self._acts}
            for tx_hash in found:
                self._acts.move_to_end(tx_hash)
        return found

    def remember_acts(self, acts: Mapping[bytes, Act]) -> None:
        with self._lock:
            self._acts.update(acts)
            while len(self._acts) > self._max_acts:
                self._acts.popitem(last=False)

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
    rpc: RpcClient,
    blocks: Iterable[int],
    *,
    progress: Progress = no_progress,
    tx_counts: dict[int, int] | None = None,
) -> dict[int, tuple[int, bytes]]:
    """``block -> (timestamp, hash)`` by batched ``eth_getBlockByNumber``; ``tx_counts``, if given, is filled
    with each block's number of transactions (the header lists their hashes)."""
    wanted = sorted(set(blocks))
    headers: dict[int, tuple[int, bytes]] = {}
    for group in _chunks(wanted, RPC_BATCH * 2):
        results = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in group])
        for number, block in zip(group, results, strict=True):
            if block is None:
                raise AuditError(f"the node does not have block {number}")
            headers[number] = (int(block["timestamp"], 16), hex_to_bytes(block["hash"]))
            if tx_counts is not None:
                tx_counts[number] = len(block.get("transactions") or ())
        progress("reading block times", len(headers), len(wanted))
    return headers


def fetch_transactions(
    rpc: RpcClient,
    located: Mapping[bytes, int],
    *,
    tx_counts: Mapping[int, int] | None = None,
    progress: Progress = no_progress,
) -> dict[bytes, dict[str, Any]]:
    """``tx hash -> transaction`` (as the node returns it) for each ``tx hash -> block`` in ``located``.

    Transactions are read by batched ``eth_getTransactionByHash``, except in a block where they are at least
    half of the block's transactions (``tx_counts``, from its header): that block is read whole, by
    ``eth_getBlockByNumber`` with its transactions, which a node serves for far less than one lookup each.
    """
    by_block: dict[int, list[bytes]] = {}
    for tx_hash, number in located.items():
        by_block.setdefault(number, []).append(tx_hash)
    counts = tx_counts or {}
    dense = sorted(n for n, hashes in by_block.items() if n in counts and 2 * len(hashes) >= counts[n])
    whole = set(dense)
    sparse = [h for n, hashes in by_block.items() if n not in whole for h in hashes]
    found: dict[bytes, dict[str, Any]] = {}
    total = len(located)
    for numbers in _chunks(dense, BLOCK_BATCH):
        for number, block in zip(
            numbers, rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers]), strict=True
        ):
            if block is None:
                raise AuditError(f"the node does not have block {number}")
            for tx in block.get("transactions") or ():
                tx_hash = hex_to_bytes(tx["hash"])
                if located.get(tx_hash) == number:
                    found[tx_hash] = tx
        progress("reading transactions", len(found), total)
    for group in _chunks(sparse, TX_BATCH):
        results = rpc.batch([("eth_getTransactionByHash", ["0x" + h.hex()]) for h in group])
        for tx_hash, tx in zip(group, results, strict=True):
            if tx is not None:
                found[tx_hash] = tx
        progress("reading transactions", len(found), total)
    missing = [h for h in located if h not in found]
    if missing:
        raise AuditError(
            f"the node does not have transaction 0x{missing[0].hex()} in block {located[missing[0]]}: the chain "
            "reorganized; verify again once it is final"
        )
    return found


def fetch_acts(
    rpc: RpcClient,
    contract: str,
    events: Sequence[DecodedEvent],
    codec: ContractCodec,
    *,
    tx_counts: Mapping[int, int] | None = None,
    progress: Progress = no_progress,
    cache: PatientLogCache | None = None,
) -> dict[bytes, Act]:
    """The :class:`Act` of the transaction of every event in ``events`` that names a party (those the
    ``cache`` knows are not read again: a transaction's hash commits to its sender, recipient and input)."""
    wanted = {e.tx_hash: e.block_number for e in events if e.name in _ATTRIBUTED}
    acts: dict[bytes, Act] = cache.known_acts(wanted) if cache is not None else {}
    located = {tx_hash: block for tx_hash, block in wanted.items() if tx_hash not in acts}
    decoder = CallDecoder(codec, BY_SIG_FUNCTION)
    traced = fetch_traces(rpc, located, progress=progress)
    contract = checksum_address(contract)
    for tx_hash, traces in traced.items():
        acts[tx_hash] = _act_of_traces(traces, contract, decoder, block=located[tx_hash], tx_hash=tx_hash)
    untraced = {tx_hash: block for tx_hash, block in located.items() if tx_hash not in traced}
    transactions = fetch_transactions(rpc, untraced, tx_counts=tx_counts, progress=progress)
    for tx_hash, tx in transactions.items():
        block = tx.get("blockNumber")
        if block is None or int(block, 16) != located[tx_hash]:
            raise AuditError(
                f"transaction 0x{tx_hash.hex()} is in block {block}, its event in block {located[tx_hash]}: "
                "the chain reorganized; verify again once it is final"
            )
        acts[tx_hash] = decoder.act(str(tx["from"]), tx.get("to"), contract, hex_to_bytes(tx.get("input")))
    if cache is not None:
        cache.remember_acts({tx_hash: acts[tx_hash] for tx_hash in located})
    return acts


_ATTRIBUTED: Final = frozenset(ATTRIBUTED_EVENTS)


def fetch_traces(
    rpc: RpcClient, located: Mapping[bytes, int], *, progress: Progress = no_progress
) -> dict[bytes, list[dict[str, Any]]]:
    """``tx hash -> its call traces`` by batched ``trace_transaction`` (the trace API of Besu, Erigon,
    Nethermind and anvil), or ``{}`` from a node without it (geth), whose transactions are then read instead.

    A node answers a trace from its own index, for far less than a transaction lookup costs; and the trace
    shows the calls a contract made, so an act a smart account sent the ledger itself is attributed too."""
    wanted = list(located)
    traced: dict[bytes, list[dict[str, Any]]] = {}
    for group in _chunks(wanted, TX_BATCH):
        responses = rpc.batch_responses([("trace_transaction", ["0x" + h.hex()]) for h in group])
        answered = [(h, r.get("result")) for h, r in zip(group, responses, strict=True) if not r.get("error")]
        if not answered and not traced:
            return {}  # no trace API here: the caller reads the transactions
        traced.update((h, result) for h, result in answered if isinstance(result, list) and result)
        progress("reading transactions", len(traced), len(wanted))
    return traced


def _is(address: object, contract: str) -> bool:
    return isinstance(address, str) and len(address) == 42 and checksum_address(address) == contract


def _act_of_traces(
    traces: Sequence[dict[str, Any]], contract: str, decoder: CallDecoder, *, block: int, tx_hash: bytes
) -> Act:
    """The act of a traced transaction: its one successful call of the ledger (from the transaction's sender,
    or from the contract that called the ledger within it)."""
    top = next((t for t in traces if t.get("traceAddress") == []), traces[0])
    if int(top.get("blockNumber", -1)) != block:
        raise AuditError(
            f"transaction 0x{tx_hash.hex()} is in block {top.get('blockNumber')}, its event in block {block}: "
            "the chain reorganized; verify again once it is final"
        )
    calls = [
        t["action"]
        for t in traces
        if t.get("type") == "call"
        and not t.get("error")
        and t.get("action", {}).get("callType") == "call"
        and _is(t["action"].get("to"), contract)
    ]
    if len(calls) == 1:
        action = calls[0]
        return decoder.act(str(action["from"]), str(action["to"]), contract, hex_to_bytes(action.get("input")))
    sender = checksum_address(str(top.get("action", {}).get("from")))
    if not calls:
        to = top.get("action", {}).get("to")
        return Act(sender, "", problem=f"the transaction calls {to}, and no successful call of the ledger is traced")
    return Act(
        sender,
        "",
        problem=f"the transaction calls the ledger {len(calls)} times: which call made which event is not established",
    )


def fetch_contract_parties(rpc: RpcClient, parties: Iterable[str], *, at_block: int) -> set[str]:
    """Those of ``parties`` that have code at ``at_block``: the accounts whose signature may be ERC-1271's.

    Read once per party, at the last block audited: an ordinary account has no code, so an all-ECDSA history
    costs one batched ``eth_getCode`` per party, not one per act."""
    wanted = sorted(set(parties))
    contracts: set[str] = set()
    for group in _chunks(wanted, RPC_BATCH * 2):
        codes = rpc.batch([("eth_getCode", [party, hex(at_block)]) for party in group])
        contracts.update(party for party, code in zip(group, codes, strict=True) if hex_to_bytes(code))
    return contracts


def fetch_contract_signatures(
    rpc: RpcClient, claims: Iterable[tuple[SignatureClaim, int]], *, progress: Progress = no_progress
) -> dict[SignatureClaim, bool]:
    """The ERC-1271 verdict of each ``(party, digest, signature)`` claim: ``isValidSignature(digest, signature)``
    called on the party at the claim's block, gas-bounded; a revert or any other answer than the magic value
    is a refusal."""
    checks = list(dict(claims).items())
    verdicts: dict[SignatureClaim, bool] = {}
    for group in _chunks(checks, RPC_BATCH):
        calls = [
            (
                "eth_call",
                [
                    {"to": party, "data": "0x" + erc1271_call(digest, signature).hex(), "gas": hex(ERC1271_GAS)},
                    hex(block),
                ],
            )
            for (party, digest, signature), block in group
        ]
        for (claim, _block), response in zip(group, rpc.batch_responses(calls), strict=True):
            verdicts[claim] = not response.get("error") and erc1271_accepted(hex_to_bytes(response.get("result")))
        progress("checking contract signatures", len(verdicts), len(checks))
    return verdicts


def _contract_signatures(
    rpc: RpcClient,
    acts: dict[bytes, Act],
    located: dict[bytes, int],
    domain: Eip712Domain,
    entries: Sequence[DisclosureEntry],
    *,
    at_block: int,
    progress: Progress,
) -> dict[SignatureClaim, bool]:
    """ERC-1271 verdicts for what a contract party signed: its signed acts' messages and its batched entries'
    requests (digests are computed for those parties only)."""
    signed = [(tx_hash, act) for tx_hash, act in acts.items() if act.message is not None]
    ours = [e for e in entries if e.chain_id == domain.chain_id and e.ledger == domain.verifying_contract]
    parties = {signing_party(act.message) for _tx, act in signed if act.message is not None}
    contracts = fetch_contract_parties(rpc, parties | {e.accessor for e in ours}, at_block=at_block)
    if not contracts:
        return {}
    claims: list[tuple[SignatureClaim, int]] = []
    for tx_hash, act in signed:
        assert act.message is not None
        party = signing_party(act.message)
        if party in contracts:
            claims.append(((party, eip712.digest(domain, act.message), act.signature), located[tx_hash]))
    claims += [((e.accessor, e.digest(), e.signature), e.block_number) for e in ours if e.accessor in contracts]
    return fetch_contract_signatures(rpc, claims, progress=progress)


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
    entries: Iterable[DisclosureEntry] = (),
    with_acts: bool = True,
) -> Trail:
    """Read the ledger's events in ``[from_block, to_block]`` (default: up to the head) into a :class:`Trail`.

    Each event that names a party comes with its transaction's act (``with_acts``; without, the trail has no
    acts and the verifier checks no signer). ``entries`` are the operator's batched disclosure-log entries:
    their blocks' timestamps are read, and their signatures' ERC-1271 verdicts where the accessor is a
    contract. ``extra_blocks`` are more blocks whose timestamps are wanted besides the events' own (e.g. the
    blocks that batched disclosure-log entries name). With ``patient``, only that patient's events and the
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
    entries = [e for e in entries if e.block_number <= to_block]
    blocks = [e.block_number for e in decoded] + [b for b in extra_blocks if b <= to_block]
    tx_counts: dict[int, int] = {}
    headers = fetch_block_headers(
        rpc, blocks + [e.block_number for e in entries], progress=progress, tx_counts=tx_counts
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
    if with_acts:
        trail.acts = fetch_acts(rpc, contract, decoded, codec, tx_counts=tx_counts, progress=progress, cache=cache)
        trail.contract_signatures = _contract_signatures(
            rpc,
            trail.acts,
            {e.tx_hash: e.block_number for e in decoded},
            Eip712Domain(chain_id, contract),
            entries,
            at_block=to_block,
            progress=progress,
        )
    return trail
