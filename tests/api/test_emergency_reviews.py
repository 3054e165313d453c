"""Emergency reviews: the patient (or a guardian) marks an emergency access reviewed; the accounting shows it."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.e2e


def _disclosures(api: Api, patient: str, as_who: str) -> list[dict[str, object]]:
    response = api.client.get(f"/v1/patients/{patient}/disclosures", headers=api.token(as_who))
    assert response.status_code == 200, response.text
    return list(response.json()["disclosures"])


def test_patient_and_guardian_mark_an_emergency_access_reviewed(api: Api) -> None:
    patient, guardian, stranger = api.new_patient(), api.new_patient(), api.new_patient()
    clinic = api.chain.clinic.address
    created = api.upload(patient.address)
    api.grant(patient, clinic)
    read = api.client.get(f"/v1/records/{created['recordId']}", params={"purpose": "TREAT"}, headers=api.token(clinic))
    assert read.status_code == 200, read.text
    emergency = api.client.post(
        f"/v1/records/{created['recordId']}/emergency-access",
        json={"reason": "unconscious in the emergency department"},
        headers=api.token(clinic),
    )
    assert emergency.status_code == 200, emergency.text

    listed = _disclosures(api, patient.address, patient.address)
    assert [(d["emergency"], d["reviewedAt"]) for d in listed] == [(True, None), (False, None)]
    urgent, ordinary = listed
    assert str(urgent["disclosureId"]).startswith(f"{urgent['txHash']}:")
    url = f"/v1/patients/{patient.address}/emergency-reviews"

    # only the patient or a live delegate: the clinic that read it, or a stranger, may not mark it
    for who in (clinic, stranger.address):
        assert_problem(
            api.client.post(url, json={"disclosureId": urgent["disclosureId"]}, headers=api.token(who)),
            403,
            "permission-denied",
        )
    assert _disclosures(api, patient.address, patient.address)[0]["reviewedAt"] is None

    # only an emergency disclosure; only one of this patient's; a well-formed id
    assert_problem(
        api.client.post(url, json={"disclosureId": ordinary["disclosureId"]}, headers=api.token(patient.address)),
        400,
        "validation-error",
    )
    assert_problem(
        api.client.post(url, json={"disclosureId": "0x" + "ab" * 32 + ":0"}, headers=api.token(patient.address)),
        404,
        "not-found",
    )
    for bad in ({}, {"disclosureId": "not an id"}, {"disclosureId": 7}, {"disclosureId": "leaf:1", "extra": 1}):
        assert_problem(api.client.post(url, json=bad, headers=api.token(patient.address)), 400, "validation-error")

    api.name_delegate(patient, guardian.address)
    first = api.client.post(url, json={"disclosureId": urgent["disclosureId"]}, headers=api.token(guardian.address))
    assert first.status_code == 200, first.text
    reviewed_at = first.json()["reviewedAt"]
    assert first.json() == {"disclosureId": urgent["disclosureId"], "reviewedAt": reviewed_at}

    # idempotent: the patient marking it again gets the first mark
    again = api.client.post(url, json={"disclosureId": urgent["disclosureId"]}, headers=api.token(patient.address))
    assert again.status_code == 200 and again.json() == first.json()

    after = _disclosures(api, patient.address, patient.address)
    assert [(d["disclosureId"], d["reviewedAt"]) for d in after] == [
        (urgent["disclosureId"], reviewed_at),
        (ordinary["disclosureId"], None),
    ]
    # another patient's accounting does not know this disclosure
    other = api.new_patient()
    assert_problem(
        api.client.post(
            f"/v1/patients/{other.address}/emergency-reviews",
            json={"disclosureId": urgent["disclosureId"]},
            headers=api.token(other.address),
        ),
        404,
        "not-found",
    )


def test_record_access_names_the_covered_purposes(api: Api) -> None:
    patient = api.new_patient()
    clinic, lab = api.chain.clinic.address, api.chain.lab.address
    created = api.upload(patient.address)
    url = f"/v1/records/{created['recordId']}/access"
    nothing = api.client.get(url, headers=api.token(lab))
    assert nothing.status_code == 200, nothing.text
    assert nothing.json() == {"recordId": created["recordId"], "coveredPurposes": [], "emergency": False}
    api.grant(patient, lab, purpose="HRESCH")
    api.grant(patient, clinic, purpose="TREAT")
    assert api.client.get(url, headers=api.token(lab)).json()["coveredPurposes"] == ["HRESCH"]
    as_clinic = api.client.get(url, headers=api.token(clinic)).json()
    assert as_clinic["coveredPurposes"] == ["TREAT"] and as_clinic["emergency"] is True
    assert_problem(api.client.get(url, headers=api.token(patient.address)), 403, "permission-denied")
    assert_problem(api.client.get("/v1/records/0x12/access", headers=api.token(lab)), 400, "validation-error")
    assert_problem(
        api.client.get("/v1/records/0x" + "cd" * 32 + "/access", headers=api.token(lab)), 404, "record-not-found"
    )
