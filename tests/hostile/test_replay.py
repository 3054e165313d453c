"""EIP-712 replay across chains, contracts and time: refused with a clear problem, nothing reaches the chain."""

from __future__ import annotations

import pytest
from eth_account import Account

from ledger_service.domain.consent import ConsentGrant, ConsentRevoke, Eip712Domain, typed_data
from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.integration


def _signed_for(api: Api, body: dict[str, object], patient: object, domain: Eip712Domain) -> dict[str, object]:
    g = body["grant"]
    assert isinstance(g, dict)
    message = ConsentGrant(
        g["patient"], g["grantee"], bytes.fromhex(g["scope"][2:]), bytes.fromhex(g["purpose"][2:]),
        g["validFrom"], g["validUntil"], g["nonce"], g["deadline"],
    )  # fmt: skip
    signature = Account.sign_typed_data(patient.key, full_message=typed_data(domain, message)).signature  # type: ignore[attr-defined]
    return {**body, "signature": "0x" + bytes(signature).hex()}


@pytest.mark.parametrize("case", ["chain-1", "other-contract", "other-name"])
def test_grant_signed_for_another_domain_is_refused_before_any_gas(api: Api, case: str) -> None:
    patient = api.new_patient()
    body = api.grant_body(patient, api.chain.clinic.address)
    ours = api.services.domain
    domain = {
        "chain-1": Eip712Domain(chain_id=1, verifying_contract=ours.verifying_contract),
        "other-contract": Eip712Domain(chain_id=ours.chain_id, verifying_contract="0x" + "42" * 20),
        "other-name": Eip712Domain(
            chain_id=ours.chain_id, verifying_contract=ours.verifying_contract, name="OtherLedger"
        ),
    }[case]
    before = api.services.rpc.block_number()
    response = api.client.post("/v1/consents", json=_signed_for(api, body, patient, domain))
    problem = assert_problem(response, 400, "invalid-signature")
    assert problem["reason"] == "bad-signature", problem
    assert api.services.rpc.block_number() == before
    assert api.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"] == body["grant"]["nonce"]  # type: ignore[index]


def test_replayed_grant_after_its_revocation_does_not_reactivate_it(api: Api) -> None:
    patient = api.new_patient()
    body = api.grant_body(patient, api.chain.clinic.address)
    first = api.client.post("/v1/consents", json=body)
    assert first.status_code == 201, first.text
    consent_id = first.json()["consentId"]
    api.revoke(patient, consent_id)
    before = api.services.rpc.block_number()
    again = api.client.post("/v1/consents", json=body)
    assert again.status_code in (200, 400), again.text
    assert api.services.rpc.block_number() == before, "a replayed grant must not reach the chain"
    rid = bytes.fromhex(api.upload(patient.address)["recordId"][2:])  # type: ignore[index]
    purpose = b"TREAT".ljust(32, b"\x00")
    assert not api.services.ledger.is_authorized(patient.address, api.chain.clinic.address, rid, purpose)


def test_replayed_revoke_is_refused(api: Api) -> None:
    patient = api.new_patient()
    consent_id = api.grant(patient, api.chain.clinic.address)
    nonce = api.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
    revoke = ConsentRevoke(patient.address, bytes.fromhex(consent_id[2:]), nonce, api.chain.now() + 600)
    body = {
        "revoke": {"patient": patient.address, "consentId": consent_id, "nonce": nonce, "deadline": revoke.deadline},
        "signature": api.sign(patient, revoke),
    }
    assert api.client.post(f"/v1/consents/{consent_id}/revoke", json=body).status_code == 200
    before = api.services.rpc.block_number()
    again = api.client.post(f"/v1/consents/{consent_id}/revoke", json=body)
    assert again.status_code in (200, 400, 409), again.text
    if again.status_code != 200:
        assert again.headers["content-type"].startswith("application/problem+json")
    assert api.services.rpc.block_number() == before


def test_revoke_for_another_consent_in_the_path_is_refused(api: Api) -> None:
    patient = api.new_patient()
    consent_id = api.grant(patient, api.chain.clinic.address)
    other = api.grant(patient, api.chain.lab.address)
    nonce = api.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
    revoke = ConsentRevoke(patient.address, bytes.fromhex(consent_id[2:]), nonce, api.chain.now() + 600)
    body = {
        "revoke": {"patient": patient.address, "consentId": consent_id, "nonce": nonce, "deadline": revoke.deadline},
        "signature": api.sign(patient, revoke),
    }
    assert_problem(api.client.post(f"/v1/consents/{other}/revoke", json=body), 400, "validation-error")
