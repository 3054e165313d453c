"""What a patient's browser needs from the hub to read their own record, and no more.

A patient decrypts their own record in the browser (the key custodians release the shares to the patient's
encryption key against the patient's own logged access), so the hub hands them the ciphertext of their own
record versions (GET /v1/blobs/{cid}). Another patient, holding a valid token of their own, asks for that CID
and is refused. GET /v1/encryption-keys/{account} shows the key on chain the page compares its own with.
"""

from __future__ import annotations

import os

from eth_account.signers.local import LocalAccount

from ledger_service.blobs import RAW, Cid
from ledger_service.domain.consent import EncryptionKey
from tests.api.conftest import Api, assert_problem


def _version_cids(api: Api, record_id: str) -> list[str]:
    return [v.cid for v in api.services.records.versions(record_id)]


def _amend(api: Api, record_id: str) -> str:
    body = {
        "mediaType": "application/fhir+json",
        "content": {"resourceType": "Observation", "status": "amended", "code": {"text": "Glucose"}},
    }
    response = api.client.post(
        f"/v1/records/{record_id}/versions", json=body, headers=api.token(api.chain.clinic.address)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["cid"])


def test_a_patient_fetches_the_ciphertext_of_each_version_of_their_own_record(api: Api) -> None:
    patient: LocalAccount = api.new_patient()
    created = api.upload(patient.address)
    record_id, first = str(created["recordId"]), str(created["cid"])
    second = _amend(api, record_id)
    assert _version_cids(api, record_id) == [first, second]

    for cid in (first, second):
        response = api.client.get(f"/v1/blobs/{cid}", headers=api.token(patient.address))
        assert response.status_code == 200, response.text
        assert response.headers["x-blob-cid"] == cid
        # the bytes are the stored ciphertext (what the clinic's own fetch gets), not the record
        as_clinic = api.client.get(f"/v1/blobs/{cid}", headers=api.token(api.chain.clinic.address))
        assert as_clinic.status_code == 200 and response.content == as_clinic.content
        assert response.content.startswith(b"CLSTRM") and b"Observation" not in response.content


def test_another_patient_is_refused_the_ciphertext_of_a_record_not_theirs(api: Api) -> None:
    owner, other = api.new_patient(), api.new_patient()
    cid = str(api.upload(owner.address)["cid"])
    api.upload(other.address)  # the other patient has records of their own: still not this one

    response = api.client.get(f"/v1/blobs/{cid}", headers=api.token(other.address))
    body = assert_problem(response, 403, "permission-denied")
    assert body["reason"] == "not-own-record"
    assert b"CLSTRM" not in response.content


def test_a_patient_is_refused_a_cid_not_stored_the_same_as_one_stored(api: Api) -> None:
    """No oracle: a CID the hub does not hold and a CID of someone else's record get the same refusal."""
    patient = api.new_patient()
    api.upload(patient.address)
    missing = str(Cid.for_block(RAW, b"never stored"))
    response = api.client.get(f"/v1/blobs/{missing}", headers=api.token(patient.address))
    assert assert_problem(response, 403, "permission-denied")["reason"] == "not-own-record"


def test_an_erased_records_ciphertext_is_not_the_patients_to_fetch(api: Api) -> None:
    patient = api.new_patient()
    created = api.upload(patient.address)
    record_id, cid = str(created["recordId"]), str(created["cid"])
    assert api.client.get(f"/v1/blobs/{cid}", headers=api.token(patient.address)).status_code == 200
    erased = api.client.request(
        "DELETE",
        f"/v1/records/{record_id}",
        json=api.erase_body(patient, record_id),
        headers=api.token(patient.address),
    )
    assert erased.status_code == 200, erased.text
    response = api.client.get(f"/v1/blobs/{cid}", headers=api.token(patient.address))
    assert_problem(response, 403, "permission-denied")


def test_the_hub_shows_the_encryption_key_an_account_set_on_chain(api: Api) -> None:
    patient = api.new_patient()
    path = f"/v1/encryption-keys/{patient.address.lower()}"
    assert api.client.get(path).json() == {"account": patient.address, "publicKey": "0x" + "00" * 32}

    public_key = os.urandom(32)
    nonce = api.client.get(f"/v1/nonces/{patient.address}").json()["nonce"]
    message = EncryptionKey(patient.address, public_key, nonce, api.chain.now() + 600)
    relayed = api.client.post(
        "/v1/relay",
        json={
            "primaryType": "EncryptionKey",
            "message": {
                "account": patient.address,
                "publicKey": "0x" + public_key.hex(),
                "nonce": nonce,
                "deadline": message.deadline,
            },
            "signature": api.sign(patient, message),
        },
    )
    assert relayed.status_code == 200, relayed.text
    assert api.client.get(path).json() == {"account": patient.address, "publicKey": "0x" + public_key.hex()}
    assert_problem(api.client.get("/v1/encryption-keys/0x1234"), 400, "validation-error")
