"""The integration story on a chain that mines a block a second, with data final after 2 confirmations.

Nothing may rely on instant mining: every write waits for its receipt and its confirmations, reads
log their disclosure the same way, and a refused read is refused on the confirmed state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from tests.faults.harness import CLINIC, LAB, ApiServer, Node, disclosure_txs, run_verify

pytestmark = pytest.mark.integration

CONFIRMATIONS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, ApiServer]]:
    root: Path = tmp_path_factory.mktemp("blocktime")
    node = Node(root, block_time=1).start()
    assert node.deployment is not None
    api = ApiServer(root / "api", node.url, node.deployment, confirmations=CONFIRMATIONS, block_time=1).start()
    yield node, api
    api.stop()
    node.stop()


def _confirmed(node: Node, tx_hash: str) -> None:
    receipt = node.rpc.receipt(bytes.fromhex(tx_hash[2:]))
    assert receipt is not None and receipt.status == 1, tx_hash
    assert node.rpc.block_number() - receipt.block_number >= CONFIRMATIONS, "acknowledged before it was final"


def test_grant_upload_read_revoke_refuse(server: tuple[Node, ApiServer]) -> None:
    node, api = server
    client = api.client()
    clinic = api.token(CLINIC)
    patient = Account.create()
    from_block = node.rpc.block_number() + 1

    granted = client.grant(patient, CLINIC, deadline=int(time.time()) + 3600)
    assert granted.status_code == 201, granted.text
    _confirmed(node, granted.json()["txHash"])
    content = {"resourceType": "Observation", "status": "final", "code": {"text": "Glucose"}}
    created = client.upload(clinic, patient.address, json.dumps(content).encode(), media_type="application/fhir+json")
    assert created.status_code == 201, created.text
    _confirmed(node, created.json()["txHash"])
    record_id = created.json()["recordId"]

    read = client.read(clinic, record_id)
    assert read.status_code == 200, read.text
    assert read.json() == content
    _confirmed(node, read.headers["X-Disclosure-Tx"])
    assert read.headers["X-Disclosure-Tx"] in disclosure_txs(node.url, api.deployment.ledger_address, from_block)

    lab_read = client.read(api.token(LAB), record_id)
    assert lab_read.status_code == 403 and lab_read.json()["type"] == "/problems/consent-denied"

    revoked = client.revoke(patient, granted.json()["consentId"])
    assert revoked.status_code == 200, revoked.text
    _confirmed(node, revoked.json()["txHash"])
    refused = client.read(clinic, record_id)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "/problems/consent-denied"

    disclosures = client.http.get(f"/v1/patients/{patient.address}/disclosures", headers=api.token(patient.address))
    assert disclosures.status_code == 200
    assert [d["txHash"] for d in disclosures.json()["disclosures"]] == [read.headers["X-Disclosure-Tx"]]
    deadline = time.monotonic() + 30  # the consent listing follows the chain CONFIRMATIONS blocks behind
    while True:
        consents = client.http.get(f"/v1/patients/{patient.address}/consents", headers=api.token(patient.address))
        statuses = [c["status"] for c in consents.json()["consents"]]
        if statuses == ["revoked"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert statuses == ["revoked"]
    client.close()
    run_verify(api.data_dir, from_block)


def test_relayed_grant_resubmitted_while_pending_and_after_returns_one_consent(server: tuple[Node, ApiServer]) -> None:
    node, api = server
    client = api.client()
    patient = Account.create()
    body = client.grant_body(patient, LAB, deadline=int(time.time()) + 3600)
    first = client.http.post("/v1/consents", json=body)
    assert first.status_code == 201, first.text
    again = client.http.post("/v1/consents", json=body)  # a client that never saw the first answer
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    _confirmed(node, first.json()["txHash"])
    assert client.nonce_of(patient.address) == body["grant"]["nonce"] + 1, "the grant must be on chain once"
    client.close()


def test_concurrent_resubmissions_of_one_grant_land_once(server: tuple[Node, ApiServer]) -> None:
    import threading

    _node, api = server
    client = api.client()
    patient = Account.create()
    body = client.grant_body(patient, LAB, deadline=int(time.time()) + 3600)
    answers: list[tuple[int, str]] = []

    def submit() -> None:
        with api.client() as other:
            response = other.http.post("/v1/consents", json=body)
            answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(status for status, _ in answers)
    assert all(s < 500 for s in statuses), answers
    assert 201 in statuses and set(statuses) <= {200, 201, 409}, answers
    assert client.nonce_of(patient.address) == body["grant"]["nonce"] + 1, "the grant must be on chain once"
    client.close()
