"""The pure core: consent rule, identifiers, record hash chain, codes. No chain, no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from ledger_service.domain.codes import (
    GRANTABLE_PURPOSES,
    ZERO32,
    category_id,
    parse_bytes32,
    purpose_from_bytes32,
    purpose_to_bytes32,
)
from ledger_service.domain.consent import (
    AccessQuery,
    ConsentGrant,
    ConsentState,
    check_window,
    consent_id,
    decide,
)
from ledger_service.domain.records import RecordVersion, chain_breaks, record_id_of, version_hash
from ledger_service.errors import ValidationError

PATIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
CLINIC = "0x70997970C51812dc3A010C7d01b50e20d17dc79C"
LAB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
RECORD = keccak(b"record")
LAB_CATEGORY = category_id("laboratory")
TREAT = purpose_to_bytes32("TREAT")


def _state(scope: bytes = ZERO32, *, grantee: str = CLINIC, purpose: bytes = TREAT, **kw: object) -> ConsentState:
    values: dict[str, object] = {"valid_from": 0, "valid_until": 0, "revoked": False}
    values.update(kw)
    return ConsentState(
        consent_id(PATIENT, grantee, scope, purpose),
        PATIENT,
        grantee,
        scope,
        purpose,
        **values,  # type: ignore[arg-type]
    )


def _decide(*states: ConsentState, at: int = 1_000, active: bool = True, purpose: bytes = TREAT, **kw: bool) -> bool:
    book = {s.consent_id: s for s in states}
    request = AccessQuery(PATIENT, CLINIC, RECORD, LAB_CATEGORY, purpose)
    return decide(request, book, timestamp=at, grantee_is_active_provider=active, **kw).allowed


def test_purpose_encoding_is_left_aligned_ascii() -> None:
    assert purpose_to_bytes32("TREAT") == b"TREAT" + b"\x00" * 27
    assert purpose_from_bytes32(purpose_to_bytes32("PUBHLTH")) == "PUBHLTH"
    with pytest.raises(ValidationError):
        purpose_to_bytes32("treat")


def test_category_id_is_keccak_of_the_code() -> None:
    assert category_id("laboratory") == keccak(b"laboratory")
    with pytest.raises(ValidationError):
        category_id("../etc")


@pytest.mark.parametrize("scope", [RECORD, LAB_CATEGORY, ZERO32])
def test_each_scope_authorizes(scope: bytes) -> None:
    assert _decide(_state(scope))


def test_other_record_category_or_purpose_does_not_authorize() -> None:
    assert not _decide(_state(keccak(b"other record")))
    assert not _decide(_state(category_id("imaging")))
    assert not _decide(_state(purpose=purpose_to_bytes32("HPAYMT")))
    assert not _decide(_state(grantee=LAB))


def test_window_edges_are_inclusive_start_exclusive_end() -> None:
    assert not _decide(_state(valid_from=1_001), at=1_000)
    assert _decide(_state(valid_from=1_000), at=1_000)
    assert _decide(_state(valid_until=1_001), at=1_000)
    assert not _decide(_state(valid_until=1_000), at=1_000)


def test_revoked_suspended_erased_and_etreat_never_authorize() -> None:
    assert not _decide(_state(revoked=True))
    assert not _decide(_state(), active=False)
    assert not _decide(_state(), record_erased=True)
    assert not _decide(_state(), record_exists=False)
    assert not _decide(_state(purpose=purpose_to_bytes32("ETREAT")), purpose=purpose_to_bytes32("ETREAT"))


def test_refusal_reason_names_the_most_specific_cause() -> None:
    request = AccessQuery(PATIENT, CLINIC, RECORD, LAB_CATEGORY, TREAT)
    revoked = _state(revoked=True)
    assert decide(request, {revoked.consent_id: revoked}, timestamp=5, grantee_is_active_provider=True).reason == (
        "consent revoked"
    )
    expired = _state(valid_until=4)
    assert (
        "expired" in decide(request, {expired.consent_id: expired}, timestamp=5, grantee_is_active_provider=True).reason
    )
    assert "no consent" in decide(request, {}, timestamp=5, grantee_is_active_provider=True).reason


def test_decision_reports_the_scope_it_used_in_contract_order() -> None:
    states = [_state(ZERO32), _state(LAB_CATEGORY), _state(RECORD)]
    request = AccessQuery(PATIENT, CLINIC, RECORD, LAB_CATEGORY, TREAT)
    decision = decide(request, {s.consent_id: s for s in states}, timestamp=1, grantee_is_active_provider=True)
    assert decision.consent_id == states[2].consent_id


@given(
    valid_from=st.integers(0, 2**40 - 1),
    valid_until=st.integers(0, 2**40 - 1),
    at=st.integers(0, 2**40 - 1),
    revoked=st.booleans(),
)
def test_revoked_or_expired_never_authorizes(valid_from: int, valid_until: int, at: int, revoked: bool) -> None:
    state = _state(valid_from=valid_from, valid_until=valid_until, revoked=revoked)
    allowed = _decide(state, at=at)
    expired = valid_until != 0 and at >= valid_until
    assert not (allowed and (revoked or expired or at < valid_from))


def test_grant_checks_mirror_the_contract() -> None:
    grant = ConsentGrant(PATIENT, CLINIC, ZERO32, TREAT, 10, 5, 0, 0)
    with pytest.raises(ValidationError, match="validUntil"):
        grant.check()
    with pytest.raises(ValidationError, match="ETREAT"):
        replace(grant, valid_until=0, purpose=purpose_to_bytes32("ETREAT")).check()
    with pytest.raises(ValidationError):
        check_window(0, 2**40)
    for code in GRANTABLE_PURPOSES:
        replace(grant, valid_until=0, purpose=purpose_to_bytes32(code)).check()


def test_parse_bytes32() -> None:
    assert parse_bytes32("0x" + "ab" * 32, "x") == b"\xab" * 32
    for bad in ("ab" * 32, "0x" + "ab" * 31, "0x" + "zz" * 32):
        with pytest.raises(ValidationError):
            parse_bytes32(bad, "x")


def _versions(n: int) -> list[RecordVersion]:
    rid = record_id_of(PATIENT, CLINIC, b"\x01" * 32)
    out, previous = [], ZERO32
    for v in range(1, n + 1):
        fields = {
            "record_id": rid,
            "version": v,
            "patient": PATIENT,
            "author": CLINIC,
            "category": LAB_CATEGORY,
            "cid": bytes([1, 0x55, 0x12, 0x20]) + keccak(bytes([v])),
            "commitment": keccak(b"c%d" % v),
            "previous_hash": previous,
        }
        h = version_hash(**fields)  # type: ignore[arg-type]
        out.append(RecordVersion(**fields, version_hash=h))  # type: ignore[arg-type]
        previous = h
    return out


def test_intact_chain_has_no_breaks() -> None:
    assert chain_breaks(_versions(4)) == []


def test_chain_breaks_name_version_expected_and_got() -> None:
    versions = _versions(3)
    versions[1] = replace(versions[1], commitment=keccak(b"tampered"))
    problems = chain_breaks(versions)
    assert problems and problems[0].startswith("version 2: version hash expected 0x")
    gap = chain_breaks([versions[0], versions[2]])
    assert any("expected version 2" in p for p in gap)


def test_token_secret_is_created_once_private_and_shared(tmp_path: object) -> None:
    import os
    import stat
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from ledger_service.hub.auth import load_or_create_secret

    path = Path(str(tmp_path)) / "keys" / "api-token.key"
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets_seen = set(pool.map(lambda _: load_or_create_secret(path), range(16)))
    assert len(secrets_seen) == 1 and len(secrets_seen.pop()) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["api-token.key"]


PATRQT = purpose_to_bytes32("PATRQT")


def test_the_patients_own_patrqt_request_needs_no_consent() -> None:
    """Right of access: the record's patient as accessor, for PATRQT, is allowed with no consent (logged as 0)."""
    own = AccessQuery(PATIENT, PATIENT.lower(), RECORD, LAB_CATEGORY, PATRQT)
    decision = decide(own, {}, timestamp=5, grantee_is_active_provider=False)
    assert decision.allowed and decision.consent_id is None
    assert not decide(own, {}, timestamp=5, grantee_is_active_provider=False, record_erased=True)
    assert not decide(own, {}, timestamp=5, grantee_is_active_provider=False, record_exists=False)


def test_patrqt_is_no_key_for_anyone_else_and_the_patient_reads_for_nothing_else() -> None:
    # a provider, or another account, asking for PATRQT needs a consent like any purpose
    assert not decide(
        AccessQuery(PATIENT, CLINIC, RECORD, LAB_CATEGORY, PATRQT), {}, timestamp=5, grantee_is_active_provider=True
    )
    assert not decide(
        AccessQuery(PATIENT, LAB, RECORD, LAB_CATEGORY, PATRQT), {}, timestamp=5, grantee_is_active_provider=False
    )
    for purpose in ("TREAT", "HPAYMT", "ETREAT"):
        refused = decide(
            AccessQuery(PATIENT, PATIENT, RECORD, LAB_CATEGORY, purpose_to_bytes32(purpose)),
            {},
            timestamp=5,
            grantee_is_active_provider=False,
        )
        assert not refused and "PATRQT only" in refused.reason
    # with a PATRQT consent a provider is authorized by it, as always
    granted = _state(purpose=PATRQT)
    decision = decide(
        AccessQuery(PATIENT, CLINIC, RECORD, LAB_CATEGORY, PATRQT),
        {granted.consent_id: granted},
        timestamp=5,
        grantee_is_active_provider=True,
    )
    assert decision.consent_id == granted.consent_id
