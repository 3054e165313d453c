"""The ledger's transaction signer gives exactly eth-account's signed bytes."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.codec.txsign import LegacyTransactionSigner

KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")


@settings(max_examples=300, deadline=None)
@given(
    nonce=st.integers(0, 2**64 - 1),
    gas_price=st.integers(0, 2**96),
    gas=st.integers(21_000, 30_000_000),
    to=st.one_of(st.just(b""), st.binary(min_size=20, max_size=20)),
    value=st.integers(0, 2**128),
    data=st.binary(max_size=600),
    chain_id=st.sampled_from([1, 1337, 31337, 2**32 + 7]),
)
def test_signed_bytes_equal_eth_accounts(
    nonce: int, gas_price: int, gas: int, to: bytes, value: int, data: bytes, chain_id: int
) -> None:
    raw = LegacyTransactionSigner(KEY, chain_id).sign(
        nonce=nonce, gas_price=gas_price, gas=gas, to=to, value=value, data=data
    )
    tx = {"nonce": nonce, "gasPrice": gas_price, "gas": gas, "value": value, "data": data, "chainId": chain_id}
    if to:
        tx["to"] = to_checksum_address(to)
    assert raw == bytes(Account.sign_transaction(tx, KEY).raw_transaction)


def test_a_recipient_must_be_an_address() -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        LegacyTransactionSigner(KEY, 1).sign(nonce=0, gas_price=0, gas=21_000, to=b"\x01" * 19, value=0, data=b"")
