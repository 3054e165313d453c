"""The patient story over HTTP: grant, read, disclosure, revoke, refusal."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.e2e


def test_grant_read_disclose_revoke_refuse(api: Api) -> None:
    patient = api.new_patient()
    clinic = api.chain.clinic.address
    created = api.upload(patient.address)
    consent_id = api.grant(patient, clinic)

    read = api.client.get(f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic))
    assert read.status_code == 200, read.text
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json()["resourceType"] == "Observation"
    assert read.headers["X-Record-Version"] == "1"
    assert read.headers["X-Record-Cid"] == created["cid"]
    disclosure_tx = read.headers["X-Disclosure-Tx"]

    mine = api.token(patient.address)
    disclosures = api.client.get(f"/v1/patients/{patient.address}/disclosures", headers=mine).json()["disclosures"]
    assert [(d["txHash"], d["accessor"], d["purpose"], d["consentId"], d["emergency"]) for d in disclosures] == [
        (disclosure_tx, clinic, "TREAT", consent_id, False)
    ]
    assert disclosures[0]["accessorName"] == "Demo Clinic"

    consents = api.client.get(f"/v1/patients/{patient.address}/consents", headers=mine).json()["consents"]
    assert [(c["consentId"], c["status"], c["scopeKind"], c["granteeName"]) for c in consents] == [
        (consent_id, "active", "all", "Demo Clinic")
    ]

    api.revoke(patient, consent_id)
    refused = api.client.get(f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic))
    body = assert_problem(refused, 403, "consent-denied")
    assert "revoked" in str(body["detail"])
    consents = api.client.get(f"/v1/patients/{patient.address}/consents", headers=mine).json()["consents"]
    assert consents[0]["status"] == "revoked"
