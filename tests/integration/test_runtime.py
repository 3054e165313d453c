"""`consent-ledger up`: one deployment per data dir, and a dev chain that survives restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger_service.chain.deploy import Deployment
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.domain.codes import AUDITOR_ROLE, CUSTODIAN_ROLE, EMERGENCY_ROLE, ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import ConsentState, consent_id
from ledger_service.errors import ConfigurationError
from ledger_service.runtime import Runtime
from ledger_service.settings import ANVIL_DEV_KEYS, Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "ledger_service.cli"]


def _as_patient(runtime: Runtime, key: str) -> ConsentLedgerContract:
    rpc = RpcClient(runtime.settings.effective_rpc_url)
    codec = ledger_codec()
    sender = TransactionSender(rpc, key, codec, chain_id=runtime.deployment.chain_id)
    return ConsentLedgerContract(rpc, runtime.deployment.ledger_address, codec, sender)


def test_demo_roles_are_onboarded_as_documented(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, chain_port=free_port())
    with Runtime(settings) as runtime:
        ledger = _as_patient(runtime, ANVIL_DEV_KEYS[9])
        demo = runtime.deployment.demo
        clinic, lab = (p["address"] for p in demo["providers"])
        assert ledger.provider_name(clinic) == "Demo Clinic"
        assert ledger.provider_name(lab) == "Demo Lab"
        assert ledger.is_active_provider(clinic) and ledger.is_active_provider(lab)
        assert ledger.has_role(EMERGENCY_ROLE, clinic) and not ledger.has_role(EMERGENCY_ROLE, lab)
        assert ledger.has_role(AUDITOR_ROLE, demo["auditor"])
        assert ledger.has_role(CUSTODIAN_ROLE, demo["custodian"])
        assert len(demo["patients"]) == 6


def test_restart_keeps_the_deployment_and_every_grant(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, chain_port=port)
    patient_key = ANVIL_DEV_KEYS[4]
    with Runtime(settings) as runtime:
        first = runtime.deployment
        ledger = _as_patient(runtime, patient_key)
        patient = ledger.sender.address if ledger.sender else ""
        clinic = first.demo["providers"][0]["address"]
        purpose = purpose_to_bytes32("TREAT")
        cid = consent_id(patient, clinic, ZERO32, purpose)
        receipt = ledger.grant_direct(ConsentState(cid, patient, clinic, ZERO32, purpose, 0, 0))
    assert not runtime.anvil, "anvil must be stopped on exit"

    with Runtime(Settings(data_dir=tmp_path, chain_port=port)) as again:
        assert again.deployment == first == Deployment.load(settings.deployment_file)
        ledger = _as_patient(again, patient_key)
        assert ledger.consent(cid)[0] == patient
        assert ledger.rpc.receipt(receipt.tx_hash) is not None
        logs = ledger.rpc.get_logs(
            ledger.address, first.block_number, ledger.rpc.block_number(), [ledger.codec.topic("ConsentGranted")]
        )
        assert any(log["transactionHash"] == receipt.tx_hash for log in logs)


def test_a_deployment_from_before_passkey_accounts_gets_its_factory_at_the_next_start(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, chain_port=port)
    with Runtime(settings) as runtime:
        first = runtime.deployment
        assert runtime.rpc is not None and runtime.rpc.code_at(first.account_factory)
        # What a data dir deployed before passkey accounts recorded: the ledger alone.
        old = {**first.__dict__, "contracts": {"ConsentLedger": first.ledger_address}}
        Deployment(**old).save(settings.deployment_file)

    with Runtime(Settings(data_dir=tmp_path, chain_port=port)) as again:
        upgraded = again.deployment
        assert upgraded.ledger_address == first.ledger_address  # the same ledger, not a fresh deployment
        assert upgraded.account_factory != first.account_factory
        assert again.rpc is not None and again.rpc.code_at(upgraded.account_factory)
        assert Deployment.load(settings.deployment_file) == upgraded

    # A hub without the deployer key (an external chain) cannot add it and says what to run.
    with Runtime(Settings(data_dir=tmp_path, chain_port=port)) as chain:
        Deployment(**old).save(settings.deployment_file)
        external = Settings(data_dir=tmp_path, rpc_url=chain.settings.effective_rpc_url, relayer_key=ANVIL_DEV_KEYS[0])
        with pytest.raises(ConfigurationError, match="consent-ledger deploy"), Runtime(external):
            pass


def test_cli_up_prints_addresses_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM": "0"}
    process = subprocess.Popen(
        [*CLI, "up", "--no-api", "--data-dir", str(tmp_path), "--chain-port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl+C" in line:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    deployment = json.loads((tmp_path / "deployment.json").read_text())
    assert deployment["contracts"]["ConsentLedger"] in output
    assert "Demo Clinic" in output and "auditor" in output
    assert "chain state saved" in output
    assert (tmp_path / "chain" / "anvil-state.json").is_file()


def test_cli_cid_prints_the_cid_and_refuses_a_missing_file(tmp_path: Path) -> None:
    sample = tmp_path / "hello.txt"
    sample.write_bytes(b"hello world\n")
    done = subprocess.run([*CLI, "cid", str(sample)], capture_output=True, text=True, check=False)
    # `ipfs add --cid-version=1 --raw-leaves` of b"hello world\n" (a single raw block).
    assert done.returncode == 0 and done.stdout.strip() == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    missing = subprocess.run([*CLI, "cid", str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "cannot read" in missing.stderr
