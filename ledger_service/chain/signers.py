"""Signing keys the gateway holds for the providers it serves.

A record version is anchored by its authoring provider's own account (the contract
records ``msg.sender`` as the author and lets only that account amend). The provider's
gateway therefore signs with the provider's key: here from settings or, on a dev chain,
anvil's demo accounts; in production a KMS/HSM implements the same ``sign`` step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from eth_account import Account
from eth_utils import to_checksum_address

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import NonceLedger, TransactionSender
from ledger_service.codec.abi import ContractCodec
from ledger_service.errors import PermissionDenied


class ProviderSigners:
    """One transaction sender (and nonce manager) per provider account held."""

    def __init__(
        self,
        rpc: RpcClient,
        codec: ContractCodec,
        ledger_address: str,
        private_keys: Iterable[str],
        *,
        chain_id: int,
        receipt_timeout: float,
        confirmations: int,
        nonce_ledger: NonceLedger | None = None,
    ) -> None:
        self._rpc = rpc
        self._codec = codec
        self._address = ledger_address
        self._keys = {to_checksum_address(Account.from_key(k).address): k for k in private_keys}
        self._chain_id = chain_id
        self._receipt_timeout = receipt_timeout
        self._confirmations = confirmations
        self._nonce_ledger = nonce_ledger
        self._ledgers: dict[str, ConsentLedgerContract] = {}
        self._lock = threading.Lock()

    @property
    def accounts(self) -> list[str]:
        return sorted(self._keys)

    def holds(self, account: str) -> bool:
        return to_checksum_address(account) in self._keys

    def ledger_for(self, provider: str) -> ConsentLedgerContract:
        """The ledger as ``provider`` (transactions signed with its key)."""
        provider = to_checksum_address(provider)
        with self._lock:
            ledger = self._ledgers.get(provider)
            if ledger is None:
                key = self._keys.get(provider)
                if key is None:
                    raise PermissionDenied(
                        f"this gateway holds no signing key for provider {provider}", account=provider
                    )
                sender = TransactionSender(
                    self._rpc,
                    key,
                    self._codec,
                    chain_id=self._chain_id,
                    receipt_timeout=self._receipt_timeout,
                    confirmations=self._confirmations,
                    nonce_ledger=self._nonce_ledger,
                )
                ledger = ConsentLedgerContract(self._rpc, self._address, self._codec, sender)
                self._ledgers[provider] = ledger
            return ledger
