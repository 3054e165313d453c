"""Batched disclosure mode through the API, on a private anvil: a patient's disclosures carry receipts
that `consent-ledger verify-receipt` checks offline; per-read history from before a mode switch stays listed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consent_api.app import create_app
from ledger_service.bootstrap import bootstrap
from ledger_service.cli import main as cli_main
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


def _disclosures(api: Api, patient: str) -> list[dict[str, object]]:
    response = api.client.get(f"/v1/patients/{patient}/disclosures", headers=api.token(patient))
    assert response.status_code == 200, response.text
    return list(response.json()["disclosures"])


def test_a_disclosure_carries_a_receipt_that_verifies_offline(batched_api: Api, tmp_path: Path) -> None:
    api, clinic = batched_api, batched_api.chain.clinic.address
    patient = api.new_patient()
    api.grant(patient, clinic)
    record_id = str(api.upload(patient.address)["recordId"])
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
    assert api.services.rpc.block_number() == before  # no disclosure transaction

    listed = _disclosures(api, patient.address)
    assert len(listed) == 3
    assert [d["purpose"] for d in listed] == ["ETREAT", "TREAT", "TREAT"]  # newest first
    assert listed[0]["reason"] == "collapsed in clinic" and listed[0]["emergency"]
    for d in listed:
        assert d["txHash"] is None and d["recordId"] == record_id
        assert d["proof"] == {"status": "pending", "leafIndex": d["leafIndex"]}

    anchor = api.services.batcher.anchor_now()
    assert anchor is not None
    listed = _disclosures(api, patient.address)
    path = tmp_path / "receipt.json"
    data_dir = str(api.services.settings.data_dir)
    for d in listed:
        proof = d["proof"]
        assert isinstance(proof, dict)
        assert proof["format"] == "consent-ledger-disclosure-receipt/2"
        assert proof["leafIndex"] == d["leafIndex"] and proof["treeSize"] == anchor.to_index
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
    try:
        content = per_read.reads.read(accessor=clinic, record_id=record_id, purpose="TREAT")
        assert content.read_all() and content.disclosure_tx.startswith("0x") and content.leaf_index is None
    finally:
        per_read.close()
    read = api.client.get(f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=api.token(clinic))
    assert read.status_code == 200, read.text

    # Newest first: the batched read was checked at the end of the per-read disclosure's block (or later).
    newer, older = _disclosures(api, patient.address)
    assert int(str(newer["blockNumber"])) >= int(str(older["blockNumber"]))
    assert older["txHash"] == content.disclosure_tx and older["leafIndex"] is None and older["proof"] is None
    assert newer["txHash"] is None and isinstance(newer["leafIndex"], int)
    assert newer["proof"] == {"status": "pending", "leafIndex": newer["leafIndex"]}
