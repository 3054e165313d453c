"""A provider's own patient directory (docs/architecture.md, "Patient directory"), and a guardian's list of the
patients who named them.

Names, birth dates and MRNs live in the node's own SQLite file: each provider sees only its own entries, and
nothing of them reaches the hub's DB or blob store.
"""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import column, inspect, select, table

from tests.api.conftest import Api, assert_problem


def _put(api: Api, provider: str, patient: str, **body: object) -> object:
    return api.client.put(f"/v1/directory/patients/{patient}", json=body, headers=api.token(provider))


def _find(api: Api, provider: str, q: str) -> list[dict[str, object]]:
    response = api.client.get("/v1/directory/patients", params={"q": q}, headers=api.token(provider))
    assert response.status_code == 200, response.text
    return list(response.json()["patients"])


def test_a_clinic_adds_finds_changes_and_removes_a_patient(api: Api) -> None:
    clinic = api.chain.clinic.address
    patient = api.new_patient().address
    response = _put(api, clinic, patient.lower(), name="  Ada   Lovelace ", birthDate="1915-12-10", mrn="MRN-0042")
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    entry = response.json()  # type: ignore[attr-defined]
    assert (entry["address"], entry["name"], entry["birthDate"], entry["mrn"]) == (
        patient,
        "Ada Lovelace",
        "1915-12-10",
        "MRN-0042",
    )

    for q in ("lovelace", "ADA LOVE", "mrn-0042", patient, patient.lower()[:12]):
        assert [p["address"] for p in _find(api, clinic, q)] == [patient], q
    assert _find(api, clinic, "MRN-004") == []  # an MRN matches whole, never in part
    assert _find(api, clinic, "Babbage") == []
    assert patient in [p["address"] for p in _find(api, clinic, "")]

    got = api.client.get(f"/v1/directory/patients/{patient}", headers=api.token(clinic))
    assert got.status_code == 200 and got.json()["name"] == "Ada Lovelace"

    changed = _put(api, clinic, patient, name="Ada King", mrn="MRN-0042")
    assert changed.status_code == 200 and changed.json()["birthDate"] is None  # type: ignore[attr-defined]
    assert [p["name"] for p in _find(api, clinic, "mrn-0042")] == ["Ada King"]

    gone = api.client.delete(f"/v1/directory/patients/{patient}", headers=api.token(clinic))
    assert gone.status_code == 204
    assert _find(api, clinic, "Ada King") == []
    assert_problem(api.client.get(f"/v1/directory/patients/{patient}", headers=api.token(clinic)), 404, "not-found")
    assert_problem(api.client.delete(f"/v1/directory/patients/{patient}", headers=api.token(clinic)), 404, "not-found")


def test_each_provider_sees_only_its_own_directory(api: Api) -> None:
    clinic, lab = api.chain.clinic.address, api.chain.lab.address
    patient = api.new_patient().address
    assert _put(api, clinic, patient, name="Grace Hopper", mrn="C-1").status_code == 200  # type: ignore[attr-defined]

    assert _find(api, lab, "Grace") == [] and _find(api, lab, "C-1") == [] and _find(api, lab, patient) == []
    assert patient not in [p["address"] for p in _find(api, lab, "")]
    assert_problem(api.client.get(f"/v1/directory/patients/{patient}", headers=api.token(lab)), 404, "not-found")
    assert_problem(api.client.delete(f"/v1/directory/patients/{patient}", headers=api.token(lab)), 404, "not-found")

    # the lab keeps its own entry for the same person, with its own MRN, and the clinic's stays as it was
    assert _put(api, lab, patient, name="G. Hopper", mrn="C-1").status_code == 200  # type: ignore[attr-defined]
    assert [p["name"] for p in _find(api, clinic, "C-1")] == ["Grace Hopper"]
    assert [p["name"] for p in _find(api, lab, "C-1")] == ["G. Hopper"]


def test_patients_and_anonymous_callers_have_no_directory(api: Api) -> None:
    patient = api.new_patient().address
    _put(api, api.chain.clinic.address, patient, name="Someone Private")
    anonymous = api.client.get("/v1/directory/patients", params={"q": "Someone"})
    assert_problem(anonymous, 401, "unauthorized")
    unsigned_put = api.client.put(f"/v1/directory/patients/{patient}", json={"name": "Mallory"})
    assert_problem(unsigned_put, 401, "unauthorized")
    for caller in (patient, api.chain.auditor.address):
        as_them = api.token(caller)
        body = assert_problem(
            api.client.get("/v1/directory/patients", params={"q": "Someone"}, headers=as_them), 403, "permission-denied"
        )
        assert "Someone" not in str(body)
        put = api.client.put(f"/v1/directory/patients/{patient}", json={"name": "Mallory"}, headers=as_them)
        assert_problem(put, 403, "permission-denied")
        delete = api.client.delete(f"/v1/directory/patients/{patient}", headers=as_them)
        assert_problem(delete, 403, "permission-denied")
    assert [p["name"] for p in _find(api, api.chain.clinic.address, patient)] == ["Someone Private"]


def test_an_mrn_already_given_to_another_patient_is_a_conflict(api: Api) -> None:
    clinic = api.chain.clinic.address
    first, second = api.new_patient().address, api.new_patient().address
    assert _put(api, clinic, first, name="First Patient", mrn="X-77").status_code == 200  # type: ignore[attr-defined]
    body = assert_problem(_put(api, clinic, second, name="Second Patient", mrn="x-77"), 409, "directory-conflict")
    assert body["field"] == "mrn"
    assert _find(api, clinic, "Second Patient") == []  # nothing was written
    # the same patient may keep (or re-send) their own MRN
    assert _put(api, clinic, first, name="First Patient", mrn="X-77").status_code == 200  # type: ignore[attr-defined]


def test_bad_input_is_a_clear_problem_and_changes_nothing(api: Api) -> None:
    clinic = api.chain.clinic.address
    patient = api.new_patient().address
    cases: list[tuple[str, dict[str, object], str]] = [
        ("0x1234", {"name": "Short Address"}, "address"),
        ("not-an-address", {"name": "Bad Address"}, "address"),
        (patient, {"name": "   "}, "name"),
        (patient, {"name": "Bad Date", "birthDate": "10/12/1815"}, "birthDate"),
        (patient, {"name": "Bad Date", "birthDate": "1815-13-40"}, "birthDate"),
        (patient, {"name": "Future", "birthDate": "2999-01-01"}, "birthDate"),
        (patient, {"name": "Bad MRN", "mrn": "<script>"}, "mrn"),
        (patient, {"name": "x" * 201}, "name"),
        (patient, {"name": "Bell\x07Name"}, "name"),
    ]
    for address, body, field in cases:
        problem = assert_problem(_put(api, clinic, address, **body), 400, "validation-error")
        assert problem["field"] == field, (body, problem)
    # the schema's own checks are problem+json too
    assert_problem(_put(api, clinic, patient), 400, "validation-error")
    assert_problem(_put(api, clinic, patient, name="Extra", ssn="123"), 400, "validation-error")
    too_long = api.client.get("/v1/directory/patients", params={"q": "q" * 500}, headers=api.token(clinic))
    assert_problem(too_long, 400, "validation-error")
    # JSON may escape a lone surrogate, which no UTF-8 store can hold: refused, never a server error
    surrogate = api.client.put(
        f"/v1/directory/patients/{patient}",
        content=b'{"name": "Lone \\ud800 Surrogate"}',
        headers={**api.token(clinic), "Content-Type": "application/json"},
    )
    assert_problem(surrogate, 400, "validation-error")
    assert _find(api, clinic, patient) == []


def test_the_directory_is_the_nodes_own_private_file(api: Api) -> None:
    path = Path(api.services.settings.data_dir) / "node" / "patient-directory.sqlite3"
    _put(api, api.chain.clinic.address, api.new_patient().address, name="File Check")
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not any(p.name.startswith(path.name + "-") for p in path.parent.iterdir())  # no WAL copies beside it


def _hub_holds(api: Api, needles: list[str]) -> list[str]:
    """Where the hub's DB (every column of every table) or its blob store holds one of ``needles``."""
    found = []
    engine = api.services.db.engine
    with engine.connect() as conn:
        for name in inspect(engine).get_table_names():
            columns = [c["name"] for c in inspect(engine).get_columns(name)]
            for row in conn.execute(select(*[column(c) for c in columns]).select_from(table(name))):
                for col, value in zip(columns, row, strict=True):
                    raw = isinstance(value, bytes | bytearray | memoryview)
                    text = bytes(value).decode("latin-1") if raw else str(value)
                    found += [f"{name}.{col}: {n}" for n in needles if n.casefold() in text.casefold()]
    blob_dir = Path(api.services.settings.blob_dir)
    for blob in blob_dir.rglob("*") if blob_dir.exists() else []:
        if blob.is_file():
            data = blob.read_bytes().decode("latin-1").casefold()
            found += [f"blob {blob.name}: {n}" for n in needles if n.casefold() in data]
    return found


def test_no_name_mrn_or_birth_date_reaches_the_hub(api: Api) -> None:
    clinic = api.chain.clinic.address
    patient = api.new_patient()
    name, mrn, born = "Zebulon Quillfeather", "QF-918273", "1971-04-29"
    assert _put(api, clinic, patient.address, name=name, birthDate=born, mrn=mrn).status_code == 200  # type: ignore[attr-defined]
    # the patient has a record and a consent too, so the hub's tables have rows for them to be scanned
    record = api.upload(patient.address)
    api.grant(patient, clinic)
    assert _find(api, clinic, "quillfeather")[0]["mrn"] == mrn
    assert record["recordId"]

    assert _hub_holds(api, [name, "Quillfeather", mrn, born]) == []
    # the scan does find what a hub column would hold: the node's own file holds all three
    directory = (Path(api.services.settings.data_dir) / "node" / "patient-directory.sqlite3").read_bytes()
    assert all(n.encode() in directory for n in (name, mrn, born))
    assert _hub_holds(api, [patient.address[2:].lower()]) != []


def test_a_guardian_lists_the_patients_who_named_them(api: Api) -> None:
    guardian = api.new_patient()
    first, second, other = api.new_patient(), api.new_patient(), api.new_patient()
    api.name_delegate(first, guardian.address)
    api.name_delegate(second, guardian.address)
    api.name_delegate(other, api.new_patient().address)  # someone else's guardian

    response = api.client.get(f"/v1/delegates/{guardian.address}/patients", headers=api.token(guardian.address))
    assert response.status_code == 200, response.text
    listed = response.json()["patients"]
    assert sorted(p["patient"] for p in listed) == sorted([first.address, second.address])
    assert all(p["live"] and p["validUntil"] == 0 for p in listed)

    nobody = api.client.get(f"/v1/delegates/{first.address}/patients", headers=api.token(first.address))
    assert nobody.status_code == 200 and nobody.json()["patients"] == []
    body = assert_problem(
        api.client.get(f"/v1/delegates/{guardian.address}/patients", headers=api.token(first.address)),
        403,
        "permission-denied",
    )
    assert body["reason"] == "not-the-delegate"
    assert_problem(api.client.get(f"/v1/delegates/{guardian.address}/patients"), 401, "unauthorized")
    assert_problem(
        api.client.get("/v1/delegates/0x1234/patients", headers=api.token(guardian.address)), 400, "validation-error"
    )


def test_the_audit_trail_names_providers_by_their_on_chain_names(api: Api) -> None:
    patient = api.new_patient()
    record_id = str(api.upload(patient.address)["recordId"])
    api.grant(patient, api.chain.clinic.address)
    read = api.client.get(
        f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=api.token(api.chain.clinic.address)
    )
    assert read.status_code == 200, read.text
    response = api.client.get(f"/v1/audit/records/{record_id}", headers=api.token(api.chain.auditor.address))
    assert response.status_code == 200, response.text
    trail = response.json()
    assert [(v["author"], v["authorName"]) for v in trail["versions"]] == [(api.chain.clinic.address, "Demo Clinic")]
    assert [(d["accessor"], d["accessorName"]) for d in trail["disclosures"]] == [
        (api.chain.clinic.address, "Demo Clinic")
    ]


def test_the_camera_is_allowed_to_this_origin_only_for_scanning_qr_codes(api: Api) -> None:
    policy = api.client.get("/portal").headers["permissions-policy"]
    assert "camera=(self)" in policy.split(", ") and "microphone=()" in policy and "geolocation=()" in policy
