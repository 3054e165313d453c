"""A passkey patient, played by a client that shares no code with the project, against a real `consent-ledger up`.

The client (tests/security/independent_client.py) holds a software WebAuthn authenticator written from the
specification and computes every digest itself: it creates its account through ``POST /v1/accounts``, signs an
EIP-712 ``ConsentGrant`` with its passkey and relays it through ``POST /v1/consents``, and the grant lands on chain
with the account contract as its patient. A tampered assertion is refused and lands nothing. It signs in with its
passkey (ERC-1271, and ERC-6492 for an account not deployed yet), adds a second device, grants with it, removes it,
and the removed device no longer signs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import DevServer
from tests.security.independent_client import (
    LedgerApi,
    SoftPasskey,
    address_topic,
    bytes32_text,
    consent_id_of,
    erc6492_wrap,
    hex0x,
    personal_digest,
    word_address,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("passkeys")
    dev = DevServer(root / "data", root / "up.log").start()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def api(server: DevServer) -> Iterator[LedgerApi]:
    client = LedgerApi(server.url, server.rpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def providers(api: LedgerApi) -> list[str]:
    demo = api.http.get("/v1/chain").raise_for_status().json()["demo"]
    return [p["address"] for p in demo["providers"]]


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, f"not refused: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    return body


def _create(api: LedgerApi, passkey: SoftPasskey) -> str:
    response = api.http.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert response.status_code == 201, response.text
    address = str(response.json()["address"])
    assert address == api.account_of(passkey), "the hub's address is not the factory's accountOf(qx, qy)"
    assert api.code(address), "no account deployed"
    return address


def _grant_body(api: LedgerApi, account: str, grantee: str, signer: SoftPasskey) -> dict[str, Any]:
    grant = api.consent_grant(account, grantee, nonce=api.nonce(account))
    return {"grant": grant, "signature": hex0x(signer.sign(api.eip712.digest("ConsentGrant", grant)))}


def _landed(api: LedgerApi, account: str, grantee: str) -> bool:
    consent = consent_id_of(account, grantee, "0x" + "00" * 32, bytes32_text("TREAT"))
    return any(log["topics"][1] == consent for log in api.events("ConsentGranted", None, address_topic(account)))


def test_a_passkey_patient_grants_consent_through_its_account(api: LedgerApi, providers: list[str]) -> None:
    passkey = SoftPasskey()
    account = _create(api, passkey)
    again = api.http.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert again.status_code == 200 and again.json() == {"address": account, "txHash": None}
    described = api.http.get(f"/v1/accounts/{account}").raise_for_status().json()
    assert described == {"address": account, "deployed": True, "passkeys": [passkey.public_key]}

    body = _grant_body(api, account, providers[0], passkey)
    response = api.http.post("/v1/consents", json=body)
    assert response.status_code == 201, response.text
    consent = consent_id_of(account, providers[0], body["grant"]["scope"], body["grant"]["purpose"])
    assert response.json()["consentId"] == consent
    assert api.consent_state(consent)["patient"] == account
    (event,) = [log for log in api.events("ConsentGranted", consent)]
    assert word_address(bytes.fromhex(event["topics"][2][2:])) == account  # the patient is the account contract
    assert api.nonce_used(account, body["grant"]["nonce"])


def test_a_tampered_assertion_is_refused_and_lands_nothing(api: LedgerApi, providers: list[str]) -> None:
    passkey = SoftPasskey()
    account = _create(api, passkey)
    body = _grant_body(api, account, providers[1], passkey)
    signature = bytearray.fromhex(body["signature"][2:])
    signature[40] ^= 0x01  # a byte of s
    refused = api.http.post("/v1/consents", json={**body, "signature": hex0x(bytes(signature))})
    assert _problem(refused)["type"] == "/problems/invalid-signature"
    # The same grant with the assertion of another digest (the grant's nonce changed after signing).
    other = {**body, "grant": {**body["grant"], "nonce": body["grant"]["nonce"] + 1}}
    assert _problem(api.http.post("/v1/consents", json=other))["type"] == "/problems/invalid-signature"
    assert not _landed(api, account, providers[1])
    assert not api.nonce_used(account, body["grant"]["nonce"])


def test_a_passkey_signs_in_by_erc1271_and_a_fresh_one_by_erc6492(api: LedgerApi) -> None:
    passkey = SoftPasskey()
    account = _create(api, passkey)
    signed_in = api.sign_in_with(account, lambda message: passkey.sign(personal_digest(message)))
    assert signed_in.status_code == 200, signed_in.text
    me = api.http.get("/v1/me", headers={"Authorization": f"Bearer {signed_in.json()['token']}"})
    assert me.status_code == 200 and me.json()["address"] == account

    fresh = SoftPasskey()
    undeployed = api.account_of(fresh)
    assert not api.code(undeployed)
    forged = api.sign_in_with(undeployed, lambda message: fresh.sign(personal_digest(message)))
    assert _problem(forged)["type"] == "/problems/invalid-sign-in"  # not wrapped: an address without code
    factory, create = api.account_factory, api.create_account_call(fresh)
    wrapped = api.sign_in_with(
        undeployed, lambda message: erc6492_wrap(factory, create, fresh.sign(personal_digest(message)))
    )
    assert wrapped.status_code == 200, wrapped.text
    assert wrapped.json()["address"] == undeployed and api.code(undeployed)


def test_a_second_device_grants_until_it_is_removed(api: LedgerApi, providers: list[str]) -> None:
    phone, laptop = SoftPasskey(), SoftPasskey()
    account = _create(api, phone)
    added = api.http.post(
        f"/v1/accounts/{account}/passkeys", json=api.passkey_change(account, "AddPasskey", laptop, phone)
    )
    assert added.status_code == 200, added.text
    keys = api.http.get(f"/v1/accounts/{account}").json()["passkeys"]
    assert keys == [phone.public_key, laptop.public_key]

    by_laptop = api.http.post("/v1/consents", json=_grant_body(api, account, providers[0], laptop))
    assert by_laptop.status_code == 201, by_laptop.text
    assert _landed(api, account, providers[0])

    removal = api.passkey_change(account, "RemovePasskey", laptop, phone)
    removed = api.http.post(f"/v1/accounts/{account}/passkeys/remove", json=removal)
    assert removed.status_code == 200, removed.text
    assert api.account_nonce_used(account, removal["nonce"])
    assert api.http.get(f"/v1/accounts/{account}").json()["passkeys"] == [phone.public_key]

    after = _grant_body(api, account, providers[1], laptop)
    refused = api.http.post("/v1/consents", json=after)
    assert _problem(refused)["type"] == "/problems/invalid-signature"
    assert not _landed(api, account, providers[1])
    assert not api.nonce_used(account, after["grant"]["nonce"])
    signed_in = api.sign_in_with(account, lambda message: laptop.sign(personal_digest(message)))
    assert _problem(signed_in)["type"] == "/problems/invalid-sign-in"


def test_an_assertion_longer_than_a_kilobyte_is_relayed(api: LedgerApi, providers: list[str]) -> None:
    """A WebAuthn assertion's size is the authenticator's and the browser's (clientDataJSON may carry more
    members, authenticatorData extensions): the routes take what the relay takes, not ECDSA-sized fields."""
    passkey = SoftPasskey(origin="https://" + "patients." * 90 + "example.org")
    account = _create(api, passkey)
    body = _grant_body(api, account, providers[0], passkey)
    assert len(body["signature"]) > 2 + 2 * 1024
    response = api.http.post("/v1/consents", json=body)
    assert response.status_code == 201, response.text
    assert _landed(api, account, providers[0])
