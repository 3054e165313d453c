"""Every act on the ledger is signed by the party it names; the operator's keys cannot act for anyone.

Played by a client that shares no code with the project (tests/security/independent_client.py: its own
EIP-712, ABI and sign-in code) against a real `consent-ledger up`: a provider whose key the hub and node
never see is onboarded by the admin's command line, stores its ciphertext, anchors a record and logs its
accesses through the hub's relay. The operator's own keys (admin, relayer, custodian) then try to anchor,
log an access and erase in other parties' names with raw transactions, and must be refused by the contract.
"""

from __future__ import annotations

import ast
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from tests.security import independent_client
from tests.security.conftest import REPO, DevServer
from tests.security.independent_client import (
    ANVIL_KEYS,
    TYPE_STRINGS,
    LedgerApi,
    Reverted,
    abi_encode,
    address_topic,
    call_data,
    cid_bytes,
    consent_id_of,
    fresh_salt,
    hex0x,
    struct_kinds,
    struct_values,
    unhex,
    word_address,
    words,
)

pytestmark = pytest.mark.integration

ADMIN_KEY = ANVIL_KEYS[0]
# The records an outside provider anchored through the relay in this module (the verifier's known gap).
OUTSIDE_RECORDS: set[str] = set()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("signed-acts")
    # The relay's rate limits are raised: this module relays more than ten messages per signer in a minute.
    limits = {
        "CONSENT_LEDGER_RELAY_RATE_LIMIT": "1000/minute",
        "CONSENT_LEDGER_RELAY_RATE_LIMIT_PER_SIGNER": "1000/minute",
    }
    dev = DevServer(root / "data", root / "up.log", env=limits).start()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def api(server: DevServer) -> Iterator[LedgerApi]:
    client = LedgerApi(server.url, server.rpc_url)
    yield client
    client.close()


def _consent_ledger(*args: str) -> subprocess.CompletedProcess[str]:
    """The project's command line, as an operator runs it (a child process; nothing of it is imported here)."""
    return subprocess.run(
        [sys.executable, "-m", "ledger_service.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def _deployment(server: DevServer) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((server.data_dir / "deployment.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def provider(server: DevServer, api: LedgerApi) -> LocalAccount:
    """A provider's key made here: only its address leaves this process (in the admin's onboarding)."""
    account: LocalAccount = Account.create()
    done = _consent_ledger(
        "admin", "--data-dir", str(server.data_dir), "onboard-provider", account.address, "--name", "Outside Clinic"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    word = api.chain.view(api.ledger, "isActiveProvider", ("address",), (account.address,))
    assert int.from_bytes(word[0], "big") == 1, "the admin's onboarding did not make the key a provider"
    return account


def _patient(index: int) -> LocalAccount:
    account: LocalAccount = Account.from_key(ANVIL_KEYS[index])
    return account


def _operator_keys(server: DevServer, api: LedgerApi, relayed_tx: str) -> dict[str, str]:
    """The operator's keys -> the roles they hold: the admin and custodian `up` deployed with, and the relayer
    (the sender of a transaction the hub relayed). `up` runs on anvil's accounts, so their keys are known."""
    deployment = _deployment(server)
    relayer = api.chain.request("eth_getTransactionByHash", [relayed_tx])["from"]
    roles = {"admin": deployment["demo"]["admin"], "custodian": deployment["custodian"], "relayer": relayer}
    by_address = {Account.from_key(k).address: k for k in ANVIL_KEYS}
    keys: dict[str, str] = {}
    for role, address in sorted(roles.items()):
        key = by_address[to_checksum_address(address)]
        keys[key] = f"{keys[key]}, {role}" if key in keys else role
    return keys


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, f"not refused: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    return body


def _anchor(api: LedgerApi, provider: LocalAccount, patient: str) -> dict[str, Any]:
    """As the provider: sign in, store the (already encrypted) bytes, relay its signed RecordAnchor."""
    auth = api.sign_in(provider)
    ciphertext = secrets.token_bytes(300)
    stored = api.http.post(
        "/v1/blobs", content=ciphertext, headers={**auth, "Content-Type": "application/octet-stream"}
    )
    assert stored.status_code == 201, stored.text
    cid = stored.json()["cid"]
    assert stored.json()["size"] == len(ciphertext)
    anchor = {
        "patient": to_checksum_address(patient),
        "author": provider.address,
        "category": api.categories["laboratory"],
        "salt": fresh_salt(),
        "cid": hex0x(cid_bytes(cid)),
        "commitment": hex0x(bytes(keccak(secrets.token_bytes(32) + b"the plaintext"))),
        "nonce": api.nonce(provider.address),
        "deadline": api.deadline(),
    }
    signature = api.signed(provider.key, "RecordAnchor", anchor)
    response = api.relay("RecordAnchor", anchor, signature)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    OUTSIDE_RECORDS.add(answer["recordId"])
    expected_id = hex0x(
        bytes(keccak(abi_encode(("address", "address", "bytes32"), (patient, provider.address, anchor["salt"]))))
    )
    assert answer["recordId"] == expected_id and answer["version"] == 1, answer
    return {
        "anchor": anchor,
        "signature": signature,
        "answer": answer,
        "record_id": expected_id,
        "cid": cid,
        "ciphertext": ciphertext,
    }


def _grant(api: LedgerApi, patient: LocalAccount, grantee: str) -> str:
    grant = api.consent_grant(patient.address, grantee, nonce=api.nonce(patient.address))
    response = api.http.post(
        "/v1/consents", json={"grant": grant, "signature": api.signed(patient.key, "ConsentGrant", grant)}
    )
    assert response.status_code == 201, response.text
    consent_id = consent_id_of(patient.address, grantee, grant["scope"], grant["purpose"])
    assert response.json()["consentId"] == consent_id, response.json()
    return consent_id


# ----------------------------------------------------------------- the client is independent


_ALLOWED_IMPORTS = {"eth_account", "eth_utils", "httpx", "cryptography", "__future__"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            roots.add((node.module or "").split(".")[0])
    return roots


def test_the_client_imports_nothing_of_the_project() -> None:
    client = Path(independent_client.__file__)
    foreign = {r for r in _imported_roots(client) if r not in _ALLOWED_IMPORTS and r not in sys.stdlib_module_names}
    assert foreign == set(), f"the independent client imports {foreign}"
    # Nor does this module reach the project's code except through its command line and the dev server.
    here = _imported_roots(Path(__file__))
    assert not here & {"ledger_service", "consent_api", "scripts"}, here


def test_the_clients_type_strings_are_the_interfaces(api: LedgerApi) -> None:
    interface = (REPO / "contracts" / "src" / "IConsentLedger.sol").read_text()
    for type_string in TYPE_STRINGS:
        assert f"`{type_string}`" in interface, type_string
    # The domain separator this client computes is the contract's.
    separator = api.chain.view(api.ledger, "DOMAIN_SEPARATOR", (), ())[0]
    assert separator == api.eip712.domain_separator()


# ----------------------------------------------------------------- an outside provider acts in its own name


def test_an_outside_provider_anchors_a_record_in_its_own_name(api: LedgerApi, provider: LocalAccount) -> None:
    patient = _patient(4)
    first_block = api.chain.block_number() + 1
    made = _anchor(api, provider, patient.address)
    record_id, answer = made["record_id"], made["answer"]
    logs = api.events("RecordAnchored", record_id, from_block=first_block)
    assert len(logs) == 1, logs
    log = logs[0]
    assert log["transactionHash"] == answer["txHash"] and int(log["blockNumber"], 16) == answer["blockNumber"]
    assert log["topics"][2] == address_topic(patient.address)
    assert log["topics"][3] == address_topic(provider.address), "the author on chain is not the signing provider"
    # The anchored CID is the blob's, and the hub serves the provider's bytes back by it.
    data = unhex(log["data"])
    cid_offset = int.from_bytes(data[64:96], "big")
    cid_length = int.from_bytes(data[cid_offset : cid_offset + 32], "big")
    assert data[cid_offset + 32 : cid_offset + 32 + cid_length] == cid_bytes(made["cid"])
    back = api.http.get(f"/v1/blobs/{made['cid']}", headers=api.sign_in(provider))
    assert back.status_code == 200 and back.content == made["ciphertext"]
    # The identical signed message again: the first answer, nothing sent.
    again = api.relay("RecordAnchor", made["anchor"], made["signature"])
    assert again.status_code == 201 and again.json() == answer, again.text
    assert len(api.events("RecordAnchored", record_id, from_block=first_block)) == 1


def test_access_is_logged_only_with_consent_and_only_for_the_accessor_who_signed(
    api: LedgerApi, provider: LocalAccount
) -> None:
    patient = _patient(5)
    record_id = _anchor(api, provider, patient.address)["record_id"]

    def logged() -> list[dict[str, Any]]:
        return api.events("AccessLogged", record_id)

    # Without consent: 403, and nothing reaches the chain (the provider's nonce stays unused).
    request = api.access_request(patient.address, provider.address, record_id, nonce=api.nonce(provider.address))
    refused = api.relay("AccessRequest", request, api.signed(provider.key, "AccessRequest", request))
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert logged() == []
    assert not api.nonce_used(provider.address, request["nonce"])

    consent_id = _grant(api, patient, provider.address)
    assert api.is_authorized(patient.address, provider.address, record_id)

    request = api.access_request(patient.address, provider.address, record_id, nonce=api.nonce(provider.address))
    signature = api.signed(provider.key, "AccessRequest", request)
    done = api.relay("AccessRequest", request, signature)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["consentId"] == consent_id, answer
    events = logged()
    assert len(events) == 1, events
    event = events[0]
    assert event["transactionHash"] == answer["txHash"]
    assert event["topics"][2] == address_topic(patient.address)
    assert event["topics"][3] == address_topic(provider.address), "the accessor on chain is not the signer"
    version, purpose, logged_consent, request_digest = words(event["data"])
    assert int.from_bytes(version, "big") == 1 and hex0x(purpose) == request["purpose"]
    assert hex0x(logged_consent) == consent_id
    digest = api.eip712.digest("AccessRequest", request)
    assert request_digest == digest, "requestDigest is not the EIP-712 digest of the request the accessor signed"
    on_chain = api.chain.view(
        api.ledger, "accessRequestDigest", (struct_kinds("AccessRequest"),), (struct_values("AccessRequest", request),)
    )
    assert on_chain[0] == digest

    # The identical request again: the same transaction, no second disclosure.
    again = api.relay("AccessRequest", request, signature)
    assert again.status_code == 200 and again.json()["txHash"] == answer["txHash"], again.text
    assert len(logged()) == 1

    # A request naming the provider but signed by someone else: refused, no disclosure, no nonce spent.
    forged = api.access_request(patient.address, provider.address, record_id, nonce=api.nonce(provider.address))
    for key in (Account.create().key, ADMIN_KEY, patient.key):
        refused = api.relay("AccessRequest", forged, api.signed(key, "AccessRequest", forged))
        problem = _problem(refused)
        assert problem.get("reason") == "bad-signature", problem
    assert len(logged()) == 1
    assert not api.nonce_used(provider.address, forged["nonce"])


def test_the_accessors_request_signed_again_by_another_key_is_refused(api: LedgerApi, provider: LocalAccount) -> None:
    """An identical resubmission is the same message with the same signature; the same fields signed by
    someone else are a forgery, refused like any other (not answered as the accessor's logged access)."""
    patient: LocalAccount = Account.create()  # a patient pays no gas: any key will do
    record_id = _anchor(api, provider, patient.address)["record_id"]
    _grant(api, patient, provider.address)
    request = api.access_request(patient.address, provider.address, record_id, nonce=api.nonce(provider.address))
    done = api.relay("AccessRequest", request, api.signed(provider.key, "AccessRequest", request))
    assert done.status_code == 200, done.text
    forged = api.relay("AccessRequest", request, api.signed(Account.create().key, "AccessRequest", request))
    assert _problem(forged).get("reason") == "bad-signature"


# ----------------------------------------------------------------- the operator's keys act for no one


def _assert_refused(api: LedgerApi, key: str, data: bytes, error: str) -> None:
    """The call reverts with ``error`` (``eth_call``), and sent for real it is mined reverted (status 0)."""
    sender = Account.from_key(key).address
    with pytest.raises(Reverted) as reverted:
        api.chain.call(api.ledger, data, sender=sender)
    assert reverted.value.error == error, f"expected {error}, reverted with 0x{reverted.value.data.hex()}"
    receipt = api.chain.send(key, api.ledger, data)
    assert int(receipt["status"], 16) == 0, f"the ledger accepted the operator's transaction {receipt}"


def test_the_operators_keys_cannot_anchor_log_access_or_erase_in_anyones_name(
    server: DevServer, api: LedgerApi, provider: LocalAccount
) -> None:
    patient = _patient(6)
    made = _anchor(api, provider, patient.address)
    record_id = made["record_id"]
    _grant(api, patient, provider.address)  # so the access attempts get as far as the signature check
    first_block = api.chain.block_number() + 1
    operators = _operator_keys(server, api, made["answer"]["txHash"])
    for key, role in operators.items():
        operator = Account.from_key(key).address
        anchor = call_data(
            "anchorRecord",
            ("address", "bytes32", "bytes32", "bytes", "bytes32"),
            (
                patient.address,
                api.categories["laboratory"],
                fresh_salt(),
                made["anchor"]["cid"],
                made["anchor"]["commitment"],
            ),
        )
        _assert_refused(api, key, anchor, "NotActiveProvider")

        request = api.access_request(patient.address, provider.address, record_id, nonce=api.nonce(provider.address))
        access = call_data(
            "logAccessBySig",
            (struct_kinds("AccessRequest"), "bytes"),
            (struct_values("AccessRequest", request), api.signed(key, "AccessRequest", request)),
        )
        _assert_refused(api, key, access, "InvalidSigner")

        erase = call_data("eraseRecord", ("address", "bytes32"), (patient.address, record_id))
        _assert_refused(api, key, erase, "NotPatientOrDelegate")

        signed_erase = api.record_erase(patient.address, record_id, nonce=api.nonce(operator))
        erase_by_sig = call_data(
            "eraseRecordBySig",
            (struct_kinds("RecordErase"), "bytes"),
            (struct_values("RecordErase", signed_erase), api.signed(key, "RecordErase", signed_erase)),
        )
        _assert_refused(api, key, erase_by_sig, "InvalidSigner")
        assert api.events("RecordAnchored", None, address_topic(patient.address), address_topic(operator)) == [], role

    assert api.events("AccessLogged", record_id, from_block=first_block) == []
    assert api.events("RecordErased", record_id) == []
    assert not _erased_on_chain(api, patient.address, record_id, author=provider.address)


def _erased_on_chain(api: LedgerApi, patient: str, record_id: str, *, author: str) -> bool:
    """``record(patient, id)``: the head's (author, version, categoryIndex, erased), then the head hash."""
    head = api.chain.view(api.ledger, "record", ("address", "bytes32"), (patient, record_id))
    assert word_address(head[0]) == author, "the record's author changed"
    return int.from_bytes(head[3], "big") == 1


def _upload_through_the_hub(api: LedgerApi, patient: str) -> str:
    """A record the Demo Clinic uploads through the hub's node (which holds the clinic's key in `up`)."""
    clinic = Account.from_key(ANVIL_KEYS[1])
    body = {"patient": patient, "category": "laboratory", "mediaType": "text/plain", "content": "bGFiIHJlc3VsdA=="}
    response = api.http.post("/v1/records", json=body, headers=api.sign_in(clinic))
    assert response.status_code == 201, response.text
    record_id: str = response.json()["recordId"]
    return record_id


def _assert_erased_by(api: LedgerApi, record_id: str, patient: str, tx_hash: str) -> None:
    events = api.events("RecordErased", record_id)
    assert len(events) == 1, events
    assert events[0]["transactionHash"] == tx_hash
    assert events[0]["topics"][2] == address_topic(patient)
    assert word_address(words(events[0]["data"])[0]) == patient, "erasedBy is not the patient who signed"


def test_only_the_patients_signed_erasure_erases_through_the_hub(api: LedgerApi) -> None:
    patient = _patient(7)
    record_id = _upload_through_the_hub(api, patient.address)
    clinic = Account.from_key(ANVIL_KEYS[1])
    # Signed by an operator key or by the record's author: refused as a bad signature; nothing erased.
    for key in (ADMIN_KEY, clinic.key):
        erase = api.record_erase(patient.address, record_id, nonce=api.nonce(Account.from_key(key).address))
        body = {"erase": erase, "signature": api.signed(key, "RecordErase", erase)}
        problem = _problem(api.http.request("DELETE", f"/v1/records/{record_id}", json=body))
        assert problem.get("reason") == "bad-signature", problem
    assert api.events("RecordErased", record_id) == []
    assert not _erased_on_chain(api, patient.address, record_id, author=clinic.address)

    erase = api.record_erase(patient.address, record_id, nonce=api.nonce(patient.address))
    body = {"erase": erase, "signature": api.signed(patient.key, "RecordErase", erase)}
    response = api.http.request("DELETE", f"/v1/records/{record_id}", json=body)
    assert response.status_code == 200, response.text
    _assert_erased_by(api, record_id, patient.address, response.json()["txHash"])
    assert _erased_on_chain(api, patient.address, record_id, author=clinic.address)


def test_the_patient_erases_the_outside_providers_record_by_relaying_the_signed_erasure(
    api: LedgerApi, provider: LocalAccount
) -> None:
    patient = _patient(8)
    made = _anchor(api, provider, patient.address)
    record_id = made["record_id"]
    erase = api.record_erase(patient.address, record_id, nonce=api.nonce(patient.address))
    response = api.relay("RecordErase", erase, api.signed(patient.key, "RecordErase", erase))
    assert response.status_code == 200, response.text
    _assert_erased_by(api, record_id, patient.address, response.json()["txHash"])
    assert _erased_on_chain(api, patient.address, record_id, author=provider.address)
    _assert_blob_gone(api.http.get(f"/v1/blobs/{made['cid']}", headers=api.sign_in(provider)), made["ciphertext"])


def test_the_patient_erases_the_outside_providers_record_through_the_hub(
    api: LedgerApi, provider: LocalAccount
) -> None:
    patient = _patient(9)
    made = _anchor(api, provider, patient.address)
    record_id = made["record_id"]
    erase = api.record_erase(patient.address, record_id, nonce=api.nonce(patient.address))
    body = {"erase": erase, "signature": api.signed(patient.key, "RecordErase", erase)}
    response = api.http.request("DELETE", f"/v1/records/{record_id}", json=body)
    assert response.status_code == 200, response.text
    _assert_erased_by(api, record_id, patient.address, response.json()["txHash"])
    gone = api.http.get(f"/v1/blobs/{made['cid']}", headers=api.sign_in(provider))
    _assert_blob_gone(gone, made["ciphertext"])


def _assert_blob_gone(response: httpx.Response, ciphertext: bytes) -> None:
    # The hub answers a blob it no longer has with a 404 not-found problem.
    assert response.status_code == 404 and response.content != ciphertext, "the erased ciphertext is still served"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert response.json()["type"] == "/problems/not-found", response.text


def test_the_auditors_verifier_accepts_the_ledger(server: DevServer) -> None:
    """Last: the whole ledger this module wrote, checked by `consent-ledger verify` against the chain."""
    done = _consent_ledger("verify", "--data-dir", str(server.data_dir), "--no-progress", "--json")
    if done.returncode == 0:
        return
    report = json.loads(done.stdout) if done.stdout.lstrip().startswith("{") else {}
    violations = report.get("violations") or []
    outside_provider_gap = violations and all(
        v["code"] in ("version-unknown-to-operator", "event-without-delivery") and v["recordId"] in OUTSIDE_RECORDS
        for v in violations
    )
    if outside_provider_gap:
        pytest.xfail(
            "the verifier expects the operator's own rows for every anchored version and a delivery-log row for "
            "every disclosure: an outside provider's records and the AccessRequests it relayed through "
            f"POST /v1/relay are reported as version-unknown-to-operator / event-without-delivery "
            f"({len(violations)} violations)"
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
