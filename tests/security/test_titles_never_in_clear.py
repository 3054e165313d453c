"""Record titles and file names are health information: after uploads through the real server
(`consent-ledger up`), neither the hub's DB (every table, every column, and its files on disk), nor the blob
store, nor the chain (every transaction's input and every log), nor the server's own log holds one in clear,
in UTF-8, lowercase or hex (docs/architecture.md, "Record titles"). The parties who may read them do: the
author in its record list and download name, the patient by opening their sealed copy with their own key.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_service.crypto.sealing import label_info, open_sealed, public_key_bytes
from ledger_service.domain.consent import Eip712Domain, EncryptionKey, RecordErase, typed_data
from ledger_service.domain.record_labels import RecordLabel
from ledger_service.settings import ANVIL_DEV_KEYS
from scripts.soak import LedgerClient
from tests.faults.harness import ADMIN_KEY, CLINIC_KEY, Node, Served, adopt_deployment, custodian_urls, start_custodians
from tests.security.conftest import DevServer

pytestmark = pytest.mark.timeout(600)

CLINIC = Account.from_key(ANVIL_DEV_KEYS[1])
# Words found nowhere else: any hit in a scan is one of these titles or names.
FHIR_TITLE = "Quillbrack serum zentrophase"  # from the resource's code.text: the suggested title
GIVEN_TITLE = "Vormlinde discharge summary"
FILE_NAME = "vormlinde-xq7731-letter.pdf"
LATE_TITLE = "Plethquorn biopsy narrative"  # uploaded before the patient had a key
SECRETS = (FHIR_TITLE, GIVEN_TITLE, FILE_NAME, LATE_TITLE, "Quillbrack", "Vormlinde", "xq7731", "Plethquorn")


def forms(secret: str) -> list[bytes]:
    """The ways a title could sit in a store: UTF-8 as given and lowercased, hex of either (any case)."""
    out = []
    for text in {secret, secret.lower()}:
        raw = text.encode("utf-8")
        out += [raw, raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw)]
    return out


def hits(blob: bytes, where: str) -> list[str]:
    lowered = blob.lower()
    return [f"{secret!r} in {where}" for secret in SECRETS for form in forms(secret) if form.lower() in lowered]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("titles")
    dev = DevServer(root / "data", root / "up.log").start()
    yield dev
    dev.stop()


def domain_of(api: LedgerClient) -> Eip712Domain:
    return Eip712Domain(
        chain_id=api.chain["chainId"], verifying_contract=api.chain["eip712Domain"]["verifyingContract"]
    )


def register_key(api: LedgerClient, patient: LocalAccount, key: X25519PrivateKey) -> None:
    domain = domain_of(api)
    nonce = api.http.get(f"/v1/nonces/{patient.address}").json()["nonce"]
    public = public_key_bytes(key)
    message = EncryptionKey(patient.address, public, nonce, int(time.time()) + 600)
    signed = Account.sign_typed_data(patient.key, full_message=typed_data(domain, message))
    relayed = api.http.post(
        "/v1/relay",
        json={
            "primaryType": "EncryptionKey",
            "message": {
                "account": patient.address,
                "publicKey": "0x" + public.hex(),
                "nonce": nonce,
                "deadline": message.deadline,
            },
            "signature": "0x" + bytes(signed.signature).hex(),
        },
    )
    assert relayed.status_code == 200, relayed.text


def open_patient_copy(api: LedgerClient, record: dict[str, Any], key: X25519PrivateKey) -> RecordLabel:
    sealed = record["sealedLabel"]
    assert sealed is not None, record
    assert sealed["recipientKey"] == "0x" + public_key_bytes(key).hex()
    info = label_info(
        chain_id=api.chain["chainId"],
        ledger=api.chain["contracts"]["ConsentLedger"],
        record_id=bytes.fromhex(record["recordId"][2:]),
        version=sealed["version"],
        recipient=public_key_bytes(key),
    )
    return RecordLabel.decode(open_sealed(bytes.fromhex(sealed["sealed"][2:]), key, info))


def chain_bytes(rpc_url: str) -> bytes:
    """Every transaction's input and every log's topics and data, from block 0 to the head."""
    with httpx.Client(timeout=30) as rpc:

        def call(method: str, params: list[Any]) -> Any:
            answer = rpc.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()
            return answer["result"]

        head = int(call("eth_blockNumber", []), 16)
        parts = []
        for number in range(head + 1):
            block = call("eth_getBlockByNumber", [hex(number), True])
            parts += [bytes.fromhex(tx["input"][2:]) for tx in block["transactions"]]
            parts += [tx["input"].encode() for tx in block["transactions"]]
        for entry in call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]):
            parts += [bytes.fromhex(entry["data"][2:]), entry["data"].encode()]
            parts += [bytes.fromhex(t[2:]) for t in entry["topics"]]
    assert head > 0 and parts
    return b"\n".join(parts)


def db_cells(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every cell of every table, as bytes (text as UTF-8, numbers as text)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "record_labels" in tables and "records" in tables
        for table in tables:
            cursor = db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from sqlite_master)
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                    yield f"{table}.{column}", raw


def test_titles_reach_only_the_parties_who_decrypt(server: DevServer) -> None:
    patient: LocalAccount = Account.create()
    late_patient: LocalAccount = Account.create()
    patient_key, late_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    with LedgerClient(server.url) as api:
        register_key(api, patient, patient_key)
        clinic = api.sign_in(CLINIC)
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"text": FHIR_TITLE},
            "valueQuantity": {"value": 4.2, "unit": "mmol/L"},
            "effectiveDateTime": "2026-11-30",
        }
        suggested = api.http.post(
            "/v1/records/suggest", json={"mediaType": "application/fhir+json", "content": observation}, headers=clinic
        )
        assert suggested.status_code == 200, suggested.text
        assert suggested.json() == {"title": f"{FHIR_TITLE}, 30 Nov 2026", "category": "laboratory"}
        fhir = api.upload(clinic, patient.address, json.dumps(observation).encode(), media_type="application/fhir+json")
        assert fhir.status_code == 201, fhir.text
        pdf_bytes = b"%PDF-1.4\n% a discharge letter\n%%EOF\n"
        pdf = api.http.post(
            "/v1/records",
            headers=clinic,
            data={
                "patient": patient.address,
                "category": "clinical-note",
                "mediaType": "application/pdf",
                "title": GIVEN_TITLE,
            },
            files={"file": (FILE_NAME, pdf_bytes, "application/pdf")},
        )
        assert pdf.status_code == 201, pdf.text
        late = api.http.post(
            "/v1/records",
            headers=clinic,
            json={"patient": late_patient.address, "category": "clinical-note", "mediaType": "text/plain",
                  "content": base64.b64encode(b"narrative").decode(), "title": LATE_TITLE},
        )  # fmt: skip
        assert late.status_code == 201, late.text

        # The author sees its titles; its download is named by the original file name (RFC 6266/5987).
        listed = api.http.get(f"/v1/patients/{patient.address}/records", headers=clinic).json()["records"]
        titles = {r["recordId"]: (r["title"], r["fileName"]) for r in listed}
        assert titles[fhir.json()["recordId"]] == (f"{FHIR_TITLE}, 30 Nov 2026", None)
        assert titles[pdf.json()["recordId"]] == (GIVEN_TITLE, FILE_NAME)
        assert all(r["sealedLabel"] is None for r in listed)
        granted = api.grant(patient, CLINIC.address)
        assert granted.status_code == 201, granted.text
        read = api.read(clinic, pdf.json()["recordId"])
        assert read.status_code == 200, read.text
        assert read.content == pdf_bytes
        assert read.headers["content-disposition"] == (
            f"attachment; filename=\"{FILE_NAME}\"; filename*=UTF-8''{FILE_NAME}"
        )

        # The patient gets sealed copies only, which open with the patient's own key.
        own = api.http.get(f"/v1/patients/{patient.address}/records", headers=api.sign_in(patient)).json()["records"]
        assert all(r["title"] is None for r in own)
        opened = {r["recordId"]: open_patient_copy(api, r, patient_key) for r in own}
        assert opened[pdf.json()["recordId"]] == RecordLabel(GIVEN_TITLE, FILE_NAME)
        # A patient who registers a key after the upload gets a copy resealed by the author's node.
        late_auth = api.sign_in(late_patient)
        before = api.http.get(f"/v1/patients/{late_patient.address}/records", headers=late_auth).json()["records"]
        assert [r["sealedLabel"] for r in before] == [None]
        register_key(api, late_patient, late_key)
        after = api.http.get(f"/v1/patients/{late_patient.address}/records", headers=late_auth).json()["records"]
        assert open_patient_copy(api, after[0], late_key) == RecordLabel(LATE_TITLE, "")

        # Erasure takes the record's title with it: no copy is left for anyone.
        late_id = after[0]["recordId"]
        nonce = api.http.get(f"/v1/nonces/{late_patient.address}").json()["nonce"]
        erase = RecordErase(late_patient.address, bytes.fromhex(late_id[2:]), nonce, int(time.time()) + 600)
        signed = Account.sign_typed_data(late_patient.key, full_message=typed_data(domain_of(api), erase))
        erased = api.http.request(
            "DELETE",
            f"/v1/records/{late_id}",
            headers=late_auth,
            json={
                "erase": {
                    "patient": late_patient.address,
                    "recordId": late_id,
                    "nonce": nonce,
                    "deadline": erase.deadline,
                },
                "signature": "0x" + bytes(signed.signature).hex(),
            },
        )
        assert erased.status_code == 200, erased.text
        gone = api.http.get(f"/v1/patients/{late_patient.address}/records", headers=late_auth).json()["records"]
        assert [(r["erased"], r["sealedLabel"]) for r in gone] == [(True, None)]

        chain = chain_bytes(server.rpc_url)

    data_dir = server.data_dir
    found: list[str] = []
    cells = list(db_cells(data_dir / "ledger.sqlite3"))
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'ledger.sqlite3'}?mode=ro", uri=True)) as db:
        labelled = {r[0] for r in db.execute("SELECT record_id FROM record_labels")}
    assert late_id not in labelled and pdf.json()["recordId"] in labelled
    # The scan sees what the DB holds: the patient's address is stored in clear, and is found.
    assert any(patient.address.lower().encode() in raw.lower() for _where, raw in cells)
    assert any(where == "record_labels.sealed" for where, _raw in cells)
    for where, raw in cells:
        found += hits(raw, where)
    blob_files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    assert blob_files
    for path in blob_files:
        found += hits(path.read_bytes(), str(path.relative_to(data_dir)))
    # Every other file of the data dir too (the DB's WAL, the custodians' stores, the chain's files) and the log.
    for path in [p for p in data_dir.rglob("*") if p.is_file() and p not in blob_files] + [server.log]:
        found += hits(path.read_bytes(), str(path))
    found += hits(chain, "the chain (transaction inputs and logs)")
    assert found == [], found


# ----------------------------------------------------------------- a hub and a node of its own

SPLIT_TITLE = "Gravenholt troponin curve"
SPLIT_FILE = "gravenholt-ecg.pdf"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Served]]:
    """``serve hub``, three ``serve custodian`` and the clinic's ``serve node``, each a process of its own."""
    chain = Node(tmp_path_factory.mktemp("split-chain")).start()
    started: list[Served] = []
    try:
        assert chain.deployment is not None
        hub_dir = tmp_path_factory.mktemp("split-hub")
        adopt_deployment(hub_dir, chain.deployment)
        hub = Served("hub", hub_dir, {"RPC_URL": chain.url, "DEPLOYER_KEY": ADMIN_KEY, "RELAYER_KEY": ADMIN_KEY})
        hub.start()
        started.append(hub)
        custodians = start_custodians(chain, tmp_path_factory.mktemp("split-custodians"))
        started += custodians
        node_dir = tmp_path_factory.mktemp("split-node")
        settings = {"RPC_URL": chain.url, "PROVIDER_KEYS": CLINIC_KEY, "CUSTODIAN_URLS": custodian_urls(custodians)}
        node = Served("node", node_dir, settings, "--hub-url", hub.url)
        node.start()
        started.append(node)
        yield hub, node
    finally:
        for served in reversed(started):
            served.stop()
        chain.stop()


def test_a_node_of_its_own_hands_the_patient_a_sealed_title_through_the_hub(split: tuple[Served, Served]) -> None:
    hub, node = split
    patient: LocalAccount = Account.create()
    patient_key = X25519PrivateKey.generate()
    with LedgerClient(hub.url) as at_hub, LedgerClient(node.url) as at_node:
        register_key(at_hub, patient, patient_key)
        clinic = at_node.sign_in(CLINIC)
        created = at_node.http.post(
            "/v1/records",
            headers=clinic,
            data={"patient": patient.address, "category": "clinical-note", "mediaType": "application/pdf"}
            | {"title": SPLIT_TITLE},
            files={"file": (SPLIT_FILE, b"%PDF-1.4\n%%EOF\n", "application/pdf")},
        )
        assert created.status_code == 201, created.text
        record_id = created.json()["recordId"]
        own = at_hub.http.get(f"/v1/patients/{patient.address}/records", headers=at_hub.sign_in(patient)).json()
        (record,) = own["records"]
        assert record["recordId"] == record_id and record["title"] is None
        assert open_patient_copy(at_hub, record, patient_key) == RecordLabel(SPLIT_TITLE, SPLIT_FILE)
        # the hub takes a label only from the record's author, for its patient, sealed to the patient's key
        deposit = {
            "version": 1,
            "recipient": patient.address,
            "recipientKey": record["sealedLabel"]["recipientKey"],
            "sealed": "0x" + "00" * 64,
        }
        lab = at_hub.sign_in(Account.from_key(ANVIL_DEV_KEYS[2]))
        refused = at_hub.http.put(f"/v1/records/{record_id}/labels", json=deposit, headers=lab)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"].endswith("/not-record-author")
        wrong_key = {**deposit, "recipientKey": "0x" + "11" * 32}
        refused = at_hub.http.put(f"/v1/records/{record_id}/labels", json=wrong_key, headers=at_hub.sign_in(CLINIC))
        assert refused.status_code == 400, refused.text
    found: list[str] = []
    for path in [p for p in hub.data_dir.rglob("*") if p.is_file()]:
        for secret in (SPLIT_TITLE, SPLIT_FILE, "Gravenholt", "gravenholt"):
            for form in forms(secret):
                if form.lower() in path.read_bytes().lower():
                    found.append(f"{secret!r} in {path}")
    assert found == [], found
