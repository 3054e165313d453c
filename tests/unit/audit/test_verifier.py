"""The verifier over synthetic trails: every check, its violation code, and what the message names."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from html import escape
from pathlib import Path

import pytest
from eth_utils import keccak

from ledger_service.audit.report_html import STYLE_SOURCE, render_html
from ledger_service.audit.trail import DisclosureEvent
from ledger_service.audit.verifier import (
    VIOLATION_CODES,
    Delivery,
    OperatorLog,
    OperatorRecords,
    Report,
    Scope,
    verify,
)
from ledger_service.blobs import Cid, EmbeddedBlobStore
from ledger_service.domain.codes import ZERO32, category_id, purpose_from_bytes32
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog

from .builder import TrailBuilder, address


@pytest.fixture
def blobs(tmp_path: Path) -> EmbeddedBlobStore:
    return EmbeddedBlobStore(tmp_path / "blobs")


def codes(report: Report) -> list[str]:
    return [v.code for v in report.violations]


def delivery_for(d: DisclosureEvent, row_id: int, *, reason: str | None = None) -> Delivery:
    return Delivery(
        id=row_id,
        record_id="0x" + d.record_id.hex(),
        version=d.version,
        patient=d.patient,
        accessor=d.accessor,
        purpose="ETREAT" if d.emergency else purpose_from_bytes32(d.purpose),
        consent_id=None if d.emergency else "0x" + d.consent_id.hex(),
        emergency=d.emergency,
        reason=reason,
        tx_hash=d.at.tx,
        block_number=d.at.block,
        log_index=d.at.log_index,
        request_digest="0x" + d.request_digest.hex(),
    )


class World:
    """A small clean history: two providers, two patients, records, consents, reads, an emergency."""

    def __init__(self, blobs: EmbeddedBlobStore) -> None:
        b = self.b = TrailBuilder()
        self.blobs = blobs
        self.clinic = b.provider(address(), emergency=True)
        self.lab = b.provider(address())
        self.alice, self.bob = address(), address()
        self.c_alice = b.grant(self.alice, self.lab)
        self.c_bob = b.grant(self.bob, self.lab, scope=category_id("laboratory"), purpose="HPAYMT")
        self.r1 = self.put(self.alice, self.clinic, b"alice v1")
        self.put(self.alice, self.clinic, b"alice v2", record_id=self.r1.record_id)
        self.r2 = self.put(self.bob, self.clinic, b"bob lab")
        self.reads = [
            b.access(self.r1.record_id, self.alice, self.lab, self.c_alice),
            b.access(self.r2.record_id, self.bob, self.lab, self.c_bob, purpose="HPAYMT"),
        ]
        self.sos = b.emergency(self.r2.record_id, self.bob, self.clinic, "unconscious in ER")

    def put(self, patient: str, author: str, content: bytes, **kw: object):  # type: ignore[no-untyped-def]
        self.blobs.put(content)
        return self.b.anchor(patient, author, content, **kw)  # type: ignore[arg-type]

    def deliveries(self) -> list[Delivery]:
        rows = [delivery_for(d, i) for i, d in enumerate(self.reads, start=1)]
        rows.append(delivery_for(self.sos, 3, reason="unconscious in ER"))
        return rows

    def operator(self, deliveries: list[Delivery] | None = None, **kw: object) -> OperatorRecords:
        return OperatorRecords(deliveries if deliveries is not None else self.deliveries(), **kw)  # type: ignore[arg-type]


@pytest.fixture
def world(blobs: EmbeddedBlobStore) -> World:
    return World(blobs)


def test_clean_trail_passes_with_counts(world: World) -> None:
    report = verify(world.b.trail(), world.blobs, operator=world.operator(keys_present=[]))
    assert report.ok, report.violations
    c = report.counts
    assert (c["records"], c["versions"], c["blobsChecked"], c["disclosures"], c["emergencyAccesses"]) == (2, 3, 3, 3, 1)
    assert (c["patients"], c["providers"], c["consentGrants"], c["deliveriesChecked"]) == (2, 2, 2, 3)
    assert c["bytesChecked"] == len(b"alice v1alice v2bob lab")
    assert [e.reason for e in report.emergencies] == ["unconscious in ER"]
    assert report.emergencies[0].authorized
    assert len(report.timeline) == 3
    json.dumps(report.to_json())


def test_expired_consent_is_named_with_record_and_block(world: World) -> None:
    b = world.b
    grant = b.grant(world.alice, world.clinic, valid_until=b.time + 30)
    read = b.access(world.r1.record_id, world.alice, world.clinic, grant, advance=60)
    (v,) = verify(b.trail(), None).violations
    assert v.code == "disclosure-not-authorized"
    assert (v.record_id, v.block, v.tx) == ("0x" + read.record_id.hex(), read.at.block, read.at.tx)
    assert "consent expired" in v.message and "expected a consent" in v.message


def test_pending_and_revoked_consents_do_not_authorize(world: World) -> None:
    b = world.b
    pending = b.grant(world.alice, world.clinic, purpose="HRESCH", valid_from=b.time + 10_000)
    b.access(world.r1.record_id, world.alice, world.clinic, pending, purpose="HRESCH")
    b.revoke(world.alice, world.c_alice)
    b.access(world.r1.record_id, world.alice, world.lab, world.c_alice)
    messages = [v.message for v in verify(b.trail(), None).violations]
    assert len(messages) == 2
    assert "not yet valid" in messages[0] and "consent revoked" in messages[1]


def test_same_block_order_counts(world: World) -> None:
    """A grant earlier in the same block authorizes; a revocation earlier in the block does not."""
    b = world.b
    consent = b.grant(world.alice, world.clinic, purpose="PATRQT")
    b.access(world.r1.record_id, world.alice, world.clinic, consent, purpose="PATRQT", same_block=True)
    assert verify(b.trail(), None).ok
    b.revoke(world.alice, consent)
    b.access(world.r1.record_id, world.alice, world.clinic, consent, purpose="PATRQT", same_block=True)
    assert codes(verify(b.trail(), None)) == ["disclosure-not-authorized"]


def test_signer_must_be_patient_or_live_delegate(world: World) -> None:
    b = world.b
    guardian, stranger = address(), address()
    b.delegate(world.alice, guardian)
    ok = b.grant(world.alice, world.clinic, purpose="HOPERAT", signer=guardian)
    b.access(world.r1.record_id, world.alice, world.clinic, ok, purpose="HOPERAT")
    forged = b.grant(world.bob, world.clinic, purpose="HOPERAT", signer=stranger)
    b.access(world.r2.record_id, world.bob, world.clinic, forged, purpose="HOPERAT")
    assert codes(verify(b.trail(), None)) == ["consent-signer-unauthorized", "disclosure-not-authorized"]


def test_category_scope_and_wrong_category(world: World) -> None:
    b = world.b
    imaging = world.put(world.bob, world.clinic, b"bob scan", category="imaging")
    b.access(imaging.record_id, world.bob, world.lab, world.c_bob, purpose="HPAYMT")
    (v,) = verify(b.trail(), None).violations
    assert v.code == "disclosure-not-authorized" and v.record_id == "0x" + imaging.record_id.hex()


def test_suspended_provider_cannot_be_disclosed_to_or_author(world: World) -> None:
    b = world.b
    b.suspend(world.lab)
    b.access(world.r1.record_id, world.alice, world.lab, world.c_alice)
    b.anchor(world.alice, world.lab, b"by a suspended lab")
    b.reinstate(world.lab)
    b.access(world.r1.record_id, world.alice, world.lab, world.c_alice)
    report = verify(b.trail(), None)
    assert codes(report) == ["disclosure-not-authorized", "version-author-not-provider"]
    assert "suspended" in report.violations[1].message


def test_emergency_needs_the_role_and_is_flagged(world: World) -> None:
    b = world.b
    bad = b.emergency(world.r1.record_id, world.alice, world.lab)
    report = verify(b.trail(), None)
    (v,) = report.violations
    assert v.code == "emergency-not-authorized" and v.block == bad.at.block and "no EMERGENCY_ROLE" in v.message
    assert [e.authorized for e in report.emergencies] == [True, False]


def test_etreat_in_a_consented_disclosure(world: World) -> None:
    b = world.b
    b.access(world.r1.record_id, world.alice, world.lab, world.c_alice, purpose="ETREAT")
    assert codes(verify(b.trail(), None)) == ["disclosure-emergency-purpose"]


def test_consent_id_named_by_the_event_must_be_the_derived_one(world: World) -> None:
    b = world.b
    b.access(world.r1.record_id, world.alice, world.lab, keccak(b"other"))
    assert codes(verify(b.trail(), None)) == ["disclosure-consent-mismatch"]


def test_broken_version_chain(world: World) -> None:
    b = world.b
    b.anchor(world.alice, world.clinic, b"v3", record_id=world.r1.record_id, previous=keccak(b"not the head"))
    report = verify(b.trail(), None)
    assert codes(report) == ["version-chain-broken"]
    assert "previous hash expected" in report.violations[0].message


def test_erasure_rules(world: World) -> None:
    b = world.b
    b.erase(world.alice, world.r1.record_id)
    b.access(world.r1.record_id, world.alice, world.lab, world.c_alice)
    b.anchor(world.alice, world.clinic, b"after erasure", record_id=world.r1.record_id)
    rid = "0x" + world.r1.record_id.hex()
    ghost = "0x" + keccak(b"ghost").hex()
    operator = world.operator(keys_present=[(rid, 1), (rid, 2)], erased=[rid, ghost])
    report = verify(b.trail(), None, operator=operator)
    found = codes(report)
    assert found.count("erased-key-remains") == 1
    assert "version(s) 1, 2" in next(v.message for v in report.violations if v.code == "erased-key-remains")
    assert "erasure-event-missing" in found and "disclosure-erased-record" in found
    assert "version-after-erasure" in found
    assert "event-without-delivery" in found  # the read after erasure has no row either


def test_delivery_log_both_directions(world: World) -> None:
    rows = world.deliveries()
    edited = Delivery(**{**rows[0].__dict__, "purpose": "HRESCH", "accessor": world.clinic})
    extra = Delivery(**{**rows[1].__dict__, "id": 9, "tx_hash": "0x" + "ab" * 32})
    bad_reason = Delivery(**{**rows[2].__dict__, "reason": "curious"})
    report = verify(world.b.trail(), None, operator=world.operator([edited, extra, bad_reason], keys_present=[]))
    by_code = {v.code: v for v in report.violations}
    assert set(by_code) == {
        "delivery-mismatch",
        "delivery-without-event",
        "event-without-delivery",
        "delivery-reason-mismatch",
    }
    assert by_code["delivery-mismatch"].entry == "delivery #1"
    assert "purpose: chain says 'TREAT', row says 'HRESCH'" in by_code["delivery-mismatch"].message
    assert by_code["delivery-without-event"].entry == "delivery #9"
    assert by_code["event-without-delivery"].tx == world.reads[1].at.tx


def test_duplicate_delivery_rows(world: World) -> None:
    rows = world.deliveries()
    dup = Delivery(**{**rows[0].__dict__, "id": 7})
    assert codes(verify(world.b.trail(), None, operator=world.operator([*rows, dup], keys_present=[]))) == [
        "delivery-duplicate"
    ]


def test_blob_missing_and_corrupt_are_distinct(world: World, tmp_path: Path) -> None:
    big = secrets.token_bytes(600_000)  # three leaves under a dag-pb root
    world.put(world.alice, world.clinic, big)
    blocks = world.blobs.blocks_of(Cid.parse(world.b.events[-1].cid))  # type: ignore[union-attr]
    victim = world.blobs.block_path(blocks[-1])
    data = bytearray(victim.read_bytes())
    data[7] ^= 1
    victim.write_bytes(bytes(data))
    world.blobs.block_path(Cid.parse(world.r2.cid)).unlink()
    report = verify(world.b.trail(), world.blobs)
    by_code = {v.code: v for v in report.violations}
    assert set(by_code) == {"blob-corrupt", "blob-missing"}
    assert str(blocks[-1]) in by_code["blob-corrupt"].message
    assert str(Cid.parse(world.r2.cid)) in by_code["blob-missing"].message
    assert by_code["blob-missing"].record_id == "0x" + world.r2.record_id.hex()


def test_scope_filters(world: World) -> None:
    b = world.b
    b.access(world.r2.record_id, world.bob, world.clinic, keccak(b"none"))  # bob: unauthorized
    trail = b.trail()
    assert codes(verify(trail, None, scope=Scope(patient=world.alice))) == []
    assert codes(verify(trail, None, scope=Scope(patient=world.bob))) == ["disclosure-not-authorized"]
    assert codes(verify(trail, None, scope=Scope(record_id=world.r1.record_id))) == []
    assert codes(verify(trail, None, scope=Scope(from_block=b.block))) == ["disclosure-not-authorized"]
    assert codes(verify(trail, None, scope=Scope(from_block=b.block + 1))) == []
    alice_only = verify(trail, None, scope=Scope(patient=world.alice))
    assert alice_only.counts["records"] == 1 and alice_only.counts["disclosures"] == 1


def _batched(world: World, count: int) -> tuple[MerkleLog, list[DisclosureEntry]]:
    """``count`` batched reads, alternately of alice's and bob's record by the lab, each its own signed request."""
    b = world.b
    entries = [
        b.entry(world.r1.record_id, world.alice, world.lab, world.c_alice)
        if i % 2 == 0
        else b.entry(world.r2.record_id, world.bob, world.lab, world.c_bob, purpose="HPAYMT")
        for i in range(count)
    ]
    return MerkleLog.of([e.encode() for e in entries]), entries


def test_batches_consistent_roots_pass(world: World) -> None:
    log, _entries = _batched(world, 7)
    world.b.batch(log.root(3), 0, 3)
    world.b.batch(log.root(7), 3, 7)
    report = verify(world.b.trail(), None, log=OperatorLog.of(log))
    assert report.ok, report.violations
    assert report.counts["batchedDisclosures"] == 7 and report.counts["batches"] == 2


def test_batch_rollback_and_fork(world: World) -> None:
    log, entries = _batched(world, 8)
    b = world.b
    b.batch(log.root(4), 0, 4)
    b.batch(log.root(6), 4, 6)
    rolled = b.batch(log.root(5), 4, 5)  # the head was reset to 4 and a smaller tree anchored
    forked = MerkleLog.of([*[e.encode() for e in entries[:7]], entries[0].encode()])
    b.batch(forked.root(8), 6, 8)
    report = verify(b.trail(), None, log=OperatorLog.of(log))
    found = codes(report)
    rollback = next(v for v in report.violations if v.code == "batch-rollback")
    assert rollback.block == rolled.at.block and rollback.entry == "batch 3" and "rolled back" in rollback.message
    assert "batch-root-mismatch" in found and "batch-consistency-invalid" in found


def test_altered_consistency_proof_and_truncated_log(world: World) -> None:
    log, _entries = _batched(world, 8)
    world.b.batch(log.root(4), 0, 4)
    world.b.batch(log.root(8), 4, 8)
    trail = world.b.trail()
    assert verify(trail, None, log=OperatorLog.of(log)).ok

    def altered(old: int, new: int) -> list[bytes]:
        return [bytes([p[0] ^ 1]) + p[1:] for p in log.consistency_proof(old, new)]

    entries = [log.entry(i) for i in range(8)]
    bad = verify(trail, None, log=OperatorLog(entries, altered))
    assert codes(bad) == ["batch-consistency-invalid"] and bad.violations[0].entry == "batch 2"
    assert "expected 0x" in bad.violations[0].message
    short = verify(trail, None, log=OperatorLog(entries[:5], log.consistency_proof))
    assert "batch-log-truncated" in codes(short)


def test_batched_entries_are_judged_like_events(world: World) -> None:
    stranger = address()
    bad = world.b.entry(world.r1.record_id, world.alice, stranger, ZERO32)
    log = MerkleLog.of([bad.encode(), b"garbage"])
    world.b.batch(log.root(2), 0, 2)
    report = verify(world.b.trail(), None, log=OperatorLog.of(log))
    assert sorted(codes(report)) == ["batch-entry-invalid", "disclosure-not-authorized"]
    assert next(v for v in report.violations if v.code == "disclosure-not-authorized").entry == "leaf 0"


def test_report_json_and_html_explain_every_violation(world: World) -> None:
    b = world.b
    grant = b.grant(world.alice, world.clinic, valid_until=b.time + 1)
    b.access(world.r1.record_id, world.alice, world.clinic, grant, advance=100)
    report = verify(b.trail(), world.blobs, operator=world.operator(keys_present=[]))
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False and data["violationsByCode"] == {
        "disclosure-not-authorized": 1,
        "event-without-delivery": 1,
    }
    html = render_html(report)
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "disclosure-not-authorized" in html and escape(VIOLATION_CODES["event-without-delivery"]) in html
    assert world.alice in html


def test_html_report_is_styled_only_by_its_hashed_stylesheet(world: World) -> None:
    """The portal shows the report under its own CSP, which allows this one stylesheet by its hash."""
    b = world.b
    b.emergency(world.r1.record_id, world.alice, world.clinic)
    html = render_html(verify(b.trail(), None))
    (stylesheet,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    assert f"'sha256-{digest}'" == STYLE_SOURCE
    assert " style=" not in html and "<script" not in html.lower()
