"""The guardian attack of the ledger's first version, replayed against a real `consent-ledger up`.

In version 1 a delegate's signature spent the patient's own nonce: a guardian the patient wanted to be rid
of could, seeing the patient's next nonce, sign and relay a few grants of its own first and so void the
revocation and the removal the patient had signed, then grant the revoked consent again. In version 2 nonces
are unordered and per signer (docs/architecture.md, "Signed acts"): a delegate's signature consumes the
delegate's nonce, never the patient's, and a consent the patient revoked cannot be granted again by a
delegate. Every test here fails if the delegate gets its way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tests.security.conftest import DevServer
from tests.security.independent_client import (
    ANVIL_KEYS,
    LedgerApi,
    Reverted,
    address_topic,
    bytes32_text,
    call_data,
    word_address,
    words,
)

pytestmark = pytest.mark.integration

CLINIC = Account.from_key(ANVIL_KEYS[1])
LAB = Account.from_key(ANVIL_KEYS[2])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerApi]:
    root = tmp_path_factory.mktemp("delegate-attack")
    # The delegate relays more than ten messages in a minute here: its own limit is not what is tested.
    limits = {
        "CONSENT_LEDGER_RELAY_RATE_LIMIT": "1000/minute",
        "CONSENT_LEDGER_RELAY_RATE_LIMIT_PER_SIGNER": "1000/minute",
    }
    server = DevServer(root / "data", root / "up.log", env=limits).start()
    client = LedgerApi(server.url, server.rpc_url)
    yield client
    client.close()
    server.stop()


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, f"not refused: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    return body


def _post_grant(api: LedgerApi, signer: LocalAccount, grant: dict[str, Any]) -> httpx.Response:
    return api.http.post(
        "/v1/consents", json={"grant": grant, "signature": api.signed(signer.key, "ConsentGrant", grant)}
    )


def _delegate_grant(api: LedgerApi, signer: LocalAccount, patient: str, delegate: str, nonce: int) -> httpx.Response:
    message = {"patient": patient, "delegate": delegate, "validUntil": 0, "nonce": nonce, "deadline": api.deadline()}
    body = {"delegate": message, "signature": api.signed(signer.key, "DelegateGrant", message)}
    return api.http.post(f"/v1/patients/{patient}/delegates", json=body)


def _delegate_revoke(api: LedgerApi, signer: LocalAccount, patient: str, delegate: str, nonce: int) -> dict[str, Any]:
    message = {"patient": patient, "delegate": delegate, "nonce": nonce, "deadline": api.deadline()}
    return {"revoke": message, "signature": api.signed(signer.key, "DelegateRevoke", message)}


def _record_of(api: LedgerApi, patient: str) -> str:
    """A record the Demo Clinic uploads through the hub (so that isAuthorized has a record to answer for)."""
    body = {"patient": patient, "category": "laboratory", "mediaType": "text/plain", "content": "Y3JlYXRpbmluZQ=="}
    response = api.http.post("/v1/records", json=body, headers=api.sign_in(CLINIC))
    assert response.status_code == 201, response.text
    record_id: str = response.json()["recordId"]
    return record_id


def _unused_nonces(api: LedgerApi, signer: str, count: int) -> list[int]:
    """``count`` unused nonces of ``signer``, from the lowest up (nonces are unordered: any unused one works)."""
    out: list[int] = []
    nonce = api.nonce(signer)
    while len(out) < count:
        if not api.nonce_used(signer, nonce):
            out.append(nonce)
        nonce += 1
    return out


def test_a_delegate_burning_nonces_cannot_void_the_patients_held_revocations(api: LedgerApi) -> None:
    patient = Account.from_key(ANVIL_KEYS[6])
    guardian = Account.from_key(ANVIL_KEYS[7])  # holds ether: it sends its own transactions too
    record_id = _record_of(api, patient.address)
    grant = api.consent_grant(patient.address, CLINIC.address, nonce=api.nonce(patient.address))
    granted = _post_grant(api, patient, grant)
    assert granted.status_code == 201, granted.text
    consent_id = granted.json()["consentId"]
    assert api.is_authorized(patient.address, CLINIC.address, record_id)
    named = _delegate_grant(api, patient, patient.address, guardian.address, api.nonce(patient.address))
    assert named.status_code == 201, named.text
    assert api.is_live_delegate(patient.address, guardian.address)

    # The patient signs the revocation and the guardian's removal with its next nonces, and holds them.
    revoke_nonce, removal_nonce = _unused_nonces(api, patient.address, 2)
    revoke = {"patient": patient.address, "consentId": consent_id, "nonce": revoke_nonce, "deadline": api.deadline()}
    held_revoke = {"revoke": revoke, "signature": api.signed(patient.key, "ConsentRevoke", revoke)}
    held_removal = _delegate_revoke(api, patient, patient.address, guardian.address, removal_nonce)

    # The guardian signs and relays messages with the very same nonce values, and more...
    for nonce, scope, purpose in (
        (revoke_nonce, "0x" + "00" * 32, "TREAT"),
        (removal_nonce, api.categories["laboratory"], "TREAT"),
        (removal_nonce + 1, "0x" + "00" * 32, "HPAYMT"),
        (removal_nonce + 2, record_id, "TREAT"),
    ):
        own = api.consent_grant(patient.address, LAB.address, nonce=nonce, scope=scope, purpose=purpose)
        response = _post_grant(api, guardian, own)
        assert response.status_code == 201, response.text
    # They spent the guardian's nonces of those values, not the patient's.
    assert not api.nonce_used(patient.address, revoke_nonce)
    assert not api.nonce_used(patient.address, removal_nonce)
    assert api.nonce_used(guardian.address, revoke_nonce) and api.nonce_used(guardian.address, removal_nonce)
    # ...and burns nonces from its own account: invalidateNonce of the held values and of the next ones.
    # (The held values it already used revert as NonceAlreadyUsed; the fresh ones are burnt.)
    for nonce in (revoke_nonce, removal_nonce, removal_nonce + 3, removal_nonce + 4, revoke_nonce + 256):
        receipt = api.chain.send(guardian.key, api.ledger, call_data("invalidateNonce", ("uint256",), (nonce,)))
        assert int(receipt["status"], 16) == (nonce not in (revoke_nonce, removal_nonce)), (nonce, receipt)
    assert len(api.events("NonceInvalidated", address_topic(guardian.address))) == 3
    assert not api.nonce_used(patient.address, removal_nonce + 3)

    # The patient's held revocation lands, as the patient's own.
    response = api.http.post(f"/v1/consents/{consent_id}/revoke", json=held_revoke)
    assert response.status_code == 200, response.text
    revoked = api.events("ConsentRevoked", consent_id)
    assert len(revoked) == 1 and word_address(words(revoked[0]["data"])[0]) == patient.address, revoked
    state = api.consent_state(consent_id)
    assert state["revoked"] and state["revokedByPatient"], state
    assert not api.is_authorized(patient.address, CLINIC.address, record_id)

    # The guardian, still live, tries to grant the revoked consent again: through the hub, and directly.
    # (A deadline of its own: the same fields as the patient's first grant are another attack, below.)
    again = {
        **api.consent_grant(patient.address, CLINIC.address, nonce=api.nonce(guardian.address)),
        "deadline": api.deadline(7200),
    }
    problem = _problem(_post_grant(api, guardian, again))
    assert problem.get("reason") == "revoked-by-patient", problem
    relayed = api.relay("ConsentGrant", again, api.signed(guardian.key, "ConsentGrant", again))
    assert _problem(relayed).get("reason") == "revoked-by-patient"
    direct = call_data(
        "grantConsent",
        ("address", "address", "bytes32", "bytes32", "uint64", "uint64"),
        (patient.address, CLINIC.address, again["scope"], bytes32_text("TREAT"), 0, 0),
    )
    with pytest.raises(Reverted) as reverted:
        api.chain.call(api.ledger, direct, sender=guardian.address)
    assert reverted.value.error == "RevokedByPatient", reverted.value.data.hex()
    receipt = api.chain.send(guardian.key, api.ledger, direct)
    assert int(receipt["status"], 16) == 0, "the guardian re-granted the consent the patient revoked"
    assert not api.is_authorized(patient.address, CLINIC.address, record_id)

    # The patient's held removal lands: the guardian is no delegate any more.
    removal = api.http.request(
        "DELETE", f"/v1/patients/{patient.address}/delegates/{guardian.address}", json=held_removal
    )
    assert removal.status_code == 200, removal.text
    assert not api.is_live_delegate(patient.address, guardian.address)
    assert len(api.events("DelegateRevoked", address_topic(patient.address), address_topic(guardian.address))) == 1

    # Removed, it can grant nothing in the patient's name.
    later = {
        **api.consent_grant(patient.address, CLINIC.address, nonce=api.nonce(guardian.address)),
        "deadline": api.deadline(9000),
    }
    problem = _problem(_post_grant(api, guardian, later))
    assert problem.get("reason") == "bad-signature", problem
    assert not api.is_authorized(patient.address, CLINIC.address, record_id)
    assert api.consent_state(consent_id)["revokedByPatient"]


def test_a_delegate_cannot_name_or_remove_delegates_for_the_patient(api: LedgerApi) -> None:
    patient, guardian, other, newcomer = (Account.create() for _ in range(4))
    for delegate in (guardian, other):
        named = _delegate_grant(api, patient, patient.address, delegate.address, api.nonce(patient.address))
        assert named.status_code == 201, named.text

    # The guardian names a further delegate for the patient: through the patient route and the relay.
    response = _delegate_grant(api, guardian, patient.address, newcomer.address, api.nonce(guardian.address))
    assert _problem(response).get("reason") == "bad-signature"
    message = {
        "patient": patient.address,
        "delegate": newcomer.address,
        "validUntil": 0,
        "nonce": api.nonce(guardian.address),
        "deadline": api.deadline(),
    }
    relayed = api.relay("DelegateGrant", message, api.signed(guardian.key, "DelegateGrant", message))
    assert _problem(relayed).get("reason") == "bad-signature"
    assert not api.is_live_delegate(patient.address, newcomer.address)

    # The guardian removes the patient's other delegate.
    path = f"/v1/patients/{patient.address}/delegates/{other.address}"
    body = _delegate_revoke(api, guardian, patient.address, other.address, api.nonce(guardian.address))
    assert _problem(api.http.request("DELETE", path, json=body)).get("reason") == "bad-signature"
    body = _delegate_revoke(api, guardian, patient.address, other.address, api.nonce(guardian.address))
    relayed = api.relay("DelegateRevoke", body["revoke"], body["signature"])
    assert _problem(relayed).get("reason") == "bad-signature"
    assert api.is_live_delegate(patient.address, other.address)
    assert api.events("DelegateRevoked", address_topic(patient.address)) == []
    # Nor did the refused attempts spend the guardian's nonces.
    assert not api.nonce_used(guardian.address, body["revoke"]["nonce"])


# ----------------------------------------------------------------- the same message, signed by the delegate


def _consented_patient_with_guardian(api: LedgerApi) -> tuple[LocalAccount, LocalAccount, str, str, dict[str, Any]]:
    patient, guardian = Account.create(), Account.create()
    record_id = _record_of(api, patient.address)
    grant = api.consent_grant(patient.address, CLINIC.address, nonce=api.nonce(patient.address))
    granted = _post_grant(api, patient, grant)
    assert granted.status_code == 201, granted.text
    named = _delegate_grant(api, patient, patient.address, guardian.address, api.nonce(patient.address))
    assert named.status_code == 201, named.text
    return patient, guardian, record_id, granted.json()["consentId"], grant


def test_a_delegate_cannot_preempt_the_patients_held_revocation_with_the_same_fields(api: LedgerApi) -> None:
    """The guardian guesses the patient's revocation (the patient's next nonce and a usual deadline),
    signs those very fields itself (the nonce is its own, unused) and relays them first: a revocation by a
    delegate, which that delegate may undo. It grants the consent again; then the patient's revocation arrives."""
    patient, guardian, record_id, consent_id, _grant = _consented_patient_with_guardian(api)
    revoke = {
        "patient": patient.address,
        "consentId": consent_id,
        "nonce": api.nonce(patient.address),
        "deadline": api.deadline(),
    }
    held = {"revoke": revoke, "signature": api.signed(patient.key, "ConsentRevoke", revoke)}

    preempted = {"revoke": revoke, "signature": api.signed(guardian.key, "ConsentRevoke", revoke)}
    first = api.http.post(f"/v1/consents/{consent_id}/revoke", json=preempted)
    assert first.status_code == 200, first.text
    regrant = api.consent_grant(patient.address, CLINIC.address, nonce=_unused_nonces(api, guardian.address, 2)[1])
    assert _post_grant(api, guardian, regrant).status_code == 201
    assert api.is_authorized(patient.address, CLINIC.address, record_id)

    response = api.http.post(f"/v1/consents/{consent_id}/revoke", json=held)
    if response.status_code == 200:  # then the patient's own revocation must be what happened
        assert response.json()["txHash"] != first.json()["txHash"], "answered with the delegate's revocation"
        state = api.consent_state(consent_id)
        assert state["revoked"] and state["revokedByPatient"], state
    else:
        _problem(response)
    assert not api.is_authorized(patient.address, CLINIC.address, record_id), "the patient's revocation was void"


def test_a_delegate_re_signing_the_patients_first_grant_is_refused(api: LedgerApi) -> None:
    """After the patient's own revocation, the guardian signs the fields of the patient's first grant (its own
    nonce of that value is unused): the consent the patient revoked, granted again. It must be refused."""
    patient, guardian, record_id, consent_id, grant = _consented_patient_with_guardian(api)
    revoke = {
        "patient": patient.address,
        "consentId": consent_id,
        "nonce": api.nonce(patient.address),
        "deadline": api.deadline(),
    }
    body = {"revoke": revoke, "signature": api.signed(patient.key, "ConsentRevoke", revoke)}
    assert api.http.post(f"/v1/consents/{consent_id}/revoke", json=body).status_code == 200
    assert not api.nonce_used(guardian.address, grant["nonce"])

    problem = _problem(_post_grant(api, guardian, grant))
    assert problem.get("reason") == "revoked-by-patient", problem
    assert not api.is_authorized(patient.address, CLINIC.address, record_id)


def test_a_delegates_revocation_does_not_keep_the_patients_own_revocation_out(api: LedgerApi) -> None:
    """The guardian revokes first, to keep the right to grant again (a delegate's revocation is the delegate's to
    undo); the patient's own revocation must still land and make it theirs, and the guardian's re-grant fail."""
    patient, guardian, record_id, consent_id, _grant = _consented_patient_with_guardian(api)
    revoke = {
        "patient": patient.address,
        "consentId": consent_id,
        "nonce": api.nonce(guardian.address),
        "deadline": api.deadline(),
    }
    by_guardian = {"revoke": revoke, "signature": api.signed(guardian.key, "ConsentRevoke", revoke)}
    assert api.http.post(f"/v1/consents/{consent_id}/revoke", json=by_guardian).status_code == 200
    assert not api.consent_state(consent_id)["revokedByPatient"]

    mine = {**revoke, "nonce": api.nonce(patient.address)}
    by_patient = {"revoke": mine, "signature": api.signed(patient.key, "ConsentRevoke", mine)}
    landed = api.http.post(f"/v1/consents/{consent_id}/revoke", json=by_patient)
    assert landed.status_code == 200, landed.text
    assert api.consent_state(consent_id)["revokedByPatient"]

    regrant = api.consent_grant(patient.address, CLINIC.address, nonce=api.nonce(guardian.address))
    refused = _post_grant(api, guardian, regrant)
    assert _problem(refused).get("reason") == "revoked-by-patient", refused.text
    assert not api.is_authorized(patient.address, CLINIC.address, record_id)
