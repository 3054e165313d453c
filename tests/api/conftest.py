"""API tests: the real app on the session's anvil, called in-process, with role tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from consent_api.app import create_app
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.domain.consent import (
    ConsentGrant,
    ConsentRevoke,
    DelegateGrant,
    RecordErase,
    SignedMessage,
    typed_data,
)
from tests.conftest import Chain

HOST = "testserver"


class Api:
    """A TestClient plus helpers to act as each role."""

    def __init__(self, client: TestClient, services: Services, chain: Chain) -> None:
        self.client = client
        self.services = services
        self.chain = chain

    def token(self, account: str) -> dict[str, str]:
        token, _ = self.services.auth.issue_token(account)
        return {"Authorization": f"Bearer {token}"}

    def new_patient(self) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.services.rpc.request("anvil_setBalance", [account.address, hex(10**18)])
        return account

    def erase_body(
        self, patient: LocalAccount, record_id: str, *, signer: LocalAccount | None = None
    ) -> dict[str, object]:
        """The patient's (or ``signer``'s) signed RecordErase of a record, as DELETE /v1/records/{id} takes it."""
        signer = signer or patient
        nonce = self.client.get(f"/v1/nonces/{signer.address}").json()["nonce"]
        erase = RecordErase(patient.address, bytes.fromhex(record_id[2:]), nonce, self.chain.now() + 600)
        return {
            "erase": {"patient": patient.address, "recordId": record_id, "nonce": nonce, "deadline": erase.deadline},
            "signature": self.sign(signer, erase),
        }

    def sign(self, account: LocalAccount, message: SignedMessage) -> str:
        signed = Account.sign_typed_data(account.key, full_message=typed_data(self.services.domain, message))
        return "0x" + bytes(signed.signature).hex()

    def grant_body(
        self,
        patient: LocalAccount,
        grantee: str,
        *,
        scope: str = "0x" + "00" * 32,
        purpose: str = "TREAT",
        valid_until: int = 0,
        signer: LocalAccount | None = None,
    ) -> dict[str, object]:
        nonce = self.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
        grant = ConsentGrant(
            patient.address,
            grantee,
            bytes.fromhex(scope[2:]),
            purpose.encode().ljust(32, b"\x00"),
            0,
            valid_until,
            nonce,
            self.chain.now() + 600,
        )
        return {
            "grant": {
                "patient": patient.address,
                "grantee": grantee,
                "scope": scope,
                "purpose": "0x" + grant.purpose.hex(),
                "validFrom": 0,
                "validUntil": valid_until,
                "nonce": nonce,
                "deadline": grant.deadline,
            },
            "signature": self.sign(signer or patient, grant),
        }

    def grant(self, patient: LocalAccount, grantee: str, **kw: object) -> str:
        response = self.client.post("/v1/consents", json=self.grant_body(patient, grantee, **kw))  # type: ignore[arg-type]
        assert response.status_code == 201, response.text
        return str(response.json()["consentId"])

    def name_delegate(self, patient: LocalAccount, delegate: str) -> None:
        """The patient names ``delegate`` (a guardian) with no end date, by a signed DelegateGrant."""
        nonce = self.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
        delegation = DelegateGrant(patient.address, delegate, 0, nonce, self.chain.now() + 600)
        body = {
            "delegate": {
                "patient": patient.address,
                "delegate": delegate,
                "validUntil": 0,
                "nonce": nonce,
                "deadline": delegation.deadline,
            },
            "signature": self.sign(patient, delegation),
        }
        response = self.client.post(f"/v1/patients/{patient.address}/delegates", json=body)
        assert response.status_code == 201, response.text

    def revoke(self, patient: LocalAccount, consent_id: str) -> None:
        nonce = self.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
        revoke = ConsentRevoke(patient.address, bytes.fromhex(consent_id[2:]), nonce, self.chain.now() + 600)
        body = {
            "revoke": {
                "patient": patient.address,
                "consentId": consent_id,
                "nonce": nonce,
                "deadline": revoke.deadline,
            },
            "signature": self.sign(patient, revoke),
        }
        response = self.client.post(f"/v1/consents/{consent_id}/revoke", json=body)
        assert response.status_code == 200, response.text

    def upload(
        self,
        patient: str,
        *,
        provider: str | None = None,
        content: object = None,
        media_type: str = "application/fhir+json",
        category: str = "laboratory",
    ) -> dict[str, object]:
        body = {
            "patient": patient,
            "category": category,
            "mediaType": media_type,
            "content": content
            if content is not None
            else {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "Glucose"},
                "valueQuantity": {"value": 95, "unit": "mg/dL"},
            },
        }
        response = self.client.post("/v1/records", json=body, headers=self.token(provider or self.chain.clinic.address))
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def services(chain: Chain, tmp_path: Path) -> Iterator[Services]:
    """A service instance whose public origin is the one the TestClient calls it at, so sign-in
    messages name that origin as a browser there would."""
    instance = bootstrap(chain.settings_for(tmp_path / "svc", public_origin=f"http://{HOST}"), chain.deployment)
    yield instance
    instance.close()


@pytest.fixture
def api(services: Services, chain: Chain) -> Iterator[Api]:
    with TestClient(create_app(services), base_url=f"http://{HOST}") as client:
        yield Api(client, services, chain)


def assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["type"] == f"/problems/{code}", body
    assert body["status"] == status and body["title"] and body["detail"]
    return dict(body)
