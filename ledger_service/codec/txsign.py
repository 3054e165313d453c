"""Signing the one kind of transaction the ledger sends: legacy, replay-protected (EIP-155).

RLP and one recoverable secp256k1 signature (coincurve, RFC 6979 nonces, low s), without
eth-account's generic transaction validation, which costs about a millisecond a transaction, a
tenth of a whole read. The output is byte for byte what ``Account.sign_transaction`` gives for the
same fields (tests/unit/chain/test_txsign.py).
"""

from __future__ import annotations

import rlp
from coincurve import PrivateKey
from eth_utils import keccak


class LegacyTransactionSigner:
    def __init__(self, private_key: bytes, chain_id: int) -> None:
        self._key = PrivateKey(private_key)
        self._chain_id = chain_id

    def sign(self, *, nonce: int, gas_price: int, gas: int, to: bytes, value: int, data: bytes) -> bytes:
        """The raw signed transaction; ``to`` is 20 bytes, or empty for a contract creation."""
        if len(to) not in (0, 20):
            raise ValueError("a transaction's recipient is 20 bytes (or none, to create a contract)")
        fields = [nonce, gas_price, gas, to, value, data]
        digest = keccak(rlp.encode([*fields, self._chain_id, 0, 0]))
        signature = self._key.sign_recoverable(digest, hasher=None)  # r || s || recovery id
        v = signature[64] + 35 + 2 * self._chain_id
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        return bytes(rlp.encode([*fields, v, r, s]))
