"""The passkey account routes (README, "The hub's routes"): created and changed by the hub's relayer, every
refusal a problem with nothing sent. The app on the real anvil, with a software passkey
(tests/security/independent_client.py, ``SoftPasskey``) signing as a browser's authenticator would."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eth_account import Account

from ledger_service.domain.passkeys import P256_P, Passkey
from tests.api.conftest import Api, assert_problem
from tests.security.independent_client import ACCOUNT_DOMAIN_NAME, Eip712, SoftPasskey, hex0x

pytestmark = pytest.mark.integration


def _sent(api: Api) -> int:
    relayer = api.services.ledger.sender
    assert relayer is not None
    return int(api.services.rpc.request("eth_getTransactionCount", [relayer.address, "latest"]), 16)


def _create(api: Api, passkey: SoftPasskey) -> str:
    response = api.client.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert response.status_code == 201, response.text
    return str(response.json()["address"])


def _change(
    api: Api, account: str, primary: str, key: SoftPasskey, signer: SoftPasskey, **fields: Any
) -> dict[str, Any]:
    """A signed AddPasskey / RemovePasskey body for ``account`` (its own EIP-712 domain), computed by the test."""
    message = {"qx": key.x, "qy": key.y, "nonce": secrets.randbits(60), "deadline": api.chain.now() + 600, **fields}
    digest = Eip712(api.services.deployment.chain_id, account, ACCOUNT_DOMAIN_NAME).digest(primary, message)
    return {
        "publicKey": key.public_key,
        "nonce": message["nonce"],
        "deadline": message["deadline"],
        "signature": hex0x(signer.sign(digest)),
    }


def test_the_chain_names_the_account_factory(api: Api) -> None:
    contracts = api.client.get("/v1/chain").json()["contracts"]
    factory = contracts["PatientAccountFactory"]
    assert factory == api.services.deployment.account_factory
    assert api.services.rpc.code_at(factory)


def test_an_account_is_created_once_and_described_from_the_chain(api: Api) -> None:
    passkey = SoftPasskey()
    sent = _sent(api)
    created = api.client.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert created.status_code == 201, created.text
    address, tx_hash = created.json()["address"], created.json()["txHash"]
    assert address == api.services.hub_accounts.accounts.account_of(Passkey.of(passkey.x, passkey.y))
    receipt = api.services.rpc.receipt(bytes.fromhex(tx_hash[2:]))
    assert receipt is not None and receipt.status == 1 and api.services.rpc.code_at(address)

    again = api.client.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert again.status_code == 200, again.text
    assert again.json() == {"address": address, "txHash": None}
    assert _sent(api) == sent + 1, "the second request sent a transaction"

    described = api.client.get(f"/v1/accounts/{address.lower()}")
    assert described.status_code == 200, described.text
    assert described.json() == {"address": address, "deployed": True, "passkeys": [passkey.public_key]}


@pytest.mark.parametrize(
    "key",
    [
        {"x": "0x" + "00" * 32, "y": "0x" + "00" * 32},  # the zero key
        "off-curve",
        {"x": hex0x(P256_P.to_bytes(32, "big")), "y": "0x" + "00" * 31 + "01"},  # x not reduced
        {"x": "0x1234", "y": "0x" + "00" * 32},
        {"x": "0x" + "zz" * 32, "y": "0x" + "00" * 32},
    ],
)
def test_a_key_off_the_curve_is_refused_and_nothing_is_sent(api: Api, key: Any) -> None:
    if key == "off-curve":
        passkey = SoftPasskey()
        key = {"x": passkey.public_key["x"], "y": hex0x((int.from_bytes(passkey.y, "big") ^ 1).to_bytes(32, "big"))}
    sent = _sent(api)
    assert_problem(api.client.post("/v1/accounts", json={"publicKey": key}), 400, "invalid-passkey")
    assert _sent(api) == sent


def test_an_address_that_is_no_account_of_the_factory_is_not_found(api: Api) -> None:
    assert_problem(api.client.get(f"/v1/accounts/{Account.create().address}"), 404, "account-not-found")
    # code, but not one of the factory's clones
    assert_problem(api.client.get(f"/v1/accounts/{api.services.deployment.ledger_address}"), 404, "account-not-found")
    assert_problem(api.client.get("/v1/accounts/0x1234"), 400, "validation-error")
    other = SoftPasskey()
    body = _change(api, Account.create().address, "AddPasskey", SoftPasskey(), other)
    assert_problem(
        api.client.post(f"/v1/accounts/{Account.create().address}/passkeys", json=body), 404, "account-not-found"
    )


def test_a_second_device_is_added_and_removed_by_signed_messages(api: Api) -> None:
    phone, laptop = SoftPasskey(), SoftPasskey()
    account = _create(api, phone)

    add = _change(api, account, "AddPasskey", laptop, phone)
    added = api.client.post(f"/v1/accounts/{account}/passkeys", json=add)
    assert added.status_code == 200, added.text
    tx_hash = added.json()["txHash"]
    keys = api.client.get(f"/v1/accounts/{account}").json()["passkeys"]
    assert keys == [phone.public_key, laptop.public_key]

    # The identical request again (a retry) answers with the first transaction and sends nothing.
    sent = _sent(api)
    again = api.client.post(f"/v1/accounts/{account}/passkeys", json=add)
    assert again.status_code == 200 and again.json()["txHash"] == tx_hash
    assert _sent(api) == sent

    # The laptop removes itself; then the phone is the last passkey and cannot go.
    removed = api.client.post(
        f"/v1/accounts/{account}/passkeys/remove", json=_change(api, account, "RemovePasskey", laptop, laptop)
    )
    assert removed.status_code == 200, removed.text
    assert api.client.get(f"/v1/accounts/{account}").json()["passkeys"] == [phone.public_key]
    last = api.client.post(
        f"/v1/accounts/{account}/passkeys/remove", json=_change(api, account, "RemovePasskey", phone, phone)
    )
    assert assert_problem(last, 409, "passkey-refused")["reason"] == "last-passkey"


def test_refused_passkey_changes_are_problems_and_send_nothing(api: Api) -> None:
    phone, laptop, stranger = SoftPasskey(), SoftPasskey(), SoftPasskey()
    account = _create(api, phone)
    route = f"/v1/accounts/{account}/passkeys"
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        # signed by a passkey that is not the account's
        (_change(api, account, "AddPasskey", laptop, stranger), 400, "invalid-signature", "bad-signature"),
        # signed by the phone, but a RemovePasskey passed off as an AddPasskey
        (_change(api, account, "RemovePasskey", laptop, phone), 400, "invalid-signature", "bad-signature"),
        # signed by the phone for another account
        (_change(api, _create(api, stranger), "AddPasskey", laptop, phone), 400, "invalid-signature", "bad-signature"),
        # past its deadline
        (
            _change(api, account, "AddPasskey", laptop, phone, deadline=api.chain.now() - 1),
            400,
            "invalid-signature",
            "deadline-passed",
        ),
        # the phone is a passkey already
        (_change(api, account, "AddPasskey", phone, phone), 409, "passkey-refused", "already-a-passkey"),
    ]
    sent = _sent(api)  # after the stranger's account above
    for body, status, code, reason in cases:
        problem = assert_problem(api.client.post(route, json=body), status, code)
        assert problem["reason"] == reason, problem
    tampered = _change(api, account, "AddPasskey", laptop, phone)
    signature = bytearray.fromhex(tampered["signature"][2:])
    signature[-40] ^= 1  # a byte of the client data JSON
    tampered["signature"] = hex0x(bytes(signature))
    assert_problem(api.client.post(route, json=tampered), 400, "invalid-signature")
    assert _sent(api) == sent, "a refused change sent a transaction"
    assert api.client.get(f"/v1/accounts/{account}").json()["passkeys"] == [phone.public_key]

    # A used nonce: the first message lands, a second one with its nonce is refused.
    first = _change(api, account, "AddPasskey", laptop, phone)
    assert api.client.post(route, json=first).status_code == 200
    reuse = _change(api, account, "AddPasskey", stranger, phone, nonce=first["nonce"])
    assert assert_problem(api.client.post(route, json=reuse), 400, "invalid-signature")["reason"] == "nonce-used"
