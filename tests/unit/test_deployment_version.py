"""A data dir deployed by version 1 is refused with a plain next step, not driven with the wrong contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger_service.chain.deploy import LEDGER_VERSION, Deployment
from ledger_service.errors import ConfigurationError

RECORD = {
    "chain_id": 31337,
    "rpc_url": "http://127.0.0.1:8545",
    "contracts": {"ConsentLedger": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
    "block_number": 1,
    "block_hash": "0x" + "00" * 32,
    "deployer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "custodian": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "tx_hash": "0x" + "11" * 32,
    "code_hash": "0x" + "22" * 32,
    "demo": {},
}


def test_a_version_1_deployment_record_is_refused_with_how_to_start_fresh(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(RECORD))  # version 1 wrote no ledger_version
    with pytest.raises(ConfigurationError, match=r"version-1 ledger.*--data-dir"):
        Deployment.load(path)


def test_a_version_2_deployment_record_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    Deployment(**{**RECORD, "ledger_version": LEDGER_VERSION}).save(path)
    assert Deployment.load(path).ledger_version == LEDGER_VERSION == 2


def test_a_record_from_before_passkey_accounts_loads_and_names_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    Deployment(**{**RECORD, "ledger_version": LEDGER_VERSION}).save(path)
    loaded = Deployment.load(path)  # a custodian's copy needs no factory
    assert not loaded.has_account_factory
    with pytest.raises(ConfigurationError, match=r"no PatientAccountFactory.*consent-ledger deploy"):
        _ = loaded.account_factory
    added = loaded.with_account_factory("0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0")
    assert added.account_factory == "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    assert added.ledger_address == loaded.ledger_address
