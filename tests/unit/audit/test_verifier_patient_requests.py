"""The patient's own PATRQT request (right of access): the auditor accepts it with consent 0, and nothing else.

``logAccessBySig`` logs an AccessRequest whose accessor is the record's patient, for PATRQT, without any consent
and with ``consentId`` 0. The verifier must accept exactly that: consent 0 on any other disclosure, the patient
reading for another purpose, another account using PATRQT, or a signature that is not the patient's are flagged.
"""

from __future__ import annotations

from dataclasses import replace

from ledger_service.audit.trail import DisclosureEvent
from ledger_service.audit.verifier import Delivery, OperatorRecords, Report, verify
from ledger_service.codec import eip712
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest

from .builder import DOMAIN, TrailBuilder, address


def codes(report: Report) -> list[str]:
    return [v.code for v in report.violations]


class World:
    """A clinic's record of Alice's; Bob is another patient, Gina Alice's live guardian."""

    def __init__(self) -> None:
        b = self.b = TrailBuilder()
        self.clinic = b.provider(address())
        self.alice, self.bob, self.gina = address(), address(), address()
        b.delegate(self.alice, self.gina)
        self.record = b.anchor(self.alice, self.clinic, b"alice's lab result").record_id

    def request(
        self, accessor: str, *, purpose: str = "PATRQT", consent: bytes = ZERO32, signer: str | None = None
    ) -> DisclosureEvent:
        """An AccessLogged of Alice's record as the chain would show it, its transaction carrying ``accessor``'s
        request signed by ``signer`` (default the accessor)."""
        b = self.b
        at = b.at()
        p = purpose_to_bytes32(purpose)
        message = AccessRequest(self.alice, accessor, self.record, 1, p, b.nonce(), b.deadline())
        b.signed(at, message, signer or accessor)
        event = DisclosureEvent(
            self.record,
            self.alice,
            accessor,
            1,
            False,
            at,
            purpose=p,
            consent_id=consent,
            request_digest=eip712.digest(DOMAIN, message),
        )
        b.add(event)
        return event


def test_the_patients_own_patrqt_request_is_accepted_with_consent_zero() -> None:
    w = World()
    w.request(w.alice)
    report = verify(w.b.trail(), None)
    assert report.ok, report.violations
    assert report.counts["disclosures"] == 1
    (point,) = report.timeline
    assert (point.patient, point.accessor, point.purpose, point.ok) == (w.alice, w.alice, "PATRQT", True)
    # Beside the operator's delivery log: no node released it, so no delivery row is owed for it.
    rows: list[Delivery] = []
    assert verify(w.b.trail(), None, operator=OperatorRecords(rows, keys_present=[])).ok


def test_consent_zero_on_a_providers_disclosure_is_flagged() -> None:
    w = World()
    for purpose in ("PATRQT", "TREAT"):
        w.request(w.clinic, purpose=purpose)  # the record's own author: no consent, no right of access
    report = verify(w.b.trail(), None)
    assert codes(report) == ["disclosure-not-authorized", "disclosure-not-authorized"]
    assert all("expected a consent of" in v.message for v in report.violations)


def test_consent_zero_beside_the_consent_that_authorizes_is_flagged() -> None:
    w = World()
    consent = w.b.grant(w.alice, w.clinic, purpose="PATRQT")
    w.request(w.clinic, consent=consent)  # the honest event
    w.request(w.clinic)  # the consent hidden as 0
    (v,) = verify(w.b.trail(), None).violations
    assert v.code == "disclosure-consent-mismatch"
    assert f"expected consent 0x{consent.hex()}" in v.message and f"got 0x{'00' * 32}" in v.message


def test_the_patients_request_for_another_purpose_is_flagged() -> None:
    w = World()
    w.request(w.alice, purpose="TREAT")
    (v,) = verify(w.b.trail(), None).violations
    assert v.code == "disclosure-not-authorized" and "PATRQT only" in v.message


def test_the_patients_request_must_name_consent_zero() -> None:
    w = World()
    w.request(w.alice, consent=bytes.fromhex("ab" * 32))
    (v,) = verify(w.b.trail(), None).violations
    assert v.code == "disclosure-consent-mismatch"
    assert f"expected consent 0x{'00' * 32}" in v.message and "needs none" in v.message


def test_patrqt_by_another_patient_or_the_guardian_is_flagged() -> None:
    w = World()
    w.request(w.bob)  # another patient names itself the accessor of Alice's record
    w.request(w.gina)  # Alice's live guardian reading for her under its own name
    report = verify(w.b.trail(), None)
    assert codes(report) == ["disclosure-not-authorized", "disclosure-not-authorized"]


def test_the_guardians_signature_of_the_patients_own_request_is_flagged() -> None:
    w = World()
    forged = w.request(w.alice, signer=w.gina)
    (v,) = verify(w.b.trail(), None).violations
    assert v.code == "act-not-signed-by-party" and v.tx == forged.at.tx
    assert not verify(w.b.trail(), None).timeline[0].ok


def test_the_patients_request_after_erasure_or_replayed_is_flagged() -> None:
    w = World()
    first = w.request(w.alice)
    again = w.b.add(replace(first, at=w.b.at()))  # the same signed request logged a second time
    w.b.acts[again.at.tx_hash] = w.b.acts[first.at.tx_hash]  # type: ignore[union-attr]
    w.b.erase(w.alice, w.record)
    w.request(w.alice)
    assert codes(verify(w.b.trail(), None)) == ["disclosure-request-reused", "disclosure-erased-record"]
