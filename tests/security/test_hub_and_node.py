"""The hub holds no provider key: a hub started alone, and a provider's node in a process of its own.

``consent-ledger serve hub`` runs with no provider key at all (given one, it refuses to start), and
``consent-ledger serve node`` holds the clinic's and the lab's keys, its own DB and its own key file, and reaches
the hub only over HTTP (``POST /v1/relay``, ``/v1/blobs``). The whole provider story runs through the node: an
upload, a consented read, an amendment, a refused read; the patient sees the records and disclosures at the
hub; the patient's signed erasure at the hub makes the node destroy its keys. Every act on chain names the
provider, and the hub's relayer is never the author or the accessor.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from scripts.soak import LedgerClient
from tests.faults.harness import (
    ADMIN_KEY,
    CLINIC,
    CLINIC_KEY,
    LAB_KEY,
    Node,
    Served,
    adopt_deployment,
    custodian_urls,
    start_custodians,
)

pytestmark = pytest.mark.timeout(600)

PATIENT_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"  # anvil #5


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("chain")).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def hub(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("hub")
    assert chain.deployment is not None
    adopt_deployment(data_dir, chain.deployment)
    # No CONSENT_LEDGER_PROVIDER_KEYS anywhere in its environment: the hub has only the relayer's key.
    served = Served("hub", data_dir, {"RPC_URL": chain.url, "DEPLOYER_KEY": ADMIN_KEY, "RELAYER_KEY": ADMIN_KEY})
    assert not any("PROVIDER_KEYS" in k for k in served.env)
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def custodians(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    started = start_custodians(chain, tmp_path_factory.mktemp("custodians"))
    yield started
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def node(
    chain: Node, hub: Served, custodians: list[Served], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    served = Served(
        "node",
        tmp_path_factory.mktemp("node"),
        {
            "RPC_URL": chain.url,
            "PROVIDER_KEYS": f"{CLINIC_KEY},{LAB_KEY}",
            "CUSTODIAN_URLS": custodian_urls(custodians),
        },
        "--hub-url",
        hub.url,
    )
    served.start()
    yield served
    served.stop()


def test_a_hub_given_a_provider_key_refuses_to_start(chain: Node, tmp_path: Path) -> None:
    assert chain.deployment is not None
    adopt_deployment(tmp_path, chain.deployment)
    hub = Served(
        "hub",
        tmp_path,
        {"RPC_URL": chain.url, "DEPLOYER_KEY": ADMIN_KEY, "RELAYER_KEY": ADMIN_KEY, "PROVIDER_KEYS": CLINIC_KEY},
    )
    code, output = hub.run_to_exit()
    assert code != 0
    assert "the hub holds no provider key" in output and CLINIC_KEY[2:] not in output


def test_the_hub_serves_no_provider_route(hub: Served) -> None:
    with LedgerClient(hub.url) as client:
        clinic = client.sign_in(Account.from_key(CLINIC_KEY))
        upload = client.upload(clinic, Account.from_key(PATIENT_KEY).address, b"K+ 4.1")
        assert upload.status_code in (404, 405), upload.text


def _events(chain: Node, name: str, topic_filter: list[str | None] | None = None) -> list[dict[str, object]]:
    from ledger_service.chain.ledger import ledger_codec

    codec = ledger_codec()
    assert chain.deployment is not None
    logs = chain.rpc.get_logs(
        chain.deployment.ledger_address, 0, chain.rpc.block_number(), [codec.topic(name), *(topic_filter or [])]
    )
    return [dict(event.args) for lg in logs if (event := codec.decode_log(lg)) is not None]


def test_the_whole_provider_story_runs_through_a_node_of_its_own(chain: Node, hub: Served, node: Served) -> None:
    patient = Account.from_key(PATIENT_KEY)
    with LedgerClient(hub.url) as at_hub, LedgerClient(node.url) as at_node:
        clinic = at_node.sign_in(Account.from_key(CLINIC_KEY))
        created = at_node.upload(clinic, patient.address, b"K+ 4.1 mmol/L", media_type="text/plain")
        assert created.status_code == 201, created.text
        record_id = created.json()["recordId"]

        # anchored in the clinic's own name: the author is the clinic, not the hub's relayer
        anchors = [e for e in _events(chain, "RecordAnchored") if "0x" + bytes(e["recordId"]).hex() == record_id]
        assert [str(e["author"]) for e in anchors] == [CLINIC]

        # no consent yet: refused at the node, nothing logged
        before = len(_events(chain, "AccessLogged"))
        refused = at_node.read(clinic, record_id)
        assert refused.status_code == 403, refused.text
        assert len(_events(chain, "AccessLogged")) == before

        assert at_hub.grant(patient, CLINIC).status_code == 201
        read = at_node.read(clinic, record_id)
        assert read.status_code == 200 and read.content == b"K+ 4.1 mmol/L", read.text
        logged = _events(chain, "AccessLogged")
        assert len(logged) == before + 1 and str(logged[-1]["accessor"]) == CLINIC
        assert read.headers["X-Disclosure-Tx"].startswith("0x")

        amended = at_node.http.post(
            f"/v1/records/{record_id}/versions",
            json={"mediaType": "text/plain", "content": base64.b64encode(b"K+ 4.3 mmol/L").decode()},
            headers=clinic,
        )
        assert amended.status_code == 201, amended.text
        assert amended.json()["version"] == 2

        # the patient sees the node's record and its disclosure at the hub
        me = at_hub.sign_in(patient)
        listed = at_hub.http.get(f"/v1/patients/{patient.address}/records", headers=me).json()["records"]
        mine = [r for r in listed if r["recordId"] == record_id]
        assert [(r["version"], r["mediaType"]) for r in mine] == [(2, "text/plain")]
        disclosures = at_hub.http.get(f"/v1/patients/{patient.address}/disclosures", headers=me).json()
        assert [d["accessor"] for d in disclosures["disclosures"] if d["recordId"] == record_id] == [CLINIC]

        # the patient's signed erasure at the hub: the node destroys its keys, and reads are refused
        nonce = int(at_hub.http.get(f"/v1/nonces/{patient.address}").json()["nonce"])
        erase = {"patient": patient.address, "recordId": record_id, "nonce": nonce, "deadline": int(time.time()) + 600}
        signed = Account.sign_typed_data(patient.key, full_message=at_hub.typed("RecordErase", erase))
        erased = at_hub.http.request(
            "DELETE",
            f"/v1/records/{record_id}",
            json={"erase": erase, "signature": "0x" + bytes(signed.signature).hex()},
        )
        assert erased.status_code == 200, erased.text
        assert [str(e["erasedBy"]) for e in _events(chain, "RecordErased")][-1] == patient.address
        # the node follows the chain's erasures and destroys its wrapped keys of the record
        deadline = time.monotonic() + 30
        while _node_keys_of(node, record_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _node_keys_of(node, record_id) == 0
        after = at_node.read(clinic, record_id)
        assert after.status_code == 410, after.text


def _node_keys_of(node: Served, record_id: str) -> int:
    with contextlib.closing(sqlite3.connect(node.data_dir / "ledger.sqlite3")) as db:
        return int(db.execute("SELECT count(*) FROM commitment_salts WHERE record_id = ?", (record_id,)).fetchone()[0])


def test_the_patient_directory_is_the_nodes_alone(chain: Node, hub: Served, node: Served) -> None:
    """A clinic's directory (docs/architecture.md, "Patient directory") lives in its node's data dir: the hub
    serves no directory route, and no file of the hub's data dir (DB, blobs, logs) holds the name or MRN."""
    patient = Account.from_key(PATIENT_KEY).address
    name, mrn = "Philippa Quarrendon", "QX-55821"
    with LedgerClient(hub.url) as at_hub, LedgerClient(node.url) as at_node:
        clinic = at_node.sign_in(Account.from_key(CLINIC_KEY))
        put = at_node.http.put(f"/v1/directory/patients/{patient}", json={"name": name, "mrn": mrn}, headers=clinic)
        assert put.status_code == 200, put.text
        found = at_node.http.get("/v1/directory/patients", params={"q": "quarrendon"}, headers=clinic)
        assert [p["mrn"] for p in found.json()["patients"]] == [mrn]
        at_hub_clinic = at_hub.sign_in(Account.from_key(CLINIC_KEY))
        refused = at_hub.http.get("/v1/directory/patients", params={"q": "quarrendon"}, headers=at_hub_clinic)
        assert refused.status_code in (404, 405), refused.text
    directory = node.data_dir / "node" / "patient-directory.sqlite3"
    assert name.encode() in directory.read_bytes()
    for path in hub.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert name.encode() not in data and mrn.encode() not in data, path
