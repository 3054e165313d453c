"""The relay's refusals, replay safety, delegates, and the route-by-role access matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute

from ledger_service.domain.codes import category_id
from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.integration


def test_resubmitted_identical_grant_returns_the_first_result(api: Api) -> None:
    patient = api.new_patient()
    body = api.grant_body(patient, api.chain.clinic.address)
    first = api.client.post("/v1/consents", json=body)
    again = api.client.post("/v1/consents", json=body)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()


@pytest.mark.parametrize("case", ["bad-signature", "nonce-used", "deadline-passed", "stranger-signed"])
def test_bad_signed_messages_are_refused_before_any_gas(api: Api, case: str) -> None:
    patient = api.new_patient()
    body = api.grant_body(
        patient, api.chain.clinic.address, signer=api.new_patient() if case == "stranger-signed" else None
    )
    grant = body["grant"]
    assert isinstance(grant, dict)
    if case == "bad-signature":
        body["signature"] = "0x" + "11" * 65
    elif case == "nonce-used":
        api.grant(patient, api.chain.lab.address)  # uses the nonce the body was signed with
    elif case == "deadline-passed":
        grant["deadline"] = api.chain.now() - 1
    before = api.services.rpc.block_number()
    response = api.client.post("/v1/consents", json=body)
    problem = assert_problem(response, 400, "invalid-signature")
    # (A changed deadline also changes what was signed, but the ledger refuses the deadline first.)
    expected = {"stranger-signed": "bad-signature"}.get(case, case)
    assert problem["reason"] == expected, problem
    after = api.services.rpc.block_number()
    assert after == before, "a refused message must not reach the chain"


def test_expired_deadline_with_a_valid_signature_names_the_deadline(api: Api) -> None:
    from ledger_service.domain.consent import ConsentGrant

    patient = api.new_patient()
    nonce = api.client.get(f"/v1/consents/nonce/{patient.address}").json()["nonce"]
    deadline = api.chain.now() - 5
    purpose = b"TREAT".ljust(32, b"\x00")
    grant = ConsentGrant(patient.address, api.chain.clinic.address, b"\x00" * 32, purpose, 0, 0, nonce, deadline)
    body = {
        "grant": {
            "patient": patient.address,
            "grantee": api.chain.clinic.address,
            "scope": "0x" + "00" * 32,
            "purpose": "0x" + purpose.hex(),
            "validFrom": 0,
            "validUntil": 0,
            "nonce": nonce,
            "deadline": deadline,
        },
        "signature": api.sign(patient, grant),
    }
    problem = assert_problem(api.client.post("/v1/consents", json=body), 400, "invalid-signature")
    assert problem["reason"] == "deadline-passed"


def test_grant_validation_refuses_etreat_and_non_providers(api: Api) -> None:
    patient = api.new_patient()
    problem = assert_problem(
        api.client.post("/v1/consents", json=api.grant_body(patient, api.chain.clinic.address, purpose="ETREAT")),
        400,
        "validation-error",
    )
    assert "ETREAT" in str(problem["detail"])
    stranger = api.new_patient()
    assert_problem(
        api.client.post("/v1/consents", json=api.grant_body(patient, stranger.address)), 400, "validation-error"
    )


def test_a_delegate_grants_and_reads_for_the_patient(api: Api) -> None:
    patient, guardian = api.new_patient(), api.new_patient()
    api.name_delegate(patient, guardian.address)
    consent = api.grant(patient, api.chain.lab.address, scope="0x" + category_id("laboratory").hex(), signer=guardian)
    as_guardian = api.token(guardian.address)
    listed = api.client.get(f"/v1/patients/{patient.address}/consents", headers=as_guardian).json()["consents"]
    assert [(c["consentId"], c["signer"], c["scopeKind"], c["scopeLabel"]) for c in listed] == [
        (consent, guardian.address, "category", "laboratory")
    ]
    delegates = api.client.get(f"/v1/patients/{patient.address}/delegates", headers=as_guardian).json()["delegates"]
    assert delegates == [{"delegate": guardian.address, "validUntil": 0, "live": True}]


# ----------------------------------------------------------------- access matrix

PUBLIC = "public"
# Who may call each route (the OpenAPI document at /openapi.json and the README).
# A new route must be added here, or the test fails.
POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/health"): {PUBLIC},
    ("GET", "/v1/chain"): {PUBLIC},
    ("GET", "/v1/providers"): {PUBLIC},
    ("GET", "/v1/me"): {"patient", "clinic", "lab", "auditor", "stranger"},
    ("GET", "/v1/auth/nonce"): {PUBLIC},
    ("POST", "/v1/auth/login"): {PUBLIC},
    ("GET", "/v1/consents/nonce/{patient}"): {PUBLIC},
    ("POST", "/v1/consents"): {PUBLIC},
    ("POST", "/v1/consents/{consent_id}/revoke"): {PUBLIC},
    ("GET", "/v1/patients/{patient}/consents"): {"patient"},
    ("GET", "/v1/patients/{patient}/records"): {"patient", "clinic", "lab"},
    ("GET", "/v1/patients/{patient}/disclosures"): {"patient"},
    ("POST", "/v1/patients/{patient}/delegates"): {PUBLIC},
    ("GET", "/v1/patients/{patient}/delegates"): {"patient"},
    ("POST", "/v1/records"): {"clinic", "lab"},
    ("POST", "/v1/records/{record_id}/versions"): {"clinic", "lab"},
    ("GET", "/v1/records/{record_id}"): {"clinic", "lab"},
    ("POST", "/v1/records/{record_id}/emergency-access"): {"clinic"},
    ("GET", "/v1/records/{record_id}/access"): {"clinic", "lab"},
    ("POST", "/v1/patients/{patient}/emergency-reviews"): {"patient"},
    ("DELETE", "/v1/records/{record_id}"): {PUBLIC},
    ("DELETE", "/v1/patients/{patient}/delegates/{delegate}"): {PUBLIC},
    ("POST", "/v1/relay"): {PUBLIC},
    ("GET", "/v1/nonces/{signer}"): {PUBLIC},
    ("POST", "/v1/blobs"): {"clinic", "lab"},
    ("GET", "/v1/blobs/{cid}"): {"clinic", "lab", "auditor"},
    ("GET", "/v1/delegates/{address}/patients"): {"patient"},
    ("GET", "/v1/directory/patients"): {"clinic", "lab"},
    ("GET", "/v1/directory/patients/{address}"): {"clinic", "lab"},
    ("PUT", "/v1/directory/patients/{address}"): {"clinic", "lab"},
    ("DELETE", "/v1/directory/patients/{address}"): {"clinic", "lab"},
}
AUDIT_POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/audit/records/{record_id}"): {"auditor"},
    ("GET", "/v1/audit/reports/{report_id}"): {"auditor"},
    ("POST", "/v1/audit/verify"): {"auditor"},
    ("GET", "/v1/fhir/Consent"): {"patient", "auditor"},
    ("GET", "/v1/fhir/AuditEvent"): {"patient", "auditor"},
}


def _routes(api: Api) -> list[tuple[str, str]]:
    routes = []
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.include_in_schema:
            routes.extend((method, route.path) for method in route.methods)
    return sorted(routes)


def test_every_route_has_a_policy(api: Api) -> None:
    known = POLICY | AUDIT_POLICY
    assert [r for r in _routes(api) if r not in known] == []


def test_access_matrix(api: Api) -> None:
    patient = api.new_patient()
    record = api.upload(patient.address)
    values = {
        "patient": patient.address,
        "record_id": str(record["recordId"]),
        "consent_id": "0x" + "00" * 32,
        "report_id": "0123456789abcdef",
        "delegate": "0x" + "11" * 20,
        "signer": patient.address,
        "cid": str(record["cid"]),
        "address": patient.address,
    }
    callers = {
        "patient": patient.address,
        "clinic": api.chain.clinic.address,
        "lab": api.chain.lab.address,
        "auditor": api.chain.auditor.address,
        "stranger": api.new_patient().address,
    }
    expired, _ = api.services.auth.issue_token(patient.address, datetime.now(UTC) - timedelta(seconds=1))
    bodies = {"/v1/records": {}, "/v1/audit/verify": {}}
    for method, path in _routes(api):
        allowed = (POLICY | AUDIT_POLICY)[(method, path)]
        url = path.format(**values)
        params = {"purpose": "TREAT", "patient": patient.address}
        # Destructive routes are checked for refusals only, so the record survives the matrix.
        destructive = method == "DELETE"
        for name, address in [*callers.items(), ("none", None), ("expired", "expired"), ("forged", "forged")]:
            headers: dict[str, str] = {}
            if address == "expired":
                headers = {"Authorization": f"Bearer {expired}"}
            elif address == "forged":
                headers = {"Authorization": "Bearer eyJzdWIiOiIweDAwIn0.AAAA"}
            elif address is not None:
                headers = api.token(address)
            if destructive and name in allowed:
                continue
            response = api.client.request(
                method,
                url,
                params=params,
                headers=headers,
                json=bodies.get(path, {}) if method in ("POST", "PUT") else None,
            )
            label = f"{method} {path} as {name}: {response.status_code} {response.text[:200]}"
            assert response.status_code < 500, label
            if PUBLIC in allowed or name in allowed:
                assert response.status_code not in (401, 403), label
            elif name in ("none", "expired", "forged"):
                assert response.status_code == 401, label
                assert response.json()["type"] == "/problems/unauthorized", label
            else:
                assert response.status_code == 403, label
                assert response.json()["type"] in ("/problems/permission-denied", "/problems/consent-denied"), label
