"""What the auditor reads from a node: the material the pure checks are then run over (I/O lives here).

:mod:`ledger_service.audit.verifier` and :mod:`ledger_service.transparency.receipts` judge plain data
only; this module fetches it with an :class:`~ledger_service.chain.rpc.RpcClient`.
"""

from __future__ import annotations

from typing import Any

from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.codec.abi import ContractCodec
from ledger_service.transparency.receipts import Receipt, ReceiptError, check_anchor, check_receipt, parse_receipt


def verify_receipt(receipt_json: Any, rpc: RpcClient, *, codec: ContractCodec | None = None) -> Receipt:
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
