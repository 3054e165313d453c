"""The patient story over HTTP: grant, read, disclosure, revoke, refusal."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from consent_api.metrics import metrics_app
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
    refused = api.client.get(
        f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic)
    )
    body = assert_problem(refused, 403, "consent-denied")
    assert "revoked" in str(body["detail"])
    consents = api.client.get(f"/v1/patients/{patient.address}/consents", headers=mine).json()["consents"]
    assert consents[0]["status"] == "revoked"


def test_fhir_bundles_for_patient_and_auditor(api: Api) -> None:
    patient = api.new_patient()
    clinic = api.chain.clinic.address
    created = api.upload(patient.address)
    api.grant(patient, clinic, purpose="TREAT")
    assert (
        api.client.get(
            f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic)
        ).status_code
        == 200
    )
    emergency = api.client.post(
        f"/v1/records/{created['recordId']}/emergency-access",
        json={"reason": "unconscious in ER"},
        headers=api.token(clinic),
    )
    assert emergency.status_code == 200, emergency.text
    for who in (patient.address, api.chain.auditor.address):
        consent = api.client.get("/v1/fhir/Consent", params={"patient": patient.address}, headers=api.token(who))
        assert consent.status_code == 200 and consent.headers["content-type"].startswith("application/fhir+json")
        assert [e["resource"]["status"] for e in consent.json()["entry"]] == ["active"]
        audit = api.client.get("/v1/fhir/AuditEvent", params={"patient": patient.address}, headers=api.token(who))
        purposes = [e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] for e in audit.json()["entry"]]
        assert purposes == ["ETREAT", "TREAT"]
    assert_problem(
        api.client.get(
            "/v1/fhir/Consent", params={"patient": patient.address}, headers=api.token(api.chain.lab.address)
        ),
        403,
        "permission-denied",
    )


def test_metrics_are_prometheus_text_on_their_own_app(api: Api) -> None:
    api.client.get("/v1/chain")
    assert_problem(api.client.get("/metrics"), 404, "not-found")  # the public API serves none
    app = api.client.app
    with TestClient(metrics_app(app.state.metrics, api.services)) as scraper:  # type: ignore[attr-defined]
        text = scraper.get("/metrics").text
    assert "# TYPE consent_ledger_requests_total counter" in text
    assert 'consent_ledger_requests_total{method="GET",route="/v1/chain",status="2xx"}' in text
    assert "consent_ledger_chain_block_number " in text


def test_auditor_verifies_a_patient_and_a_record(api: Api) -> None:
    patient = api.new_patient()
    clinic = api.chain.clinic.address
    created = api.upload(patient.address)
    api.grant(patient, clinic)
    assert (
        api.client.get(
            f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic)
        ).status_code
        == 200
    )
    auditor = api.token(api.chain.auditor.address)
    report = api.client.post("/v1/audit/verify", json={"patient": patient.address}, headers=auditor)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is True, body["violations"]
    assert body["summary"]["violations"] == 0
    html = api.client.get(body["reportUrl"].replace("http://testserver", ""), headers=auditor)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")

    trail = api.client.get(f"/v1/audit/records/{created['recordId']}", headers=auditor)
    assert trail.status_code == 200, trail.text
    record = trail.json()
    assert record["ok"] is True
    assert [v["version"] for v in record["versions"]] == [1]
    assert record["versions"][0]["cid"] == created["cid"]
    assert [d["purpose"] for d in record["disclosures"]] == ["TREAT"]
    assert_problem(api.client.get(f"/v1/audit/records/0x{'00' * 32}", headers=auditor), 404, "not-found")
    assert_problem(api.client.post("/v1/audit/verify", json={}, headers=api.token(clinic)), 403, "permission-denied")


def test_upload_with_idempotency_key_happens_once(api: Api) -> None:
    patient = api.new_patient()
    body = {"patient": patient.address, "category": "laboratory", "mediaType": "text/plain", "content": "aGVsbG8="}
    headers = {**api.token(api.chain.clinic.address), "Idempotency-Key": "upload-42"}
    first = api.client.post("/v1/records", json=body, headers=headers)
    again = api.client.post("/v1/records", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    listed = api.client.get(f"/v1/patients/{patient.address}/records", headers=api.token(patient.address))
    assert len(listed.json()["records"]) == 1
    other = api.client.post("/v1/records", json={**body, "content": "d29ybGQ="}, headers=headers)
    assert_problem(other, 409, "idempotency-conflict")


def test_the_record_list_shows_each_records_newest_version(api: Api) -> None:
    patient = api.new_patient()
    clinic = api.token(api.chain.clinic.address)
    body = {"patient": patient.address, "category": "laboratory", "mediaType": "text/plain", "content": "aGVsbG8="}
    first = api.client.post("/v1/records", json=body, headers=clinic).json()
    second = api.client.post("/v1/records", json={**body, "content": "d29ybGQ="}, headers=clinic).json()
    amended = api.client.post(
        f"/v1/records/{first['recordId']}/versions",
        json={"mediaType": "application/json", "content": "eyJrIjogMn0="},
        headers=clinic,
    )
    assert amended.status_code == 201, amended.text
    listed = api.client.get(f"/v1/patients/{patient.address}/records", headers=api.token(patient.address))
    by_id = {r["recordId"]: r for r in listed.json()["records"]}
    assert (by_id[first["recordId"]]["version"], by_id[first["recordId"]]["cid"]) == (2, amended.json()["cid"])
    assert (by_id[first["recordId"]]["mediaType"], by_id[first["recordId"]]["size"]) == ("application/json", 8)
    assert (by_id[second["recordId"]]["version"], by_id[second["recordId"]]["cid"]) == (1, second["cid"])


def test_a_replayed_erasure_answers_as_the_first_time(api: Api) -> None:
    patient = api.new_patient()
    created = api.upload(patient.address)
    record = f"/v1/records/{created['recordId']}"
    headers = {**api.token(patient.address), "Idempotency-Key": "erase-7"}
    body = api.erase_body(patient, created["recordId"])
    first = api.client.request("DELETE", record, headers=headers, json=body)
    again = api.client.request("DELETE", record, headers=headers, json=body)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.json() == first.json() and first.json()["txHash"].startswith("0x")
    # the chain holds one erasure, and the verify report names the erased record
    report = api.client.post(
        "/v1/audit/verify", json={"patient": patient.address}, headers=api.token(api.chain.auditor.address)
    ).json()
    assert report["summary"]["erasures"] == 1
    assert [(e["recordId"], e["txHash"]) for e in report["erasures"]] == [(created["recordId"], first.json()["txHash"])]
    # without the key, or with a new one, a second erasure is refused as before
    assert_problem(
        api.client.request("DELETE", record, json=api.erase_body(patient, created["recordId"])), 410, "record-erased"
    )
    assert_problem(
        api.client.request(
            "DELETE", record, headers={"Idempotency-Key": "erase-8"}, json=api.erase_body(patient, created["recordId"])
        ),
        410,
        "record-erased",
    )
    # the same key for another record is a different request
    other = api.upload(patient.address)
    assert_problem(
        api.client.request(
            "DELETE",
            f"/v1/records/{other['recordId']}",
            headers=headers,
            json=api.erase_body(patient, other["recordId"]),
        ),
        409,
        "idempotency-conflict",
    )
