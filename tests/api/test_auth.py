"""Sign-In with Ethereum through the real endpoints, and the bearer token's limits."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from ledger_service.domain import siwe
from ledger_service.hub.auth import NONCE_TTL_SECONDS, AuthService, load_or_create_secret
from tests.api.conftest import HOST, Api, assert_problem

pytestmark = pytest.mark.integration


def _message(
    api: Api,
    account: LocalAccount,
    *,
    nonce: str | None = None,
    domain: str = HOST,
    uri: str = f"http://{HOST}/portal",
    chain_id: int | None = None,
    issued_at: datetime | None = None,
    expires_in: timedelta | None = timedelta(minutes=10),
) -> str:
    issued = issued_at or datetime.now(UTC)
    return siwe.render(
        siwe.SiweMessage(
            domain=domain,
            address=account.address,
            statement="Sign in to Consent Ledger",
            uri=uri,
            version="1",
            chain_id=chain_id if chain_id is not None else api.services.deployment.chain_id,
            nonce=nonce or api.client.get("/v1/auth/nonce").json()["nonce"],
            issued_at=issued,
            expiration_time=issued + expires_in if expires_in else None,
            not_before=None,
            request_id=None,
            resources=(),
        )
    )


def _sign(account: LocalAccount, message: str) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), account.key).signature).hex()


def _login(api: Api, account: LocalAccount, message: str, signer: LocalAccount | None = None) -> object:
    return api.client.post("/v1/auth/login", json={"message": message, "signature": _sign(signer or account, message)})


def test_nonce_is_fresh_and_alphanumeric(api: Api) -> None:
    first, second = (api.client.get("/v1/auth/nonce").json()["nonce"] for _ in range(2))
    assert first != second
    assert len(first) >= 8 and first.isalnum()


def test_login_gives_a_token_bound_to_the_address_with_roles_from_chain(api: Api) -> None:
    clinic = api.chain.clinic
    response = _login(api, clinic, _message(api, clinic))
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["address"] == clinic.address
    assert {"provider", "emergency"} <= set(body["roles"])
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["address"] == clinic.address


def test_replayed_nonce_is_refused(api: Api) -> None:
    patient = api.new_patient()
    message = _message(api, patient)
    assert _login(api, patient, message).status_code == 200  # type: ignore[attr-defined]
    assert_problem(_login(api, patient, message), 401, "invalid-sign-in")


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("wrong-domain", "domain"),
        ("wrong-uri", "URI"),
        ("wrong-chain", "chain"),
        ("expired", "expired"),
        ("issued-long-ago", "too long ago"),
        ("unknown-nonce", "nonce"),
        ("other-signer", "signature is by"),
    ],
)
def test_sign_in_refusals_name_their_reason(api: Api, case: str, needle: str) -> None:
    patient = api.new_patient()
    kwargs: dict[str, object] = {}
    signer = None
    if case == "wrong-domain":
        kwargs["domain"] = "evil.example"
    elif case == "wrong-uri":
        kwargs["uri"] = "https://evil.example/"
    elif case == "wrong-chain":
        kwargs["chain_id"] = 1
    elif case == "expired":
        kwargs["issued_at"] = datetime.now(UTC) - timedelta(minutes=3)
        kwargs["expires_in"] = timedelta(minutes=1)
    elif case == "issued-long-ago":
        kwargs["issued_at"] = datetime.now(UTC) - timedelta(hours=2)
        kwargs["expires_in"] = timedelta(hours=3)
    elif case == "unknown-nonce":
        kwargs["nonce"] = "abcdefgh12345678"
    elif case == "other-signer":
        signer = api.new_patient()
    body = assert_problem(_login(api, patient, _message(api, patient, **kwargs), signer), 401, "invalid-sign-in")  # type: ignore[arg-type]
    assert needle in str(body["detail"])


def test_malformed_sign_in_is_a_clear_error(api: Api) -> None:
    assert_problem(
        api.client.post("/v1/auth/login", json={"message": "hello", "signature": "0x00"}), 401, "invalid-sign-in"
    )
    assert_problem(api.client.post("/v1/auth/login", json={"message": 3}), 400, "validation-error")


def test_expired_forged_and_missing_tokens_are_unauthorized(api: Api) -> None:
    address = api.chain.clinic.address
    assert_problem(api.client.get("/v1/me"), 401, "unauthorized")
    token, _ = api.services.auth.issue_token(address)
    payload, mac = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    assert_problem(api.client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401, "unauthorized")
    expired, _ = api.services.auth.issue_token(address, datetime.now(UTC) - timedelta(seconds=1))
    body = assert_problem(api.client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"}), 401, "unauthorized")
    assert "expired" in str(body["detail"])


def test_a_nonce_edited_to_live_longer_or_expired_is_refused(api: Api) -> None:
    """Nonces are signed, not stored: their expiry is part of what the server signed."""
    patient = api.new_patient()
    fresh = api.client.get("/v1/auth/nonce").json()["nonce"]
    extended = f"{int(fresh[:10], 16) + 86_400:010x}" + fresh[10:]  # a day more, same MAC
    body = assert_problem(_login(api, patient, _message(api, patient, nonce=extended)), 401, "invalid-sign-in")
    assert "not issued by this server" in str(body["detail"])
    secret = load_or_create_secret(api.services.settings.data_dir / "keys" / "api-token.key")
    issued_long_ago = AuthService(
        db=api.services.db,
        secret=secret,
        chain_id=api.services.deployment.chain_id,
        clock=lambda: time.time() - 2 * NONCE_TTL_SECONDS,
    ).issue_nonce()
    body = assert_problem(_login(api, patient, _message(api, patient, nonce=issued_long_ago)), 401, "invalid-sign-in")
    assert "expired" in str(body["detail"])
    assert _login(api, patient, _message(api, patient, nonce=fresh)).status_code == 200  # type: ignore[attr-defined]
