"""Sign-in of contract accounts (hub/auth.py): ERC-1271 for a deployed account, ERC-6492 for a passkey account of
this deployment's factory not deployed yet, played as attacks against the app on the real anvil.

Every forgery below must be refused with a 401 ``invalid-sign-in`` problem and no token; a refused ERC-6492
sign-in deploys nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from ledger_service.bootstrap import admin_sender
from ledger_service.chain.deploy import deploy_account_factory
from ledger_service.domain.passkeys import Passkey
from tests.api.conftest import HOST, Api, assert_problem
from tests.security.independent_client import (
    ERC6492_MAGIC,
    SoftPasskey,
    call_data,
    erc6492_wrap,
    hex0x,
    personal_digest,
    siwe_message,
)

pytestmark = pytest.mark.integration

URL = f"http://{HOST}"


def _message(api: Api, address: str) -> str:
    nonce = api.client.get("/v1/auth/nonce").json()["nonce"]
    return siwe_message(URL, address, api.services.deployment.chain_id, nonce)


def _login(api: Api, message: str, signature: bytes) -> httpx.Response:
    return api.client.post("/v1/auth/login", json={"message": message, "signature": hex0x(signature)})


def _refused(response: httpx.Response, needle: str, what: str = "") -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text}"
    problem = assert_problem(response, 401, "invalid-sign-in")
    assert "token" not in response.json()
    assert needle in str(problem["detail"]), (what, problem)


def _create(api: Api, passkey: SoftPasskey) -> str:
    response = api.client.post("/v1/accounts", json={"publicKey": passkey.public_key})
    assert response.status_code == 201, response.text
    return str(response.json()["address"])


def _create_call(passkey: SoftPasskey) -> bytes:
    return call_data("createAccount", ("bytes32", "bytes32"), (passkey.x, passkey.y))


def _address_of(api: Api, passkey: SoftPasskey) -> str:
    """The address the factory would deploy the passkey's account at; not deployed."""
    address = api.services.hub_accounts.accounts.account_of(Passkey.of(passkey.x, passkey.y))
    assert not api.services.rpc.code_at(address)
    return address


def test_a_deployed_passkey_account_signs_in_by_erc1271(api: Api) -> None:
    passkey = SoftPasskey()
    account = _create(api, passkey)
    message = _message(api, account)
    response = _login(api, message, passkey.sign(personal_digest(message)))
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["address"] == account


def test_a_fresh_passkey_account_signs_in_by_erc6492_and_is_deployed_first(api: Api) -> None:
    passkey = SoftPasskey()
    account = _address_of(api, passkey)
    message = _message(api, account)
    wrapped = erc6492_wrap(
        api.services.deployment.account_factory, _create_call(passkey), passkey.sign(personal_digest(message))
    )
    response = _login(api, message, wrapped)
    assert response.status_code == 200, response.text
    assert response.json()["address"] == account
    assert api.services.rpc.code_at(account), "the account was not deployed"
    # Once deployed, the same kind of wrapped signature still signs in (the wrapper's creation is a no-op).
    again = _message(api, account)
    wrapped = erc6492_wrap(
        api.services.deployment.account_factory, _create_call(passkey), passkey.sign(personal_digest(again))
    )
    assert _login(api, again, wrapped).status_code == 200


def test_an_ordinary_account_still_signs_in_by_ecdsa(api: Api) -> None:
    patient = Account.create()
    message = _message(api, patient.address)
    signature = bytes(Account.sign_message(encode_defunct(text=message), patient.key).signature)
    assert _login(api, message, signature).status_code == 200


def _tamper(signature: bytes, at: int) -> bytes:
    altered = bytearray(signature)
    altered[at] ^= 0x01
    return bytes(altered)


def test_forged_erc1271_sign_ins_are_refused(api: Api) -> None:
    passkey, other = SoftPasskey(), SoftPasskey()
    account = _create(api, passkey)
    _create(api, other)
    message = _message(api, account)
    genuine = passkey.sign(personal_digest(message))

    attempts: list[tuple[str, Callable[[str], bytes]]] = [
        ("r altered", lambda m: _tamper(passkey.sign(personal_digest(m)), 5)),
        ("client data altered", lambda m: _tamper(passkey.sign(personal_digest(m)), len(genuine) - 40)),
        ("authenticator flags without user verification", lambda m: passkey.sign(personal_digest(m), flags=0x01)),
        ("an assertion of another message", lambda m: passkey.sign(personal_digest(m + "\nResources:\n- x"))),
        ("another account's passkey", lambda m: other.sign(personal_digest(m))),
        (
            "an ECDSA signature of another key",
            lambda m: bytes(Account.sign_message(encode_defunct(text=m), Account.create().key).signature),
        ),
        ("garbage", lambda m: b"\x01" * 300),
    ]
    for what, sign in attempts:
        fresh = _message(api, account)
        _refused(_login(api, fresh, sign(fresh)), "does not accept the signature", what)


def test_forged_erc6492_sign_ins_are_refused_and_deploy_nothing(api: Api) -> None:
    passkey, other = SoftPasskey(), SoftPasskey()
    account = _address_of(api, passkey)
    factory = api.services.deployment.account_factory
    # A second, genuine PatientAccountFactory: the same code, but not this deployment's.
    foreign = deploy_account_factory(admin_sender(api.services.settings, api.services.rpc))

    def wrapped(message: str, wrapper_factory: str, calldata: bytes) -> bytes:
        return erc6492_wrap(wrapper_factory, calldata, passkey.sign(personal_digest(message)))

    cases: list[tuple[str, Callable[[str], bytes]]] = [
        ("not with this deployment's PatientAccountFactory", lambda m: wrapped(m, foreign, _create_call(passkey))),
        ("not the message's account", lambda m: wrapped(m, factory, _create_call(other))),
        ("is not createAccount(qx, qy)", lambda m: wrapped(m, factory, _create_call(passkey) + b"\x00")),
        ("is not createAccount(qx, qy)", lambda m: wrapped(m, factory, b"\x12\x34\x56\x78" + passkey.x + passkey.y)),
        ("not abi.encode", lambda m: wrapped(m, factory, _create_call(passkey))[:-32] + b"\x00" + ERC6492_MAGIC),
        ("has no code", lambda m: passkey.sign(personal_digest(m))),  # not wrapped: an undeployed address
    ]
    for needle, sign in cases:
        message = _message(api, account)
        _refused(_login(api, message, sign(message)), needle, needle)
    assert not api.services.rpc.code_at(account)
    other_account = _address_of(api, other)
    assert not api.services.rpc.code_at(other_account)

    # The right wrapper around a wrong assertion deploys the account (anyone may create it) but signs no one in.
    message = _message(api, account)
    signature = erc6492_wrap(factory, _create_call(passkey), other.sign(personal_digest(message)))
    _refused(_login(api, message, signature), "does not accept the signature")


def test_used_and_expired_nonces_are_refused_before_any_deployment(api: Api) -> None:
    passkey = SoftPasskey()
    account = _create(api, passkey)
    message = _message(api, account)
    signature = passkey.sign(personal_digest(message))
    assert _login(api, message, signature).status_code == 200
    _refused(_login(api, message, signature), "already used")  # a replay of a sign-in that worked

    fresh = SoftPasskey()
    undeployed = _address_of(api, fresh)
    message = _message(api, undeployed)
    wrapped = erc6492_wrap(
        api.services.deployment.account_factory, _create_call(fresh), fresh.sign(personal_digest(message))
    )
    auth = api.services.auth
    clock = auth._clock
    auth._clock = lambda: time.time() + 601  # the nonce's 10 minutes are over (the message's 15 are not)
    try:
        _refused(_login(api, message, wrapped), "expired")
    finally:
        auth._clock = clock
    assert not api.services.rpc.code_at(undeployed), "an expired sign-in deployed the account"
