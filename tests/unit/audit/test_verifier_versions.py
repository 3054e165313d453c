"""The operator's anchored record versions matched against the chain's RecordAnchored events, both ways."""

from __future__ import annotations

import dataclasses

from ledger_service.audit.trail import Trail, VersionAnchored
from ledger_service.audit.verifier import (
    VIOLATION_CODES,
    OperatorRecords,
    OperatorVersion,
    Report,
    Scope,
    verify,
)
from ledger_service.blobs import Cid, compute_cid

from .builder import TrailBuilder, address


def row_for(v: VersionAnchored, **change: object) -> OperatorVersion:
    row = OperatorVersion(
        record_id="0x" + v.record_id.hex(),
        version=v.version,
        cid=str(Cid.parse(v.cid)),
        version_hash="0x" + v.version_hash.hex(),
        tx_hash=v.at.tx,
        block_number=v.at.block,
        state="anchored",
        patient=v.patient,
    )
    return dataclasses.replace(row, **change)  # type: ignore[arg-type]


class History:
    """Two patients' records anchored by one provider, and the operator's rows for them."""

    def __init__(self) -> None:
        b = self.b = TrailBuilder()
        self.clinic = b.provider(address())
        self.alice, self.bob = address(), address()
        self.a1 = b.anchor(self.alice, self.clinic, b"alice v1")
        self.a2 = b.anchor(self.alice, self.clinic, b"alice v2", record_id=self.a1.record_id)
        self.b1 = b.anchor(self.bob, self.clinic, b"bob v1")
        self.rows = [row_for(v) for v in (self.a1, self.a2, self.b1)]

    def verify(self, rows: list[OperatorVersion] | None = None, *, trail: Trail | None = None, **kw: object) -> Report:
        operator = OperatorRecords([], [], versions=self.rows if rows is None else rows)
        return verify(trail or self.b.trail(), None, operator=operator, **kw)  # type: ignore[arg-type]

    def without(self, v: VersionAnchored) -> Trail:
        """The trail as after a reorganization that dropped ``v``'s RecordAnchored event."""
        trail = self.b.trail()
        trail.events = [e for e in trail.events if e is not v]
        return trail


def codes(report: Report) -> list[str]:
    return [v.code for v in report.violations]


def test_matching_rows_pass_and_are_counted() -> None:
    h = History()
    report = h.verify()
    assert report.ok, report.violations
    assert report.counts["operatorVersionsChecked"] == 3
    assert any("RecordAnchored events" in c for c in report.checks)


def test_an_anchored_row_whose_event_vanished_is_named_with_record_version_and_tx() -> None:
    h = History()
    report = h.verify(trail=h.without(h.a2))
    (v,) = report.violations
    assert v.code == "version-without-event"
    rid = "0x" + h.a2.record_id.hex()
    assert (v.record_id, v.block, v.tx, v.patient) == (rid, h.a2.at.block, h.a2.at.tx, h.alice)
    assert rid in v.message and "version 2" in v.message and h.a2.at.tx in v.message
    assert "v2" in (v.entry or "")


def test_a_row_with_another_cid_or_version_hash_is_a_mismatch() -> None:
    h = History()
    other_cid = str(compute_cid(b"something else").cid)
    rows = [h.rows[0], row_for(h.a2, cid=other_cid), row_for(h.b1, version_hash="0x" + "11" * 32)]
    report = h.verify(rows)
    assert codes(report) == ["version-mismatch", "version-mismatch"]
    first, second = report.violations
    assert "cid: chain says" in first.message and other_cid in first.message
    assert first.record_id == "0x" + h.a2.record_id.hex() and "version 2" in first.message
    assert "version hash: chain says 0x" + h.b1.version_hash.hex() in second.message
    assert second.tx == h.b1.at.tx


def test_row_hex_case_does_not_matter() -> None:
    h = History()
    rows = [
        dataclasses.replace(r, record_id="0x" + r.record_id[2:].upper(), version_hash="0x" + r.version_hash[2:].upper())
        for r in h.rows
    ]
    assert h.verify(rows).ok


def test_a_chain_version_the_operator_does_not_know_has_its_own_code() -> None:
    h = History()
    report = h.verify([h.rows[0], h.rows[2]])
    (v,) = report.violations
    assert v.code == "version-unknown-to-operator"
    assert (v.record_id, v.block, v.tx) == ("0x" + h.a2.record_id.hex(), h.a2.at.block, h.a2.at.tx)
    assert "version 2" in v.message


def test_a_pending_row_is_known_but_not_required_on_chain() -> None:
    h = History()
    pending_on_chain = row_for(h.b1, state="pending", tx_hash=None, block_number=None, version_hash="")
    assert h.verify([h.rows[0], h.rows[1], pending_on_chain]).ok
    # A pending version that never made it on chain is recovery's business, not a violation.
    ghost = row_for(h.b1, version=2, state="pending", tx_hash=None, block_number=None, version_hash="")
    assert h.verify([*h.rows, ghost]).ok


def test_rows_outside_the_trail_are_not_judged_and_those_after_it_are_noted() -> None:
    h = History()
    trail = h.b.trail()
    trail.from_block = h.a1.at.block + 1  # a trail read from a later block
    before = row_for(h.a1, version=7, tx_hash="0x" + "33" * 32)  # anchored before it: the trail cannot tell
    assert h.verify([*h.rows, before], trail=trail).ok
    assert codes(h.verify([*h.rows, before])) == ["version-without-event"]
    later = row_for(h.b1, version=2, block_number=trail.to_block + 5, tx_hash="0x" + "22" * 32)
    report = h.verify([*h.rows, later])
    assert report.ok
    assert any("after the trail's last block" in n for n in report.notes)


def test_scope_limits_both_directions() -> None:
    h = History()
    trail = h.without(h.a2)
    assert h.verify(trail=trail, scope=Scope(patient=h.bob)).ok
    assert codes(h.verify(trail=trail, scope=Scope(patient=h.alice))) == ["version-without-event"]
    assert h.verify(trail=trail, scope=Scope(record_id=h.b1.record_id)).ok
    assert h.verify(trail=trail, scope=Scope(from_block=h.a2.at.block + 1)).ok
    unknown = h.verify([h.rows[0], h.rows[1]], scope=Scope(patient=h.alice))
    assert unknown.ok
    assert codes(h.verify([h.rows[0], h.rows[1]], scope=Scope(patient=h.bob))) == ["version-unknown-to-operator"]


def test_without_the_operators_versions_nothing_is_matched_and_a_note_says_so() -> None:
    h = History()
    report = verify(h.without(h.a2), None, operator=OperatorRecords([], []))
    assert report.ok and "operatorVersionsChecked" not in report.counts
    assert any("record versions were not given" in n for n in report.notes)


def test_the_new_codes_are_explained() -> None:
    for code in ("version-without-event", "version-mismatch", "version-unknown-to-operator"):
        assert VIOLATION_CODES[code]
