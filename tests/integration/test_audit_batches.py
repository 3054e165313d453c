"""Batched disclosure mode on a private anvil: anchored roots, receipts, an altered proof, a rollback."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from ledger_service.audit.fetch import fetch_trail, verify_receipt
from ledger_service.audit.verifier import OperatorLog, verify
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.cli import main as cli_main
from ledger_service.domain.codes import ZERO32
from ledger_service.domain.consent import EmergencyAccessRequest, typed_data
from ledger_service.runtime import Runtime
from ledger_service.settings import ANVIL_DEV_KEYS, Settings
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.receipts import Anchor, ReceiptError, make_receipt
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CLINIC_KEY = ANVIL_DEV_KEYS[1]  # the demo clinic (anvil account #1)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Services, MerkleLog, list[Anchor]]]:
    """A private chain (the batch head is global) with a 6-entry log anchored as sizes 2, 5 and 6."""
    data_dir = tmp_path_factory.mktemp("batched")
    settings = Settings(data_dir=data_dir, chain_port=free_port())
    with Runtime(settings) as runtime:
        services = bootstrap(settings, runtime.deployment)
        try:
            clinic = runtime.deployment.demo["providers"][0]["address"]
            patient = Account.create().address
            created = services.uploads.create(
                provider=clinic, patient=patient, category="laboratory", media_type="text/plain", content=[b"Na 140"]
            )
            block = services.rpc.block_number()
            timestamp = int(services.rpc.get_block(block)["timestamp"], 16)
            log = MerkleLog()
            for i in range(6):  # six break-glass reads, each the clinic's own signed request
                request = EmergencyAccessRequest(
                    patient, clinic, bytes.fromhex(created.record_id[2:]), 1, bytes([i + 1]) * 32, i, timestamp + 600
                )
                signed = Account.sign_typed_data(CLINIC_KEY, full_message=typed_data(services.domain, request))
                log.append(
                    DisclosureEntry.of_request(
                        request,
                        bytes(signed.signature),
                        domain=services.domain,
                        consent_id=ZERO32,
                        block_number=block,
                        timestamp=timestamp,
                    ).encode()
                )
            anchors = []
            for start, end in ((0, 2), (2, 5), (5, 6)):
                receipt = services.ledger.anchor_disclosure_batch(log.root(end), start, end)
                anchors.append(Anchor(log.root(end), receipt.tx_hash, receipt.block_number, start, end))
            yield runtime, services, log, anchors
        finally:
            services.close()


def _trail(runtime: Runtime, services: Services, log: MerkleLog):  # type: ignore[no-untyped-def]
    blocks = [DisclosureEntry.decode(log.entry(i)).block_number for i in range(log.size)]
    return fetch_trail(
        services.rpc, runtime.deployment.ledger_address, from_block=runtime.deployment.block_number, extra_blocks=blocks
    )


def test_anchored_log_verifies_and_an_altered_proof_is_named(
    batched: tuple[Runtime, Services, MerkleLog, list[Anchor]], tmp_path: Path
) -> None:
    runtime, services, log, anchors = batched
    trail = _trail(runtime, services, log)
    report = verify(trail, services.blobs, log=OperatorLog.of(log))
    assert report.ok, report.violations
    assert report.counts["batches"] == 3 and report.counts["batchedDisclosures"] == 6
    assert report.counts["emergencyAccesses"] == 6

    entries = [log.entry(i) for i in range(log.size)]

    def altered(old: int, new: int) -> list[bytes]:
        proof = log.consistency_proof(old, new)
        return [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]

    bad = verify(trail, services.blobs, log=OperatorLog(entries, altered))
    assert [v.code for v in bad.violations] == ["batch-consistency-invalid", "batch-consistency-invalid"]
    assert bad.violations[0].entry == "batch 2" and bad.violations[0].block == anchors[1].block_number

    exported = tmp_path / "log.json"
    exported.write_text(json.dumps({"entries": ["0x" + e.hex() for e in entries]}))
    # Auditor mode: the operator's DB has no delivery rows for batched entries yet (no leaf-index column).
    argv = [
        "verify",
        "--rpc-url",
        runtime.settings.effective_rpc_url,
        "--contract",
        runtime.deployment.ledger_address,
        "--blob-store",
        str(runtime.settings.blob_dir),
        "--disclosure-log",
        str(exported),
        "--no-progress",
    ]
    assert cli_main(argv) == 0
    # Read for one patient alone (only their events and the global ones): the same verdicts.
    patient = ["--patient", DisclosureEntry.decode(entries[0]).patient]
    assert cli_main([*argv, *patient]) == 0
    forked = [*entries[:3], entries[3][:-1] + b"\x07", *entries[4:]]
    exported.write_text(json.dumps({"entries": ["0x" + e.hex() for e in forked]}))
    assert cli_main(argv) == 1
    assert cli_main([*argv, *patient]) == 1


def test_receipts_verify_against_the_chain_alone(
    batched: tuple[Runtime, Services, MerkleLog, list[Anchor]], tmp_path: Path
) -> None:
    runtime, services, log, anchors = batched
    receipt = make_receipt(
        log, 3, chain_id=runtime.deployment.chain_id, contract=runtime.deployment.ledger_address, anchor=anchors[1]
    ).to_json()
    assert verify_receipt(receipt, services.rpc).leaf_index == 3
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    assert cli_main(["verify-receipt", str(path), "--rpc-url", runtime.settings.effective_rpc_url]) == 0

    tampered = []
    for mutate in (
        lambda r: r["inclusionProof"].__setitem__(0, "0x" + "00" * 32),
        lambda r: r["entry"].__setitem__("accessor", Account.create().address),
        lambda r: r.__setitem__("leafIndex", 2),
        lambda r: r["anchor"].__setitem__("root", "0x" + anchors[2].root.hex()),
    ):
        bad = copy.deepcopy(receipt)
        mutate(bad)
        with pytest.raises(ReceiptError):
            verify_receipt(bad, services.rpc)
        tampered.append(bad)
    path.write_text(json.dumps(tampered[0]))
    assert cli_main(["verify-receipt", str(path), "--rpc-url", runtime.settings.effective_rpc_url]) == 1

    # A receipt whose proof holds but whose root was never anchored by that transaction.
    other = copy.deepcopy(receipt)
    other["anchor"]["txHash"] = "0x" + anchors[0].tx_hash.hex()
    with pytest.raises(ReceiptError, match="expected DisclosureBatchAnchored"):
        verify_receipt(other, services.rpc)


def _head_slots(services: Services, address: str, root: bytes) -> int:
    for slot in range(64):
        value = services.rpc.request("eth_getStorageAt", [address, hex(slot), "latest"])
        if bytes.fromhex(value[2:].rjust(64, "0")) == root:
            return slot
    raise AssertionError("batch head not found in storage")


def test_rolled_back_root_is_named(batched: tuple[Runtime, Services, MerkleLog, list[Anchor]]) -> None:
    """Test-only path: reset the stored batch head to size 2, then anchor a smaller tree (size 3)."""
    runtime, services, log, anchors = batched
    address = runtime.deployment.ledger_address
    root_slot = _head_slots(services, address, anchors[-1].root)
    services.rpc.request("anvil_setStorageAt", [address, hex(root_slot + 1), "0x" + (2).to_bytes(32, "big").hex()])
    rolled = services.ledger.anchor_disclosure_batch(log.root(3), 2, 3)
    report = verify(_trail(runtime, services, log), services.blobs, log=OperatorLog.of(log))
    (v,) = report.violations
    assert v.code == "batch-rollback" and v.block == rolled.block_number and v.entry == "batch 4"
    assert "rolled back" in v.message and "size 3" in v.message
    assert cli_main(["verify", "--data-dir", str(runtime.settings.data_dir), "--no-progress"]) == 1
