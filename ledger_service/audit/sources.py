"""Adapters that turn the operator's stores into the verifier's plain inputs (I/O lives here)."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from eth_utils import to_checksum_address
from sqlalchemy import select, true

from ledger_service.audit.gcpause import paused_gc
from ledger_service.audit.verifier import Delivery, OperatorLog, OperatorRecords, OperatorVersion
from ledger_service.db.database import Database
from ledger_service.db.models import CommitmentSaltRow, DeliveryRow, DisclosureLogEntryRow, RecordRow, RecordVersionRow
from ledger_service.errors import AuditError
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog


def operator_records(
    db: Database, *, patient: str | None = None, accounts: Collection[str] | None = None
) -> OperatorRecords:
    """The delivery log, the versions that still have wrapped keys, the records marked erased, and the
    record versions (with their anchors) the operator holds; with ``patient``, only that patient's.
    ``accounts``: the providers whose node keeps this DB (see :class:`OperatorRecords`).

    Read as plain Core rows (no ORM entities): a long delivery log is loaded in one pass.
    """
    d = DeliveryRow.__table__.c
    v = RecordVersionRow.__table__.c
    r = RecordRow.__table__.c
    mine = (r.patient == patient) if patient else true()
    with paused_gc(), db.session() as s:
        deliveries = [
            Delivery(
                row_id,
                record_id,
                version,
                row_patient,
                accessor,
                purpose,
                consent_id,
                bool(emergency),
                reason,
                # A batched delivery has no transaction: it names its disclosure-log leaf instead.
                tx_hash or "",
                int(block_number or 0),
                -1 if log_index is None else int(log_index),
                status,
                None if leaf_index is None else int(leaf_index),
                request_digest,
            )
            for (
                row_id,
                record_id,
                version,
                row_patient,  # not ``patient``: that is the scope this function was given
                accessor,
                purpose,
                consent_id,
                emergency,
                reason,
                tx_hash,
                block_number,
                log_index,
                status,
                leaf_index,
                request_digest,
            ) in s.execute(
                select(
                    d.id,
                    d.record_id,
                    d.version,
                    d.patient,
                    d.accessor,
                    d.purpose,
                    d.consent_id,
                    d.emergency,
                    d.reason,
                    d.tx_hash,
                    d.block_number,
                    d.log_index,
                    d.status,
                    d.leaf_index,
                    d.request_digest,
                )
                # A pending row is a disclosure still in flight (its receipt not yet seen): no bytes
                # were released for it, and recovery turns it into a logged row or drops it.
                .where(d.status != "pending", (d.patient == patient) if patient else true())
                .order_by(d.id)
            ).all()
        ]
        keys = [
            (rid, int(version))
            for rid, version in s.execute(
                select(CommitmentSaltRow.record_id, CommitmentSaltRow.version)
                .select_from(
                    CommitmentSaltRow.__table__.join(RecordRow.__table__, CommitmentSaltRow.record_id == r.record_id)
                )
                .where(mine)
            ).all()
        ]
        erased = [
            rid
            for (rid,) in s.execute(
                select(RecordRow.record_id).where(
                    (RecordRow.erased_at.is_not(None)) | (RecordRow.state == "erased"), mine
                )
            ).all()
        ]
        versions = [
            OperatorVersion(
                record_id,
                int(version),
                cid,
                version_hash or "",
                tx_hash,
                None if block_number is None else int(block_number),
                state,
                row_patient,
            )
            for record_id, version, cid, version_hash, tx_hash, block_number, state, row_patient in s.execute(
                select(v.record_id, v.version, v.cid, v.version_hash, v.tx_hash, v.block_number, v.state, r.patient)
                .select_from(RecordVersionRow.__table__.outerjoin(RecordRow.__table__, v.record_id == r.record_id))
                .where(mine)
                .order_by(v.id)
            ).all()
        ]
    return OperatorRecords(
        deliveries, keys, erased, versions, None if accounts is None else [to_checksum_address(a) for a in accounts]
    )


def operator_log(db: Database) -> OperatorLog | None:
    """The operator's batched disclosure log as the DB holds it (None when it has no entry).

    The entries are read whole (the verifier recomputes every root from them); consistency proofs
    come from the subtree hashes the DB stores, as the operator serves them.
    """
    from ledger_service.db.leaf_store import DbLeafStore

    with db.session() as s:
        rows = s.execute(
            select(DisclosureLogEntryRow.leaf_index, DisclosureLogEntryRow.entry).order_by(
                DisclosureLogEntryRow.leaf_index
            )
        ).all()
    if not rows:
        return None
    entries = []
    for expected, (index, entry) in enumerate(rows):
        if int(index) != expected:
            raise AuditError(f"the DB's disclosure log has a gap: expected leaf {expected}, found {index}")
        entries.append(bytes(entry))
    return OperatorLog(entries, MerkleLog(DbLeafStore(db)).consistency_proof)


def log_entries(log: OperatorLog | None, *, patient: str | None = None) -> list[DisclosureEntry]:
    """The batched entries (of ``patient``, if given) that decode: the chain is read for their blocks'
    timestamps and, for an accessor that is a contract, for its verdict on their signatures."""
    entries: list[DisclosureEntry] = []
    for raw in log.entries if log is not None else []:
        try:
            entry = DisclosureEntry.decode(raw)
        except AuditError:
            continue  # a malformed entry is reported by the verifier itself
        if patient is None or to_checksum_address(entry.patient) == patient:
            entries.append(entry)
    return entries


def entry_blocks(log: OperatorLog | None, *, patient: str | None = None) -> list[int]:
    """The blocks batched entries (of ``patient``, if given) name, whose timestamps the verifier needs
    beside the events'."""
    return [entry.block_number for entry in log_entries(log, patient=patient)]


def disclosure_log_file(path: Path) -> OperatorLog:
    """An operator disclosure log exported as JSON ``{"entries": ["0x<leaf data>", ...]}``.

    Consistency proofs are produced from these entries, as the operator's log would produce them.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [bytes.fromhex(e[2:] if e.startswith("0x") else e) for e in data["entries"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuditError(f"cannot read disclosure log {path}: {type(exc).__name__}: {exc}") from exc
    return OperatorLog.of(MerkleLog.of(entries))
