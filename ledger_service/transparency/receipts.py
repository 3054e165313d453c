"""Disclosure receipts: a patient's offline-checkable proof that a disclosure is in the anchored log.

A receipt is JSON::

    {
      "format": "consent-ledger-disclosure-receipt/2",
      "chainId": 31337,
      "contract": "0x…",                       // the ConsentLedger
      "entry": {…},                             // DisclosureEntry.to_json(): the signed request and its release
      "leafIndex": 5,                           // the entry's index in the disclosure log
      "treeSize": 8,                            // the anchored tree size the proof is for
      "inclusionProof": ["0x…", …],            // RFC 9162 audit path, leaf to root
      "anchor": {"root": "0x…", "txHash": "0x…", "blockNumber": 123, "fromIndex": 4, "toIndex": 8}
    }

The leaf is ``SHA-256(0x00 || abi.encode(…entry fields…))`` (see :mod:`ledger_service.transparency.entries`).
:func:`check_receipt` is pure (the proof, the entry, and the accessor's signature over the entry's request);
:func:`check_anchor` is pure over the anchoring transaction's logs; :func:`ledger_service.audit.fetch.verify_receipt`
fetches those (and, for an accessor that is a contract, its ERC-1271 answer) from any node of the chain and
needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_utils import to_checksum_address

from ledger_service.codec.abi import ContractCodec
from ledger_service.errors import AuditError
from ledger_service.transparency.entries import DisclosureEntry, EntryFormatError
from ledger_service.transparency.merkle import MerkleLog, ProofError, verify_inclusion
from ledger_service.transparency.signatures import ecdsa_signer

RECEIPT_FORMAT: Final = "consent-ledger-disclosure-receipt/2"


class ReceiptError(AuditError):
    """A receipt is malformed or does not verify; the message says expected vs got."""

    code = "receipt-invalid"


@dataclass(frozen=True)
class Anchor:
    root: bytes
    tx_hash: bytes
    block_number: int
    from_index: int
    to_index: int


@dataclass(frozen=True)
class DisclosureReceipt:
    chain_id: int
    contract: str
    entry: DisclosureEntry
    leaf_index: int
    tree_size: int
    proof: list[bytes]
    anchor: Anchor

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECEIPT_FORMAT,
            "chainId": self.chain_id,
            "contract": self.contract,
            "entry": self.entry.to_json(),
            "leafIndex": self.leaf_index,
            "treeSize": self.tree_size,
            "inclusionProof": ["0x" + p.hex() for p in self.proof],
            "anchor": {
                "root": "0x" + self.anchor.root.hex(),
                "txHash": "0x" + self.anchor.tx_hash.hex(),
                "blockNumber": self.anchor.block_number,
                "fromIndex": self.anchor.from_index,
                "toIndex": self.anchor.to_index,
            },
        }


def make_receipt(
    log: MerkleLog,
    leaf_index: int,
    *,
    chain_id: int,
    contract: str,
    anchor: Anchor,
) -> DisclosureReceipt:
    """The receipt of leaf ``leaf_index`` against the tree size ``anchor.to_index`` anchored on chain."""
    if not leaf_index < anchor.to_index:
        raise ReceiptError(f"leaf {leaf_index} is not covered by the anchor of size {anchor.to_index}")
    if log.root(anchor.to_index) != anchor.root:
        raise ReceiptError(
            f"the log's root at size {anchor.to_index} is 0x{log.root(anchor.to_index).hex()}, "
            f"the anchor says 0x{anchor.root.hex()}"
        )
    entry = DisclosureEntry.decode(log.entry(leaf_index))
    return DisclosureReceipt(
        chain_id,
        to_checksum_address(contract),
        entry,
        leaf_index,
        anchor.to_index,
        log.inclusion_proof(leaf_index, anchor.to_index),
        anchor,
    )


def _b32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ReceiptError(f"{what}: expected 0x and 64 hex digits, got {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ReceiptError(f"{what}: expected hex digits, got {value!r}") from exc


def parse_receipt(data: Any) -> DisclosureReceipt:
    if not isinstance(data, dict):
        raise ReceiptError(f"a receipt is a JSON object, got {type(data).__name__}")
    if data.get("format") != RECEIPT_FORMAT:
        raise ReceiptError(f"receipt format expected {RECEIPT_FORMAT!r}, got {data.get('format')!r}")
    try:
        anchor = data["anchor"]
        proof = data["inclusionProof"]
        if not isinstance(proof, list):
            raise ReceiptError("inclusionProof must be a list of 0x-hex hashes")
        return DisclosureReceipt(
            chain_id=int(data["chainId"]),
            contract=to_checksum_address(data["contract"]),
            entry=DisclosureEntry.from_json(data["entry"]),
            leaf_index=int(data["leafIndex"]),
            tree_size=int(data["treeSize"]),
            proof=[_b32(p, f"inclusionProof[{i}]") for i, p in enumerate(proof)],
            anchor=Anchor(
                root=_b32(anchor["root"], "anchor.root"),
                tx_hash=_b32(anchor["txHash"], "anchor.txHash"),
                block_number=int(anchor["blockNumber"]),
                from_index=int(anchor["fromIndex"]),
                to_index=int(anchor["toIndex"]),
            ),
        )
    except EntryFormatError as exc:
        raise ReceiptError(f"receipt entry: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"malformed receipt: {type(exc).__name__}: {exc}") from exc


def signed_by_accessor(entry: DisclosureEntry) -> bool:
    """Whether the entry's signature is its accessor's ECDSA signature over its request (by the ledger's rules).
    False leaves one way open: an accessor that is a contract may accept it under ERC-1271."""
    return ecdsa_signer(entry.digest(), entry.signature) == entry.accessor


def check_receipt(receipt: DisclosureReceipt, *, contract_signature: bool | None = None) -> None:
    """The pure part: the entry belongs to this ledger, its request is signed by its accessor (by ECDSA, or,
    with ``contract_signature`` True, accepted by the accessor contract's ``isValidSignature`` at the entry's
    block), its release was before the request's deadline, and its leaf is in the tree of the anchored root."""
    entry = receipt.entry
    if entry.chain_id != receipt.chain_id or to_checksum_address(entry.ledger) != receipt.contract:
        raise ReceiptError(
            f"entry is for chain {entry.chain_id} ledger {entry.ledger}; the receipt names chain "
            f"{receipt.chain_id} ledger {receipt.contract}"
        )
    if not signed_by_accessor(entry) and contract_signature is not True:
        signer = ecdsa_signer(entry.digest(), entry.signature)
        raise ReceiptError(
            f"the entry's request (digest 0x{entry.digest().hex()}) must be signed by its accessor {entry.accessor}; "
            + (f"it is signed by {signer}" if signer else "its signature is no valid ECDSA signature")
            + ("" if contract_signature is None else " and the accessor contract refuses it (ERC-1271)")
        )
    if entry.timestamp > entry.deadline:
        raise ReceiptError(
            f"the request's deadline is {entry.deadline}; it was released later, at {entry.timestamp} "
            f"(block {entry.block_number})"
        )
    if receipt.tree_size != receipt.anchor.to_index:
        raise ReceiptError(f"tree size {receipt.tree_size} differs from the anchored size {receipt.anchor.to_index}")
    try:
        verify_inclusion(receipt.leaf_index, receipt.tree_size, entry.leaf_hash(), receipt.proof, receipt.anchor.root)
    except ProofError as exc:
        raise ReceiptError(f"the disclosure is not proven to be in the anchored log: {exc}") from exc


def check_anchor(receipt: DisclosureReceipt, logs: Sequence[dict[str, Any]], codec: ContractCodec) -> None:
    """Pure: the anchoring transaction's ``logs`` contain the receipt's ``DisclosureBatchAnchored``."""
    found = []
    for log in logs:
        if to_checksum_address(log["address"]) != receipt.contract:
            continue
        event = codec.decode_log(log)
        if event is None or event.name != "DisclosureBatchAnchored":
            continue
        found.append(event)
        if (
            bytes(event.args["root"]) == receipt.anchor.root
            and int(event.args["toIndex"]) == receipt.tree_size
            and event.block_number == receipt.anchor.block_number
        ):
            return
    got = ", ".join(
        f"root 0x{bytes(e.args['root']).hex()} size {e.args['toIndex']} block {e.block_number}" for e in found
    )
    raise ReceiptError(
        f"expected DisclosureBatchAnchored(root 0x{receipt.anchor.root.hex()}, size {receipt.tree_size}) by "
        f"{receipt.contract} in tx 0x{receipt.anchor.tx_hash.hex()} at block {receipt.anchor.block_number}; "
        f"got {got or 'no such event'}"
    )
