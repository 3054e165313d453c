"""Batched disclosure mode through the API, on a private anvil: a patient's disclosures carry receipts
that `consent-ledger verify-receipt` checks offline; per-read history from before a mode switch stays listed.

The key custodians release a read's key shares only against the receipt of its disclosure-log entry
(docs/architecture.md, "Key custody"), so a batched read anchors its batch before its bytes go out: its
receipt verifies as soon as the read answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consent_api.app import create_app
from ledger_service.audit.fetch import verify_receipt
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.cli import main as cli_main
from ledger_service.codec.abi import DecodedEvent
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import ZERO32
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings
from tests.api.conftest import HOST, Api
from tests.conftest import Chain, free_port, fresh_database_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batched_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("batched-api")
    base = Settings(data_dir=data_dir, chain_port=free_port(), receipt_timeout=30.0, database_url=fresh_database_url())
    with Runtime(base) as runtime:
        settings = base.model_copy(update={"disclosure_mode": "batched", "batch_size": 100, "batch_interval": 3600.0})
        services = bootstrap(settings, runtime.deployment)
        try:
            with TestClient(create_app(services), base_url=f"http://{HOST}") as client:
                yield Api(client, services, Chain(runtime, base))
        finally:
            services.close()


def _mined(services: Services, from_block: int) -> list[DecodedEvent]:
    """Every transaction mined from ``from_block`` on, oldest first, as the one ledger event it emitted
    (a transaction that failed, or emitted anything else, fails the test)."""
    rpc, codec = services.rpc, services.ledger.codec
    events: list[DecodedEvent] = []
    for number in range(from_block, rpc.block_number() + 1):
        for tx in rpc.get_block(number)["transactions"]:
            receipt = rpc.receipt(bytes.fromhex(tx[2:]))
            assert receipt is not None and receipt.status == 1, tx
            (emitted,) = receipt.logs
            event = codec.decode_log(emitted)
            assert event is not None and event.address == checksum_address(services.ledger.address), emitted
            events.append(event)
    return events


def _key_registered(services: Services, provider: str) -> bool:
    return services.ledger.encryption_key_of(provider) != ZERO32


def _disclosures(api: Api, patient: str) -> list[dict[str, object]]:
    response = api.client.get(f"/v1/patients/{patient}/disclosures", headers=api.token(patient))
    assert response.status_code == 200, response.text
    return list(response.json()["disclosures"])


def test_a_disclosure_carries_a_receipt_that_verifies_offline(batched_api: Api, tmp_path: Path) -> None:
    api, clinic = batched_api, batched_api.chain.clinic.address
    patient = api.new_patient()
    api.grant(patient, clinic)
    record_id = str(api.upload(patient.address)["recordId"])
    first_read = not _key_registered(api.services, clinic)
    before = api.services.rpc.block_number()
    for key in ("read-1", "read-2"):
        read = api.client.get(
            f"/v1/records/{record_id}",
            params={"purpose": "TREAT"},
            headers={**api.token(clinic), "Idempotency-Key": key},
        )
        assert read.status_code == 200, read.text
        assert read.json()["resourceType"] == "Observation" and read.headers["X-Disclosure-Tx"] == ""
    emergency = api.client.post(
        f"/v1/records/{record_id}/emergency-access", json={"reason": "collapsed in clinic"}, headers=api.token(clinic)
    )
    assert emergency.status_code == 200, emergency.text
    # No disclosure transaction: each read anchored its own entry before its bytes went out (one after
    # another, so one anchor each), and the clinic's first read registered its encryption key.
    sent = _mined(api.services, before + 1)
    assert sorted(e.name for e in sent) == sorted(
        ["DisclosureBatchAnchored"] * 3 + ["EncryptionKeySet"] * first_read
    ), [e.name for e in sent]
    anchors = {int(e.args["toIndex"]) - 1: e for e in sent if e.name == "DisclosureBatchAnchored"}
    assert all(int(e.args["fromIndex"]) == leaf for leaf, e in anchors.items())
    assert api.services.batcher.anchor_now() is None  # nothing left pending

    listed = _disclosures(api, patient.address)
    assert len(listed) == 3
    assert [d["purpose"] for d in listed] == ["ETREAT", "TREAT", "TREAT"]  # newest first
    assert listed[0]["reason"] == "collapsed in clinic" and listed[0]["emergency"]
    assert sorted(int(str(d["leafIndex"])) for d in listed) == sorted(anchors)
    path = tmp_path / "receipt.json"
    data_dir = str(api.services.settings.data_dir)
    for d in listed:
        assert d["txHash"] is None and d["recordId"] == record_id
        proof = d["proof"]
        assert isinstance(proof, dict)
        anchor = anchors[int(str(d["leafIndex"]))]
        assert proof["format"] == "consent-ledger-disclosure-receipt/2"
        assert proof["leafIndex"] == d["leafIndex"] and proof["treeSize"] == int(anchor.args["toIndex"])
        assert proof["anchor"]["txHash"] == "0x" + anchor.tx_hash.hex()
        assert proof["entry"]["accessor"] == clinic and proof["entry"]["purpose"] == d["purpose"]
        path.write_text(json.dumps(proof, indent=2))
        assert cli_main(["verify-receipt", str(path), "--data-dir", data_dir]) == 0

    # One byte altered in the saved file (a hex digit of the disclosed record id): the receipt fails.
    text = path.read_text()
    at = text.index(record_id[2:]) + 10
    altered = text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]
    assert len(altered) == len(text) and altered != text
    path.write_text(altered)
    assert cli_main(["verify-receipt", str(path), "--data-dir", data_dir]) == 1


def test_per_read_history_from_before_a_mode_switch_is_listed_beside_batched(batched_api: Api) -> None:
    api, clinic = batched_api, batched_api.chain.clinic.address
    patient = api.new_patient()
    api.grant(patient, clinic)
    record_id = str(api.upload(patient.address)["recordId"])

    # The same deployment and DB, as it ran before the switch to batched mode.
    per_read = bootstrap(
        api.services.settings.model_copy(update={"disclosure_mode": "per-read"}), api.services.deployment
    )
    first_read = not _key_registered(api.services, clinic)
    before = api.services.rpc.block_number()
    try:
        content = per_read.reads.read(accessor=clinic, record_id=record_id, purpose="TREAT")
        assert content.read_all() and content.disclosure_tx.startswith("0x") and content.leaf_index is None
    finally:
        per_read.close()
    sent = _mined(api.services, before + 1)
    assert sorted(e.name for e in sent) == sorted(["AccessLogged"] + ["EncryptionKeySet"] * first_read)
    # The batched read: its entry's anchor only (the key this data dir holds is on chain), no AccessLogged.
    before = api.services.rpc.block_number()
    read = api.client.get(f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=api.token(clinic))
    assert read.status_code == 200, read.text
    (anchor,) = _mined(api.services, before + 1)
    assert anchor.name == "DisclosureBatchAnchored"

    # Newest first: the batched read was checked at the end of the per-read disclosure's block (or later).
    newer, older = _disclosures(api, patient.address)
    assert int(str(newer["blockNumber"])) >= int(str(older["blockNumber"]))
    assert older["txHash"] == content.disclosure_tx and older["leafIndex"] is None and older["proof"] is None
    assert newer["txHash"] is None and isinstance(newer["leafIndex"], int)
    assert (int(anchor.args["fromIndex"]), int(anchor.args["toIndex"])) == (newer["leafIndex"], newer["leafIndex"] + 1)
    receipt = newer["proof"]  # anchored before the read answered: it verifies against the chain at once
    assert isinstance(receipt, dict) and receipt["anchor"]["txHash"] == "0x" + anchor.tx_hash.hex()
    assert verify_receipt(receipt, api.services.rpc).leaf_index == newer["leafIndex"]
