"""Oversized bodies, malformed and huge FHIR, path traversal and odd CIDs: a clear 4xx, nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consent_api.app import create_app
from ledger_service.blobs import Cid, EmbeddedBlobStore
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.errors import InvalidCid
from tests.api.conftest import Api, assert_problem
from tests.conftest import Chain

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _nothing_stored(services: Services) -> None:
    with services.db.engine.connect() as conn:
        from sqlalchemy import text

        for table in ("records", "record_versions", "commitment_salts", "deliveries"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table  # noqa: S608
    assert list(services.blobs.pins()) == [], "a refused upload left a pinned blob"  # type: ignore[attr-defined]


def _record_body(patient: str, content: object, media_type: str = "application/fhir+json") -> dict[str, object]:
    return {"patient": patient, "category": "laboratory", "mediaType": media_type, "content": content}


# ----------------------------------------------------------------- oversized bodies


def test_declared_json_body_over_32_mib_is_413_before_it_is_read(api: Api) -> None:
    headers = {**api.token(api.chain.clinic.address), "Content-Type": "application/json"}
    headers["Content-Length"] = str(33 * MiB)

    def body() -> Iterator[bytes]:
        yield b'{"patient": "'  # the rest never needs to come
        raise AssertionError("the server read past the declared length check")

    response = api.client.post("/v1/records", content=body(), headers=headers)
    assert_problem(response, 413, "payload-too-large")
    _nothing_stored(api.services)


def test_chunked_json_body_over_32_mib_is_413(api: Api) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(40):
            sent += MiB
            yield b" " * MiB

    headers = {**api.token(api.chain.clinic.address), "Content-Type": "application/json"}
    response = api.client.post("/v1/records", content=body(), headers=headers)
    assert_problem(response, 413, "payload-too-large")
    _nothing_stored(api.services)


@pytest.fixture
def small_limits(chain: Chain, tmp_path: Path) -> Iterator[tuple[TestClient, Services]]:
    services = bootstrap(chain.settings_for(tmp_path / "small", max_upload_bytes=MiB), chain.deployment)
    with TestClient(create_app(services), base_url="http://testserver") as client:
        yield client, services
    services.close()


def test_multipart_upload_over_the_configured_limit_is_413(
    small_limits: tuple[TestClient, Services], chain: Chain
) -> None:
    client, services = small_limits
    token, _ = services.auth.issue_token(chain.clinic.address)
    response = client.post(
        "/v1/records",
        data={"patient": chain.patients[0].address, "category": "imaging", "mediaType": "application/dicom"},
        files={"file": ("scan.dcm", b"\x00" * (2 * MiB), "application/dicom")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 413, "payload-too-large")
    _nothing_stored(services)


# ----------------------------------------------------------------- limits by route

KiB = 1024
SMALL_LIMIT = 16 * KiB  # max_small_body's default
CONSENT_ID = "0x" + "ab" * 32
RECORD_ID = "0x" + "cd" * 32
SMALL_ROUTES = [
    "/v1/auth/login",
    "/v1/consents",
    f"/v1/consents/{CONSENT_ID}/revoke",
    "/v1/patients/0x90F79bf6EB2c4f870365E785982E1f101E93b906/delegates",
    f"/v1/records/{RECORD_ID}/emergency-access",
    "/v1/audit/verify",
]


@pytest.mark.parametrize("framing", ["declared", "chunked"])
@pytest.mark.parametrize("path", SMALL_ROUTES)
def test_routes_without_records_refuse_bodies_over_the_small_limit(api: Api, path: str, framing: str) -> None:
    body = json.dumps({"padding": "x" * SMALL_LIMIT}).encode()
    headers = {**api.token(api.chain.clinic.address), "Content-Type": "application/json"}

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 4 * KiB):
            yield body[start : start + 4 * KiB]

    response = api.client.post(path, content=body if framing == "declared" else pieces(), headers=headers)
    problem = assert_problem(response, 413, "payload-too-large")
    assert f"exceeds {SMALL_LIMIT} bytes" in str(problem["detail"]), problem


def test_a_path_no_route_has_gets_the_small_limit(api: Api) -> None:
    # (A chunked body to it is never read: the answer is 404.)
    headers = {"Content-Type": "application/json", "Content-Length": str(SMALL_LIMIT + 1)}
    response = api.client.post("/v1/records/x/y/versions", content=b"{" + b" " * SMALL_LIMIT, headers=headers)
    assert_problem(response, 413, "payload-too-large")


def test_the_small_limit_takes_the_largest_legal_bodies_and_no_more(api: Api) -> None:
    # A sign-in at its limits: an 8191-character message (lines of 63) and a 2050-character signature,
    # pretty-printed; and a 2000-character emergency reason with every character \u-escaped.
    message = "\n".join("m" * 63 for _ in range(128))
    login = {"message": message, "signature": "0x" + "ab" * 1024}
    reason = json.dumps({"reason": "\u00e9" * 2000}, ensure_ascii=True).encode()
    headers = {"Content-Type": "application/json"}
    response = api.client.post("/v1/auth/login", content=json.dumps(login, indent=2).encode(), headers=headers)
    assert_problem(response, 401, "invalid-sign-in")  # read whole and judged: not a sign-in message
    emergency = {**headers, **api.token(api.chain.clinic.address)}
    response = api.client.post(f"/v1/records/{RECORD_ID}/emergency-access", content=reason, headers=emergency)
    assert_problem(response, 404, "record-not-found")  # read as a reason, then: no such record
    # The same sign-in with room to spare: refused unread.
    padded = json.dumps(login, indent=SMALL_LIMIT // 4).encode()
    assert len(padded) > SMALL_LIMIT
    assert_problem(api.client.post("/v1/auth/login", content=padded, headers=headers), 413, "payload-too-large")


def test_record_uploads_take_the_bodies_sign_in_refuses(api: Api) -> None:
    patient = api.new_patient()
    headers = api.token(api.chain.clinic.address)
    content = bytes(range(256)) * (4 * KiB)  # 1 MiB: its JSON is parsed by a worker process
    body = _record_body(patient.address, base64.b64encode(content).decode(), "application/pdf")
    refused = api.client.post("/v1/auth/login", json=body)
    assert_problem(refused, 413, "payload-too-large")
    created = api.client.post("/v1/records", json=body, headers=headers)
    assert created.status_code == 201, created.text
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x" * (64 * KiB)}}
    amended = api.client.post(
        f"/v1/records/{created.json()['recordId']}/versions",
        json={"mediaType": "application/fhir+json", "content": resource},
        headers=headers,
    )
    assert amended.status_code == 201, amended.text


@pytest.fixture
def small_fhir_limit(chain: Chain, tmp_path: Path) -> Iterator[tuple[TestClient, Services]]:
    services = bootstrap(chain.settings_for(tmp_path / "fhir", max_json_body=256 * KiB), chain.deployment)
    with TestClient(create_app(services), base_url="http://testserver") as client:
        yield client, services
    services.close()


def test_fhir_files_over_the_fhir_limit_are_413_other_files_are_not(
    small_fhir_limit: tuple[TestClient, Services], chain: Chain
) -> None:
    client, services = small_fhir_limit
    token, _ = services.auth.issue_token(chain.clinic.address)
    headers = {"Authorization": f"Bearer {token}"}
    fields = {"patient": chain.patients[0].address, "category": "laboratory"}
    document = json.dumps({"resourceType": "Binary", "contentType": "text/plain", "data": "QUFB" * 128 * KiB})
    assert 512 * KiB < len(document) < MiB
    response = client.post(
        "/v1/records",
        data={**fields, "mediaType": "application/fhir+json"},
        files={"file": ("big.json", document.encode(), "application/fhir+json")},
        headers=headers,
    )
    problem = assert_problem(response, 413, "payload-too-large")
    assert str(256 * KiB) in str(problem["detail"]), problem
    response = client.post(
        "/v1/records",
        json={**fields, "mediaType": "application/fhir+json", "content": json.loads(document)},
        headers=headers,
    )
    assert_problem(response, 413, "payload-too-large")  # as JSON: over max_json_body and its envelope
    _nothing_stored(services)
    # The FHIR limit is FHIR's alone: the same bytes as another file stream in as before.
    response = client.post(
        "/v1/records",
        data={**fields, "mediaType": "text/plain"},
        files={"file": ("big.txt", document.encode(), "text/plain")},
        headers=headers,
    )
    assert response.status_code == 201, response.text


def test_the_large_body_routes_are_the_upload_routes() -> None:
    from consent_api.body_limits import LARGE_BODY_ROUTES
    from consent_api.routers import records

    declared = {
        (method, route.path)
        for route in records.router.routes
        for method in getattr(route, "methods", ())
        if "multipart/form-data" in str(getattr(route, "openapi_extra", None) or {})
    }
    assert declared == set(LARGE_BODY_ROUTES)


# ----------------------------------------------------------------- FHIR


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        ({"resourceType": "NoSuchResource", "id": "x"}, 422, "invalid-record-content"),
        ({"status": "final"}, 422, "invalid-record-content"),
        ({"resourceType": "Observation", "status": "final", "code": "not-an-object"}, 422, "invalid-record-content"),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": "high"},
            },
            422,
            "invalid-record-content",
        ),
        ({"resourceType": 7}, 422, "invalid-record-content"),
        ("eyJub3QiOiJmaGlyIn0=", 400, "validation-error"),
    ],
    ids=["unknown-type", "no-type", "bad-code", "bad-quantity", "type-not-string", "base64-for-fhir"],
)
def test_invalid_fhir_is_refused_and_nothing_is_stored(api: Api, content: object, status: int, code: str) -> None:
    patient = api.new_patient()
    response = api.client.post(
        "/v1/records", json=_record_body(patient.address, content), headers=api.token(api.chain.clinic.address)
    )
    assert_problem(response, status, code)
    _nothing_stored(api.services)


def test_body_that_is_not_json_is_a_400(api: Api) -> None:
    headers = {**api.token(api.chain.clinic.address), "Content-Type": "application/json"}
    response = api.client.post("/v1/records", content=b'{"patient": "0x12', headers=headers)
    assert_problem(response, 400, "validation-error")
    _nothing_stored(api.services)


def test_multipart_fhir_file_that_is_not_json_is_a_422(api: Api) -> None:
    patient = api.new_patient()
    response = api.client.post(
        "/v1/records",
        data={"patient": patient.address, "category": "laboratory", "mediaType": "application/fhir+json"},
        files={"file": ("obs.json", b"{not json", "application/fhir+json")},
        headers=api.token(api.chain.clinic.address),
    )
    assert_problem(response, 422, "invalid-record-content")
    _nothing_stored(api.services)


@pytest.mark.slow  # ~80 s: validating a 30 MB FHIR resource whole takes the server that long
def test_huge_fhir_resource_is_refused_and_nothing_is_stored(api: Api) -> None:
    patient = api.new_patient()
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "component": [{"code": {"text": "c"}, "valueQuantity": {"value": "NaN?"}}] * 500_000,
    }
    raw = json.dumps(_record_body(patient.address, resource)).encode()
    assert 28 * MiB < len(raw) < 32 * MiB
    headers = {**api.token(api.chain.clinic.address), "Content-Type": "application/json"}
    response = api.client.post("/v1/records", content=raw, headers=headers)
    assert_problem(response, 422, "invalid-record-content")
    _nothing_stored(api.services)


def test_base64_that_is_not_base64_is_a_400(api: Api) -> None:
    patient = api.new_patient()
    body = _record_body(patient.address, "!!not base64!!", "application/pdf")
    response = api.client.post("/v1/records", json=body, headers=api.token(api.chain.clinic.address))
    assert_problem(response, 400, "validation-error")
    assert base64  # the valid case is covered by the API tests
    _nothing_stored(api.services)


# ----------------------------------------------------------------- CIDs and the blob store


GOOD = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "bafy/../../etc",
        "../../etc/passwd",
        "/etc/passwd",
        GOOD.upper(),
        "B" + GOOD[1:],
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        GOOD + "a",
        GOOD[:-1],
        GOOD + "a" * 10_000,
        GOOD[:-2] + "/" + GOOD[-1],
        GOOD[:-1] + "\x00",
        "",
        "b" + "a" * 58,  # right length, not a CIDv1 with a sha2-256 multihash
        GOOD[:-1] + "5",  # non-canonical padding bits
    ],
)
def test_odd_cids_are_invalid(text: str) -> None:
    with pytest.raises(InvalidCid):
        Cid.parse(text)


def test_binary_cid_with_wrong_hash_or_codec_is_invalid() -> None:
    raw = bytearray(Cid.parse(GOOD).bytes)
    for index, value in ((0, 0), (1, 0x71), (2, 0x13), (3, 20)):
        bad = bytearray(raw)
        bad[index] = value
        with pytest.raises(InvalidCid):
            Cid.parse(bytes(bad))
    with pytest.raises(InvalidCid):
        Cid.parse(bytes(raw) + b"\x00")


def test_embedded_store_never_touches_paths_outside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = EmbeddedBlobStore(root)
    cid = store.put([b"hello world\n"]).cid
    assert str(cid) == GOOD
    outside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(root)}
    for path in [store.block_path(cid), *(root / d for d in ("blocks", "pins"))]:
        assert path.resolve().is_relative_to(root.resolve())
    for text in ("../x", "bafy/../../etc", "../../" + GOOD):
        with pytest.raises(InvalidCid):
            store.has(Cid.parse(text))
    store.unpin(cid)
    store.gc()
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(root)} == outside


@pytest.mark.parametrize("record_id", ["..%2F..%2Fetc%2Fpasswd", "0x" + "g" * 64, "0x" + "00" * 31, GOOD])
def test_odd_record_ids_in_paths_are_400_or_404(api: Api, record_id: str) -> None:
    response = api.client.get(
        f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=api.token(api.chain.clinic.address)
    )
    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
