"""A patient reads their own record (right of access) through the hub's relay, without any consent.

The patient signs an AccessRequest naming themselves as accessor with purpose PATRQT and relays it through
POST /v1/relay: the ledger logs it with consent 0, and it is in the patient's accounting of disclosures. The same
request for another purpose, or signed by the patient's guardian, is refused before any gas is spent; the
auditor accepts the trail.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from ledger_service.domain.codes import purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest, DelegateGrant
from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.e2e

ZERO_CONSENT = "0x" + "00" * 32


def _own_request(api: Api, patient: LocalAccount, record_id: str, purpose: str) -> tuple[AccessRequest, dict[str, Any]]:
    nonce = api.client.get(f"/v1/nonces/{patient.address}").json()["nonce"]
    message = AccessRequest(
        patient.address,
        patient.address,
        bytes.fromhex(record_id[2:]),
        1,
        purpose_to_bytes32(purpose),
        nonce,
        api.chain.now() + 600,
    )
    fields = {
        "patient": patient.address,
        "accessor": patient.address,
        "recordId": record_id,
        "version": 1,
        "purpose": "0x" + message.purpose.hex(),
        "nonce": nonce,
        "deadline": message.deadline,
    }
    return message, fields


def _relay(api: Api, fields: dict[str, Any], signature: str) -> Any:
    return api.client.post(
        "/v1/relay", json={"primaryType": "AccessRequest", "message": fields, "signature": signature}
    )


def test_the_patient_reads_their_own_record_with_patrqt_and_sees_it_disclosed(api: Api) -> None:
    patient = api.new_patient()
    record_id = str(api.upload(patient.address)["recordId"])
    # No consent is involved: the ledger's consent view says no, and the request is logged all the same.
    patrqt = purpose_to_bytes32("PATRQT")
    assert not api.services.ledger.is_authorized(patient.address, patient.address, bytes.fromhex(record_id[2:]), patrqt)

    message, fields = _own_request(api, patient, record_id, "PATRQT")
    done = _relay(api, fields, api.sign(patient, message))
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["consentId"] == ZERO_CONSENT, answer
    assert api.services.ledger.nonce_used(patient.address, message.nonce)

    mine = api.token(patient.address)
    listed = api.client.get(f"/v1/patients/{patient.address}/disclosures", headers=mine)
    assert listed.status_code == 200, listed.text
    assert [
        (d["txHash"], d["recordId"], d["version"], d["accessor"], d["purpose"], d["consentId"], d["emergency"])
        for d in listed.json()["disclosures"]
    ] == [(answer["txHash"], record_id, 1, patient.address, "PATRQT", ZERO_CONSENT, False)]

    # The identical signed request again: the first answer, no second disclosure.
    again = _relay(api, fields, api.sign(patient, message))
    assert again.status_code == 200 and again.json() == answer, again.text
    assert len(api.client.get(f"/v1/patients/{patient.address}/disclosures", headers=mine).json()["disclosures"]) == 1

    # The auditor's independent check accepts the patient's own request.
    auditor = api.token(api.chain.auditor.address)
    report = api.client.post("/v1/audit/verify", json={"patient": patient.address}, headers=auditor)
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True, report.json()["violations"]


def test_the_patients_own_request_for_treatment_is_refused_before_any_gas(api: Api) -> None:
    patient = api.new_patient()
    record_id = str(api.upload(patient.address)["recordId"])
    message, fields = _own_request(api, patient, record_id, "TREAT")
    before = api.services.rpc.block_number()
    problem = assert_problem(_relay(api, fields, api.sign(patient, message)), 403, "consent-denied")
    assert "PATRQT" in str(problem["detail"]), problem
    assert api.services.rpc.block_number() == before, "a refused request must not reach the chain"
    assert not api.services.ledger.nonce_used(patient.address, message.nonce)
    mine = api.token(patient.address)
    assert api.client.get(f"/v1/patients/{patient.address}/disclosures", headers=mine).json()["disclosures"] == []


def test_the_guardians_signature_of_the_patients_own_request_is_refused(api: Api) -> None:
    """A live guardian reading for the patient is not the patient's right of access: its signature is not theirs."""
    patient, guardian = api.new_patient(), api.new_patient()
    record_id = str(api.upload(patient.address)["recordId"])
    nonce = api.client.get(f"/v1/nonces/{patient.address}").json()["nonce"]
    delegation = DelegateGrant(patient.address, guardian.address, 0, nonce, api.chain.now() + 600)
    body = {
        "delegate": {
            "patient": patient.address,
            "delegate": guardian.address,
            "validUntil": 0,
            "nonce": nonce,
            "deadline": delegation.deadline,
        },
        "signature": api.sign(patient, delegation),
    }
    assert api.client.post(f"/v1/patients/{patient.address}/delegates", json=body).status_code == 201
    assert api.services.ledger.delegation(patient.address, guardian.address) == (0, True)
    message, fields = _own_request(api, patient, record_id, "PATRQT")
    before = api.services.rpc.block_number()
    problem = assert_problem(_relay(api, fields, api.sign(guardian, message)), 400, "invalid-signature")
    assert problem["reason"] == "bad-signature", problem
    assert api.services.rpc.block_number() == before
    assert not api.services.ledger.nonce_used(patient.address, message.nonce)
