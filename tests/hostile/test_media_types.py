"""A provider's declared media type is attacker input: it must never reach a response header as is.

Uploads with a malformed type (header injection) are refused before anything is stored or anchored;
a type the service does not serve as itself (text/html) is stored as application/octet-stream; every
read is a download (JSON alone inline) with nosniff and a sandboxing CSP; and a row written before these
checks, with CR/LF in its type, is still read safely from a real server, its disclosure logged once.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from ledger_service.bootstrap import Services
from tests.api.conftest import Api, assert_problem
from tests.faults.harness import CLINIC, ApiServer, grant, new_patient

pytestmark = pytest.mark.integration

INJECTION = "text/plain\r\nSet-Cookie: session=attacker"
HTML = b"<!doctype html><script>fetch('/v1/me').then(r => r.text()).then(alert)</script>"


def _topic(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _events(services: Services, name: str, patient: str) -> list[dict[str, Any]]:
    """The contract's ``name`` events for one patient (indexed second in every record event)."""
    ledger = services.ledger
    return ledger.rpc.get_logs(
        ledger.address, 0, ledger.rpc.block_number(), [ledger.codec.topic(name), None, _topic(patient)]
    )


def _stored_versions(services: Services) -> int:
    from sqlalchemy import text

    with services.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM record_versions")).scalar_one())


def _read(api: Api, record_id: str) -> httpx.Response:
    return api.client.get(
        f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=api.token(api.chain.clinic.address)
    )


def _assert_served_safely(response: httpx.Response, record_id: str, *, media_type: str, extension: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers["content-disposition"] == f'attachment; filename="record-{record_id}-v1{extension}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp, csp
    assert "set-cookie" not in response.headers


def test_header_injection_in_a_json_upload_is_refused_and_nothing_is_anchored(api: Api) -> None:
    patient = api.new_patient()
    body = {"patient": patient.address, "category": "laboratory", "mediaType": INJECTION, "content": "aGVsbG8="}
    response = api.client.post("/v1/records", json=body, headers=api.token(api.chain.clinic.address))
    problem = assert_problem(response, 422, "invalid-media-type")
    assert problem["field"] == "mediaType"
    assert _stored_versions(api.services) == 0
    assert list(api.services.blobs.pins()) == []  # type: ignore[attr-defined]
    assert _events(api.services, "RecordAnchored", patient.address) == []


def test_header_injection_in_a_multipart_upload_and_an_amendment_is_refused(api: Api) -> None:
    patient = api.new_patient()
    auth = api.token(api.chain.clinic.address)
    response = api.client.post(
        "/v1/records",
        data={"patient": patient.address, "category": "laboratory", "mediaType": INJECTION},
        files={"file": ("note.txt", b"hello", "text/plain")},
        headers=auth,
    )
    assert_problem(response, 422, "invalid-media-type")
    assert _stored_versions(api.services) == 0

    record_id = str(api.upload(patient.address)["recordId"])
    for attempt in (
        {"json": {"mediaType": INJECTION, "content": "aGVsbG8="}},
        {"data": {"mediaType": INJECTION}, "files": {"file": ("note.txt", b"hello", "text/plain")}},
    ):
        response = api.client.post(f"/v1/records/{record_id}/versions", headers=auth, **attempt)  # type: ignore[arg-type]
        assert_problem(response, 422, "invalid-media-type")
    assert _stored_versions(api.services) == 1
    assert len(_events(api.services, "RecordAnchored", patient.address)) == 1  # the first version only


def test_an_html_upload_is_stored_as_octet_stream_and_read_as_a_download(api: Api) -> None:
    patient = api.new_patient()
    body = {
        "patient": patient.address,
        "category": "laboratory",
        "mediaType": "text/html; charset=utf-8",
        "content": base64.b64encode(HTML).decode(),
    }
    response = api.client.post("/v1/records", json=body, headers=api.token(api.chain.clinic.address))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["mediaType"] == "application/octet-stream"  # the provider is told what is served
    record_id = created["recordId"]
    api.grant(patient, api.chain.clinic.address)

    read = _read(api, record_id)
    _assert_served_safely(read, record_id, media_type="application/octet-stream", extension=".bin")
    assert read.content == HTML


def test_allowlisted_types_keep_their_type_and_only_json_is_inline(api: Api) -> None:
    patient = api.new_patient()
    fhir = str(api.upload(patient.address)["recordId"])
    body = {"patient": patient.address, "category": "laboratory", "mediaType": "Application/PDF", "content": "JVBERg=="}
    response = api.client.post("/v1/records", json=body, headers=api.token(api.chain.clinic.address))
    assert response.status_code == 201, response.text
    assert response.json()["mediaType"] == "application/pdf"  # canonical form
    pdf = response.json()["recordId"]
    api.grant(patient, api.chain.clinic.address)

    _assert_served_safely(_read(api, pdf), pdf, media_type="application/pdf", extension=".pdf")
    read = _read(api, fhir)
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/fhir+json"
    # named by the title the node suggested from the resource (docs/architecture.md, "Record titles")
    assert read.headers["content-disposition"] == "inline; filename=\"Glucose.json\"; filename*=UTF-8''Glucose.json"
    assert read.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in read.headers["content-security-policy"]


# ----------------------------------------------------------------- a row from before the checks


def _disclosures(server: ApiServer, record_id: str) -> list[dict[str, Any]]:
    from ledger_service.chain.ledger import ledger_codec
    from ledger_service.chain.rpc import RpcClient

    rpc, codec = RpcClient(server.rpc_url), ledger_codec()
    topics = [[codec.topic("AccessLogged"), codec.topic("EmergencyAccessLogged")], bytes.fromhex(record_id[2:])]
    return rpc.get_logs(server.deployment.ledger_address, 0, rpc.block_number(), topics)


@pytest.mark.parametrize("route", ["read", "emergency"])
def test_a_stored_type_with_crlf_is_served_safely_by_a_real_server(server: ApiServer, route: str) -> None:
    patient = new_patient(server.rpc_url)
    auth = server.token(CLINIC)
    with server.client() as client:
        uploaded = client.upload(auth, patient.address, b"K+ 4.2 mmol/L", media_type="text/plain")
        assert uploaded.status_code == 201, uploaded.text
        record_id = uploaded.json()["recordId"]
        # What a database written before upload validation may hold.
        with server.db() as db:
            db.execute("UPDATE record_versions SET media_type = ? WHERE record_id = ?", (INJECTION, record_id))
        grant(server, patient)
        try:
            if route == "read":
                response = client.read(auth, record_id)
            else:
                response = client.http.post(
                    f"/v1/records/{record_id}/emergency-access", json={"reason": "unconscious on arrival"}, headers=auth
                )
        except httpx.HTTPError as exc:
            logged = len(_disclosures(server, record_id))
            pytest.fail(f"the server dropped the connection ({exc!r}) after logging {logged} disclosure(s)")
    _assert_served_safely(response, record_id, media_type="application/octet-stream", extension=".bin")
    assert response.content == b"K+ 4.2 mmol/L"
    # Bytes went out, so exactly one disclosure is on chain, and it is the one the response names.
    events = _disclosures(server, record_id)
    assert len(events) == 1
    assert "0x" + bytes(events[0]["transactionHash"]).hex() == response.headers["x-disclosure-tx"]


def test_fhir_json_with_a_version_parameter_is_taken_as_fhir_in_a_json_upload(api: Api) -> None:
    """The API and the service agree what FHIR JSON is: parameters (fhirVersion) do not change the type."""
    patient = api.new_patient()
    api.grant(patient, api.chain.clinic.address)
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"}}
    created = api.client.post(
        "/v1/records",
        json={
            "patient": patient.address,
            "category": "laboratory",
            "mediaType": "application/fhir+json; fhirVersion=4.0",
            "content": resource,
        },
        headers=api.token(api.chain.clinic.address),
    )
    assert created.status_code == 201, created.text
    read = _read(api, created.json()["recordId"])
    assert read.status_code == 200, read.text
    assert read.json() == resource
