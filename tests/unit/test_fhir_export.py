"""FHIR R4 export: every resource kind validates with fhir.resources and says what it should."""

from __future__ import annotations

import pytest

from ledger_service.fhir_export import (
    Accounts,
    ConsentFacts,
    DisclosureFacts,
    VersionFacts,
    audit_event_resource,
    bundle_of,
    consent_resource,
    provenance_resource,
    validate,
)

PATIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
CLINIC = "0x70997970C51812dc3A010C7d01b50e20d17dc79C"
ACCOUNTS = Accounts(chain_id=31337)
H = "0x" + "ab" * 32


def _consent(**overrides: object) -> ConsentFacts:
    values: dict[str, object] = {
        "consent_id": H,
        "patient": PATIENT,
        "grantee": CLINIC,
        "grantee_name": "Demo Clinic",
        "scope_kind": "all",
        "scope_value": "",
        "purpose": "TREAT",
        "valid_from": 1_767_225_600,
        "valid_until": 1_798_761_600,
        "status": "active",
        "granted_at": 1_767_225_600,
        "signer": PATIENT,
        "tx_hash": "0x" + "cd" * 32,
    }
    values.update(overrides)
    return ConsentFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value", "key"), [("all", "", None), ("category", "laboratory", "class"), ("record", H, "data")]
)
def test_consent_scopes_map_to_provision(kind: str, value: str, key: str | None) -> None:
    resource = validate(consent_resource(_consent(scope_kind=kind, scope_value=value), ACCOUNTS))
    provision = resource["provision"]
    assert provision["actor"][0]["reference"]["identifier"]["value"] == f"eip155:31337:{CLINIC}"
    assert provision["purpose"][0]["code"] == "TREAT"
    assert provision["period"] == {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
    if key:
        assert key in provision


@pytest.mark.parametrize(
    ("status", "fhir"),
    [("active", "active"), ("pending", "proposed"), ("revoked", "inactive"), ("expired", "inactive")],
)
def test_consent_status(status: str, fhir: str) -> None:
    assert validate(consent_resource(_consent(status=status, valid_until=0), ACCOUNTS))["status"] == fhir


def test_audit_event_follows_balp_read_and_flags_break_glass() -> None:
    facts = DisclosureFacts(
        H, 2, PATIENT, CLINIC, "Demo Clinic", CLINIC, "ETREAT", True, "unconscious", 1_767_225_600, 42, "0x" + "ef" * 32
    )
    event = validate(audit_event_resource(facts, ACCOUNTS))
    assert event["action"] == "R" and event["subtype"][0]["code"] == "read"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert {"type": "break-glass-reason", "valueString": "unconscious"} in event["entity"][0]["detail"]
    assert [a["requestor"] for a in event["agent"]] == [False, True]


def test_provenance_links_to_the_previous_version() -> None:
    facts = VersionFacts(
        H,
        2,
        PATIENT,
        CLINIC,
        "Demo Clinic",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "0x" + "12" * 32,
        "0x" + "34" * 32,
        1_767_225_600,
        "0x" + "56" * 32,
    )
    resource = validate(provenance_resource(facts, ACCOUNTS))
    assert resource["activity"]["coding"][0]["code"] == "UPDATE"
    assert resource["entity"][1] == {
        "role": "revision",
        "what": {"identifier": {"system": "urn:consent-ledger:record-id", "value": f"{H}/v1"}},
    }


def test_searchset_bundle_validates() -> None:
    bundle = bundle_of("Consent", [_consent(), _consent(consent_id="0x" + "01" * 32)], ACCOUNTS, "http://x/v1/fhir")
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    assert bundle["entry"][0]["fullUrl"] == "http://x/v1/fhir/Consent/" + "ab" * 32
