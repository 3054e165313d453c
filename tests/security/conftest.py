"""`consent-ledger up` as a child process for attack tests: its own anvil, data dir and free ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from ledger_service.domain import siwe
from scripts.soak import Server

REPO = Path(__file__).resolve().parents[2]


class DevServer(Server):
    """The embedded default (``consent-ledger up``), started with the usual login umask 022 so that
    the modes of what it creates are its own doing. The log is kept outside the data dir."""

    def __init__(self, data_dir: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env, log=log, umask=0o022)

    def chain_id(self) -> int:
        return int(httpx.get(self.url + "/v1/chain", timeout=10).json()["chainId"])


def sign_in_body(server: DevServer, account: LocalAccount, *, domain: str, uri: str) -> dict[str, str]:
    """A fresh nonce from ``server`` in an EIP-4361 message for ``domain``/``uri``, signed by ``account``."""
    nonce = httpx.get(server.url + "/v1/auth/nonce", timeout=10).json()["nonce"]
    now = datetime.now(UTC)
    message = siwe.render(
        siwe.SiweMessage(
            domain=domain,
            address=account.address,
            statement="Sign in to Consent Ledger",
            uri=uri,
            version="1",
            chain_id=server.chain_id(),
            nonce=nonce,
            issued_at=now,
            expiration_time=now + timedelta(minutes=10),
            not_before=None,
            request_id=None,
            resources=(),
        )
    )
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature
    return {"message": message, "signature": "0x" + bytes(signature).hex()}


def assert_sign_in_refused(response: httpx.Response, needle: str) -> None:
    """Refused the way every other bad sign-in is: 401 problem+json ``invalid-sign-in``, saying why."""
    assert response.status_code == 401, f"sign-in was not refused: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["type"] == "/problems/invalid-sign-in", body
    assert needle in body["detail"], body
