"""Solidity mocks of contracts/test/mocks for the Python tests: compiled by the project's own build (the same
compiler and settings as the deployed contracts: ledger_service/chain/build.py) and deployed on a test's chain.

Forge compiles the same files for its own tests; the Python suite has no forge build step, so a test that needs
a mock compiles it here once per run (a few seconds with solc-js).
"""

from __future__ import annotations

import functools
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from ledger_service.chain.build import compile_contracts
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.codec.abi import ContractCodec


@functools.cache
def mock_artifact(name: str) -> dict[str, Any]:
    """The artifact (abi, bytecode) of ``contracts/test/mocks/<name>.sol``'s contract ``name``."""
    return compile_contracts(units={name: f"test/mocks/{name}.sol"})[name]


def deploy_mock(rpc: RpcClient, key: str, name: str, types: list[str], args: list[Any]) -> tuple[str, ContractCodec]:
    """Deploy mock ``name`` with constructor arguments ``args`` (ABI ``types``) from ``key``'s account; its address
    and codec."""
    artifact = mock_artifact(name)
    codec = ContractCodec(artifact["abi"])
    sender = TransactionSender(rpc, key, codec, chain_id=rpc.chain_id())
    init_code = bytes.fromhex(artifact["bytecode"][2:]) + abi_encode(types, args)
    receipt = sender.transact(None, init_code, action=f"deploy {name}")
    address = to_checksum_address(rpc.request("eth_getTransactionReceipt", [receipt.tx_hex])["contractAddress"])
    assert rpc.code_at(address), f"{name} left no code"
    return address, codec
