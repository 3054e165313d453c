"""Deploy the ledger, onboard the demo roles on a dev chain, and record the deployment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from ledger_service.chain.accounts import FACTORY_NAME
from ledger_service.chain.build import load_artifact
from ledger_service.chain.ledger import CONTRACT_NAME, ConsentLedgerContract
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.codec.abi import ContractCodec
from ledger_service.domain.codes import AUDITOR_ROLE, CUSTODIAN_ROLE, EMERGENCY_ROLE, category_id
from ledger_service.domain.record_labels import CATEGORY_VITAL_SIGNS
from ledger_service.errors import ConfigurationError
from ledger_service.settings import ANVIL_DEV_KEYS

# docs/operations.md: anvil's default accounts on a dev chain.
DEMO_PROVIDERS = ((1, "Demo Clinic", True), (2, "Demo Lab", False))
DEMO_AUDITOR_INDEX = 3
DEMO_PATIENT_INDEXES = range(4, 10)


LEDGER_VERSION: Final = 2


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    rpc_url: str
    contracts: dict[str, str]
    block_number: int
    block_hash: str
    deployer: str
    custodian: str
    tx_hash: str
    code_hash: str
    demo: dict[str, Any] = field(default_factory=dict)
    # The ledger's version: 2 is "every act signed by its party" (docs/architecture.md). A record without it
    # is a version-1 deployment, whose contract this service can no longer drive.
    ledger_version: int = 1

    @property
    def ledger_address(self) -> str:
        return self.contracts[CONTRACT_NAME]

    @property
    def has_account_factory(self) -> bool:
        return FACTORY_NAME in self.contracts

    @property
    def account_factory(self) -> str:
        """The PatientAccountFactory of the patients' passkey accounts (docs/architecture.md, "Passkey
        accounts"). A record written before passkey accounts has none: `up` and `deploy` add it at their next
        start (docs/operations.md, "Passkey accounts")."""
        factory = self.contracts.get(FACTORY_NAME)
        if factory is None:
            raise ConfigurationError(
                "the deployment record names no PatientAccountFactory (it predates passkey accounts): run "
                "`consent-ledger deploy` (or `up`) once with the deployer key to deploy it beside the ledger"
            )
        return factory

    def with_account_factory(self, address: str) -> Deployment:
        return Deployment(**{**self.__dict__, "contracts": {**self.contracts, FACTORY_NAME: address}})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            deployment = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot read deployment record {path}: {exc}") from exc
        if deployment.ledger_version != LEDGER_VERSION:
            raise ConfigurationError(
                f"{path} records a version-{deployment.ledger_version} ledger; this release runs version "
                f"{LEDGER_VERSION}, a fresh deployment (its chain data is not migrated). Start fresh with a new "
                f'--data-dir, or move {path.parent} aside; see docs/operations.md, "Upgrading to version 2"'
            )
        return deployment


def deploy_account_factory(sender: TransactionSender) -> str:
    """Deploy PatientAccountFactory (which deploys the accounts' implementation in its constructor); its
    address. It has no owner and no admin: anyone may create accounts with it."""
    artifact = load_artifact(FACTORY_NAME)
    receipt = sender.transact(None, bytes.fromhex(artifact["bytecode"][2:]), action=f"deploy {FACTORY_NAME}")
    raw = sender.rpc.request("eth_getTransactionReceipt", [receipt.tx_hex])
    address = to_checksum_address(raw["contractAddress"])
    if not sender.rpc.code_at(address):
        raise ConfigurationError(f"the {FACTORY_NAME} deployment left no code at {address}")
    return address


def deploy_ledger(sender: TransactionSender, custodian: str) -> Deployment:
    """Deploy ConsentLedger with ``sender``'s account as admin and grant CUSTODIAN_ROLE to ``custodian``, and
    the passkey accounts' PatientAccountFactory beside it."""
    artifact = load_artifact(CONTRACT_NAME)
    codec = ContractCodec(artifact["abi"])
    rpc = sender.rpc
    chain_id = rpc.chain_id()
    init_code = bytes.fromhex(artifact["bytecode"][2:]) + abi_encode(["address"], [sender.address])
    receipt = sender.transact(None, init_code, action="deploy ConsentLedger")
    raw = rpc.request("eth_getTransactionReceipt", [receipt.tx_hex])
    address = to_checksum_address(raw["contractAddress"])
    code = rpc.code_at(address)
    if not code:
        raise ConfigurationError(f"deployment left no code at {address}")
    ledger = ConsentLedgerContract(rpc, address, codec, sender)
    if not ledger.has_role(CUSTODIAN_ROLE, custodian):
        ledger.grant_role(CUSTODIAN_ROLE, custodian)
    factory = deploy_account_factory(sender)
    return Deployment(
        chain_id=chain_id,
        rpc_url=rpc.url,
        contracts={CONTRACT_NAME: address, FACTORY_NAME: factory},
        block_number=receipt.block_number,
        block_hash="0x" + receipt.block_hash.hex(),
        deployer=sender.address,
        custodian=to_checksum_address(custodian),
        tx_hash=receipt.tx_hex,
        code_hash="0x" + keccak(code).hex(),
        ledger_version=LEDGER_VERSION,
    )


def onboard_demo(ledger: ConsentLedgerContract) -> dict[str, Any]:
    """Give anvil's default accounts the demo roles docs/operations.md lists (idempotent)."""
    accounts = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]
    demo: dict[str, Any] = {"admin": accounts[0], "custodian": accounts[0], "providers": [], "patients": []}
    for index, name, emergency in DEMO_PROVIDERS:
        address = accounts[index]
        if not ledger.is_active_provider(address):
            ledger.onboard_provider(address, name)
        if emergency and not ledger.has_role(EMERGENCY_ROLE, address):
            ledger.grant_role(EMERGENCY_ROLE, address)
        demo["providers"].append({"index": index, "address": address, "name": name, "emergency": emergency})
    # Vital signs are filed as their own category (docs/architecture.md, "Record titles").
    if category_id(CATEGORY_VITAL_SIGNS) not in ledger.categories():
        ledger.register_category(CATEGORY_VITAL_SIGNS)
    auditor = accounts[DEMO_AUDITOR_INDEX]
    if not ledger.has_role(AUDITOR_ROLE, auditor):
        ledger.grant_role(AUDITOR_ROLE, auditor)
    demo["auditor"] = auditor
    demo["patients"] = [accounts[i] for i in DEMO_PATIENT_INDEXES]
    return demo


def deployment_is_live(rpc: RpcClient, deployment: Deployment) -> bool:
    """The recorded deployment matches this chain: same chain id and the same code there."""
    if rpc.chain_id() != deployment.chain_id:
        return False
    code = rpc.code_at(deployment.ledger_address)
    if not code or "0x" + keccak(code).hex() != deployment.code_hash:
        return False
    # A recorded factory must be there too (a record without one is live; `up` and `deploy` add it).
    return not deployment.has_account_factory or bool(rpc.code_at(deployment.account_factory))
