"""The verifier checks who made every act: hand-built trails where one act is not its party's, each named once.

Every event the builder adds carries its transaction's act, signed by the party's own key (tests/unit/audit/
builder.py), so the honest history of each test verifies; each test then changes one thing the way an operator
(or a faulty contract) could, and expects exactly the violation that names it.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from eth_utils import keccak

from ledger_service.audit.trail import Act, At, CallDecoder, ConsentEvent
from ledger_service.audit.verifier import OperatorLog, OperatorRecords, Report, verify
from ledger_service.chain.ledger import BY_SIG_FUNCTION, ledger_codec, struct_tuple
from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import ZERO32, category_id, purpose_to_bytes32
from ledger_service.domain.consent import (
    AccessRequest,
    ConsentGrant,
    DelegateGrant,
    RecordAnchor,
    RecordErase,
)
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.signatures import ecdsa_signer

from .builder import CONTRACT, DOMAIN, RELAYER, TrailBuilder, address, sign


def codes(report: Report) -> list[str]:
    return [v.code for v in report.violations]


class World:
    """Two providers (the clinic may break the glass), a patient with a record, a consent to the lab."""

    def __init__(self) -> None:
        b = self.b = TrailBuilder()
        self.clinic = b.provider(address(), emergency=True)
        self.lab = b.provider(address())
        self.alice = address()
        self.consent = b.grant(self.alice, self.lab)
        self.record = b.anchor(self.alice, self.clinic, b"K 4.1").record_id

    def resign(self, at: At, *, signature: bytes) -> None:
        """Replace the signature the transaction at ``at`` carries."""
        self.b.acts[at.tx_hash] = replace(self.b.acts[at.tx_hash], signature=signature)


@pytest.fixture
def world() -> World:
    return World()


def test_an_honest_history_checks_every_act(world: World) -> None:
    b = world.b
    guardian = address()
    b.delegate(world.alice, guardian)
    b.grant(world.alice, world.clinic, purpose="HOPERAT", signer=guardian)
    b.access(world.record, world.alice, world.lab, world.consent)
    b.emergency(world.record, world.alice, world.clinic)
    b.erase(world.alice, world.record, by=guardian)
    report = verify(b.trail(), None)
    assert report.ok, report.violations
    # grant, anchor, delegation, delegate's grant, read, break-glass, erasure
    assert report.counts["actsChecked"] == 7
    assert any("every act's party" in check for check in report.checks)


def test_a_forged_signature_is_not_the_accessors(world: World) -> None:
    read = world.b.access(world.record, world.alice, world.lab, world.consent)
    world.resign(read.at, signature=os.urandom(64) + b"\x1b")
    report = verify(world.b.trail(), None)
    (v,) = report.violations
    assert v.code == "act-not-signed-by-party" and (v.block, v.tx) == (read.at.block, read.at.tx)
    assert f"expected a signature by {world.lab}" in v.message
    assert [p.ok for p in report.timeline] == [False]


def test_a_signer_that_is_not_the_party(world: World) -> None:
    """The clinic signs a request that names the lab as accessor: the event says the lab read, the key says not."""
    b = world.b
    read = b.access(world.record, world.alice, world.lab, world.consent)
    act = b.acts[read.at.tx_hash]
    assert act.message is not None
    world.resign(read.at, signature=sign(act.message, world.clinic))
    (v,) = verify(b.trail(), None).violations
    assert v.code == "act-not-signed-by-party"
    assert f"expected a signature by {world.lab}" in v.message and f"got a signature by {world.clinic}" in v.message


def test_a_consent_signed_by_another_key_does_not_count(world: World) -> None:
    b = world.b
    stolen = b.grant(world.alice, world.clinic, purpose="HPAYMT", signed_by=address())
    b.access(world.record, world.alice, world.clinic, stolen, purpose="HPAYMT")
    assert codes(verify(b.trail(), None)) == ["act-not-signed-by-party", "disclosure-not-authorized"]


def test_a_delegate_whose_delegation_expired(world: World) -> None:
    b = world.b
    guardian = address()
    b.delegate(world.alice, guardian, valid_until=b.time + 20)
    b.at(advance=60)
    b.grant(world.alice, world.clinic, purpose="HOPERAT", signer=guardian)  # signed by the guardian's own key
    (v,) = verify(b.trail(), None).violations
    assert v.code == "consent-signer-unauthorized" and guardian in v.message


def test_an_erasure_by_an_expired_delegate(world: World) -> None:
    b = world.b
    guardian = address()
    b.delegate(world.alice, guardian, valid_until=b.time + 20)
    b.at(advance=60)
    erasure = b.erase(world.alice, world.record, by=guardian)
    (v,) = verify(b.trail(), None).violations
    assert v.code == "erasure-signer-unauthorized" and v.block == erasure.at.block
    assert "not live" in v.message


def test_a_delegation_the_patient_did_not_sign_empowers_nobody(world: World) -> None:
    b = world.b
    mallory = address()
    b.delegate(world.alice, mallory)
    at = b.events[-1].at
    message = b.acts[at.tx_hash].message
    assert isinstance(message, DelegateGrant)
    world.resign(at, signature=sign(message, mallory))
    b.grant(world.alice, mallory, purpose="HPAYMT", signer=mallory)
    assert codes(verify(b.trail(), None)) == ["act-not-signed-by-party", "consent-signer-unauthorized"]


def test_a_request_digest_that_is_not_the_signed_requests(world: World) -> None:
    b = world.b
    read = b.access(world.record, world.alice, world.lab, world.consent)
    b.events[-1] = replace(read, request_digest=keccak(b"another request"))
    (v,) = verify(b.trail(), None).violations
    assert v.code == "access-digest-mismatch"
    assert "0x" + eip712.digest(DOMAIN, b.acts[read.at.tx_hash].message).hex() in v.message  # type: ignore[arg-type]


def test_an_event_that_states_another_act_than_the_signed_one(world: World) -> None:
    """The patient signed a grant that ends in 1000 s; the event says it never ends."""
    b = world.b
    ends = b.time + 1000
    b.grant(world.alice, world.clinic, purpose="HRESCH", valid_until=ends)
    at = b.events[-1].at
    b.events[-1] = replace(b.events[-1], valid_until=0)  # type: ignore[type-var]
    (v,) = verify(b.trail(), None).violations
    assert v.code == "act-message-mismatch" and v.tx == at.tx
    assert f"validUntil: message {ends}, event 0" in v.message


def test_a_direct_call_sent_by_another_account(world: World) -> None:
    b = world.b
    version = b.anchor(world.alice, world.clinic, b"by the operator", record_id=keccak(b"chosen"))
    b.direct(version.at, "anchorRecord", RELAYER)  # the relayer's own call, in the clinic's name
    (v,) = verify(b.trail(), None).violations
    assert v.code == "act-not-signed-by-party" and f"sent by {world.clinic}" in v.message and RELAYER in v.message


def test_an_act_its_transaction_does_not_show(world: World) -> None:
    b = world.b
    read = b.access(world.record, world.alice, world.lab, world.consent)
    b.acts[read.at.tx_hash] = Act(RELAYER, "", problem="the transaction calls 0x1234, not the ledger")
    b.grant(world.alice, world.clinic, purpose="PUBHLTH")
    b.acts[b.events[-1].at.tx_hash] = Act(RELAYER, "logAccessBySig", b.acts[read.at.tx_hash].message, b"\x01")
    found = codes(verify(b.trail(), None))
    assert found == ["act-unattributable", "act-unattributable"]


def test_a_contract_patient_signs_under_erc1271(world: World) -> None:
    """A patient that is a contract has no key: its grant is valid iff the trail says it accepts the signature."""
    b = world.b
    wallet = checksum_address("0x" + "ab" * 20)
    treat = purpose_to_bytes32("TREAT")
    consent = ConsentGrant(wallet, world.lab, ZERO32, treat, 0, 0, 1, b.time + 3600)
    at = b.at()
    proof = b"multisig approvals"
    b.acts[at.tx_hash] = Act(RELAYER, "grantConsentBySig", consent, proof)
    b.add(ConsentEvent("granted", consent.consent_id, wallet, wallet, at, grantee=world.lab, purpose=treat))
    claim = (wallet, eip712.digest(DOMAIN, consent), proof)
    trail = b.trail()
    trail.contract_signatures = {claim: True}
    assert verify(trail, None).ok
    trail.contract_signatures = {claim: False}
    (v,) = verify(trail, None).violations
    assert v.code == "act-not-signed-by-party" and "refuses it under ERC-1271" in v.message
    trail.contract_signatures = {}
    assert codes(verify(trail, None)) == ["act-not-signed-by-party"]


def test_batched_entries_need_the_accessors_signature_once_and_in_time(world: World) -> None:
    b = world.b
    good = b.entry(world.record, world.alice, world.lab, world.consent)
    forged = b.entry(world.record, world.alice, world.lab, world.consent, signer=world.clinic)
    late = replace(b.entry(world.record, world.alice, world.lab, world.consent), deadline=b.time - 1)
    log = MerkleLog.of([good.encode(), forged.encode(), good.encode(), late.encode()])
    b.batch(log.root(4), 0, 4)
    report = verify(b.trail(), None, log=OperatorLog.of(log))
    found = {(v.code, v.entry) for v in report.violations}
    assert found == {
        ("act-not-signed-by-party", "leaf 1"),
        ("disclosure-request-reused", "leaf 2"),
        ("act-not-signed-by-party", "leaf 3"),  # its deadline changed after signing: not the signed request
        ("disclosure-request-expired", "leaf 3"),
    }
    assert "disclosure-log leaf 0 logged it first" in next(
        v.message for v in report.violations if v.code == "disclosure-request-reused"
    )
    assert [p.ok for p in report.timeline] == [True, False, False, False]


def test_a_request_logged_on_chain_and_in_the_batched_log(world: World) -> None:
    b = world.b
    read = b.access(world.record, world.alice, world.lab, world.consent)
    request = b.acts[read.at.tx_hash].message
    assert isinstance(request, AccessRequest)
    again = DisclosureEntry.of_request(
        request,
        b.acts[read.at.tx_hash].signature,
        domain=DOMAIN,
        consent_id=world.consent,
        block_number=b.block,
        timestamp=b.time,
    )
    log = MerkleLog.of([again.encode()])
    b.batch(log.root(1), 0, 1)
    (v,) = verify(b.trail(), None, log=OperatorLog.of(log)).violations
    assert v.code == "disclosure-request-reused" and v.entry == "leaf 0" and read.at.tx in v.message


def test_a_trail_without_transactions_says_so(world: World) -> None:
    trail = world.b.trail()
    trail.acts = None
    report = verify(trail, None)
    assert report.ok and report.counts["actsChecked"] == 0
    assert any("not read" in note for note in report.notes)


def test_calls_decode_into_the_messages_that_were_signed() -> None:
    """The decoder reads by slicing what eth-abi wrote for every by-signature function; other calls too."""
    codec = ledger_codec()
    decoder = CallDecoder(codec, BY_SIG_FUNCTION)
    patient, author = address(), address()
    salt, cid = os.urandom(32), os.urandom(36)
    messages = [
        ConsentGrant(patient, author, ZERO32, purpose_to_bytes32("TREAT"), 1, 2**40 - 1, 3, 4),
        RecordAnchor(patient, author, category_id("laboratory"), salt, cid, keccak(cid), 2**255, 9),
        RecordErase(patient, keccak(b"r"), 0, 1),
        AccessRequest(patient, author, keccak(b"r"), 2**32 - 1, purpose_to_bytes32("TREAT"), 5, 6),
    ]
    for message in messages:
        for signature in (os.urandom(64) + b"\x1c", os.urandom(200)):
            name = BY_SIG_FUNCTION[type(message).__name__]
            data = codec.encode_call(name, struct_tuple(message), signature)
            act = decoder.act(RELAYER, CONTRACT.lower(), CONTRACT, data)
            assert (act.function, act.message, act.signature, act.sender) == (name, message, signature, RELAYER)
    assert decoder.act(patient, CONTRACT, CONTRACT, codec.encode_call("revokeConsent", ZERO32)) == Act(
        patient, "revokeConsent"
    )
    elsewhere = decoder.act(patient, RELAYER, CONTRACT, b"")
    assert elsewhere.function == "" and "not the ledger" in elsewhere.problem
    data = bytearray(codec.encode_call("eraseRecordBySig", struct_tuple(messages[2]), b"\x01" * 65))
    data[4] = 1  # a dirty high byte of the patient's address
    assert "not an address" in decoder.act(patient, CONTRACT, CONTRACT, bytes(data)).problem
    assert "no function" in decoder.act(patient, CONTRACT, CONTRACT, b"\xde\xad\xbe\xef").problem
    assert "well-formed" in decoder.act(patient, CONTRACT, CONTRACT, bytes(data[:40])).problem


def test_the_ecdsa_check_is_the_ledgers() -> None:
    """ecdsa_signer recovers what eip712.recover does, and refuses what OpenZeppelin's tryRecover refuses."""
    signer = address()
    digest = keccak(b"a request")
    good = sign(RecordErase(signer, digest, 1, 2), signer)
    message_digest = eip712.digest(DOMAIN, RecordErase(signer, digest, 1, 2))
    assert ecdsa_signer(message_digest, good) == eip712.recover(message_digest, good) == signer
    r, s, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
    high_s = r + (eip712.SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - v,))  # the same signature, malleated
    assert eip712.recover(message_digest, high_s) == signer and ecdsa_signer(message_digest, high_s) is None
    assert ecdsa_signer(message_digest, good[:64] + bytes((v - 27,))) is None  # v 0/1: not the ledger's
    assert ecdsa_signer(message_digest, good[:64]) is None  # 64 bytes (EIP-2098): not accepted either
    assert ecdsa_signer(message_digest, bytes(32) + good[32:]) is None
    for _ in range(20):
        other = address()
        signature = sign(RecordErase(other, digest, 1, 2), other)
        recovered = eip712.recover(eip712.digest(DOMAIN, RecordErase(other, digest, 1, 2)), signature)
        assert ecdsa_signer(eip712.digest(DOMAIN, RecordErase(other, digest, 1, 2)), signature) == recovered == other


def test_another_providers_node_keeps_its_own_rows(world: World) -> None:
    """An outside provider relays its own signed anchor and read: the operator's DB, the node of the clinic
    and the lab only, is not expected to hold their rows, but every row it does hold must match the chain."""
    b = world.b
    outside = b.provider(address())
    b.grant(world.alice, outside, purpose="HPAYMT")
    theirs = b.anchor(world.alice, outside, b"their own record")
    consent = b.events[-2]
    assert isinstance(consent, ConsentEvent)
    b.access(theirs.record_id, world.alice, outside, consent.consent_id, purpose="HPAYMT")
    holds_everything = OperatorRecords([], [], versions=[])
    everything = verify(b.trail(), None, operator=holds_everything)
    assert sorted(codes(everything)) == [
        "event-without-delivery",
        "version-unknown-to-operator",
        "version-unknown-to-operator",
    ]
    ours = OperatorRecords([], [], versions=[], accounts=[world.clinic, world.lab])
    report = verify(b.trail(), None, operator=ours)
    assert codes(report) == ["version-unknown-to-operator"]  # the clinic's own record has no row: still named
    assert report.violations[0].record_id == "0x" + world.record.hex()
    assert any("other providers'" in note for note in report.notes)


def test_a_traced_act_is_the_transactions_one_successful_call_of_the_ledger() -> None:
    from ledger_service.audit.fetch import _act_of_traces

    codec = ledger_codec()
    decoder = CallDecoder(codec, BY_SIG_FUNCTION)
    wallet, owner = address(), address()
    revoke = "0x" + codec.encode_call("revokeConsent", ZERO32).hex()

    def trace(frm: str, to: str, position: list[int], *, error: bool = False) -> dict[str, object]:
        call = {"from": frm.lower(), "to": to.lower(), "input": revoke, "callType": "call"}
        return {
            "type": "call",
            "action": call,
            "traceAddress": position,
            "blockNumber": 7,
            **({"error": "x"} if error else {}),
        }

    through = [trace(owner, wallet, []), trace(wallet, CONTRACT, [0])]
    assert _act_of_traces(through, CONTRACT, decoder, block=7, tx_hash=b"\x01" * 32) == Act(wallet, "revokeConsent")
    failed_first = [trace(owner, wallet, []), trace(wallet, CONTRACT, [0], error=True), trace(wallet, CONTRACT, [1])]
    assert _act_of_traces(failed_first, CONTRACT, decoder, block=7, tx_hash=b"\x01" * 32).function == "revokeConsent"
    twice = [trace(owner, wallet, []), trace(wallet, CONTRACT, [0]), trace(wallet, CONTRACT, [1])]
    act = _act_of_traces(twice, CONTRACT, decoder, block=7, tx_hash=b"\x01" * 32)
    assert (act.function, act.sender) == ("", owner) and "2 times" in act.problem
    never = [trace(owner, wallet, [])]
    assert (
        "no successful call of the ledger"
        in _act_of_traces(never, CONTRACT, decoder, block=7, tx_hash=b"\x01" * 32).problem
    )


def test_a_delegate_cannot_undo_the_patients_own_revocation(world: World) -> None:
    b = world.b
    guardian = address()
    b.delegate(world.alice, guardian)
    b.revoke(world.alice, world.consent)  # the patient's own revocation
    b.grant(world.alice, world.lab, signer=guardian)  # the guardian grants the same consent again
    b.access(world.record, world.alice, world.lab, world.consent)
    assert codes(verify(b.trail(), None)) == ["delegate-overrode-revocation", "disclosure-not-authorized"]
    b.grant(world.alice, world.lab)  # the patient may
    b.access(world.record, world.alice, world.lab, world.consent)
    assert codes(verify(b.trail(), None)) == ["delegate-overrode-revocation", "disclosure-not-authorized"]
    b.revoke(world.alice, world.consent, signer=guardian)  # a delegate's revocation a delegate may undo
    b.grant(world.alice, world.lab, signer=guardian)
    assert codes(verify(b.trail(), None)) == ["delegate-overrode-revocation", "disclosure-not-authorized"]
