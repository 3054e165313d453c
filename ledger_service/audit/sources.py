"""Adapters that turn the operator's stores into the verifier's plain inputs (I/O lives here)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from ledger_service.audit.merkle import MerkleLog
from ledger_service.audit.verifier import Delivery, OperatorLog, OperatorRecords
from ledger_service.db.database import Database
from ledger_service.db.models import DataKeyRow, DeliveryRow, DisclosureLogEntryRow, RecordRow
from ledger_service.errors import AuditError


def operator_records(db: Database) -> OperatorRecords:
    """The delivery log, the versions that still have wrapped keys, and the records marked erased."""
    with db.session() as s:
        deliveries = [
            Delivery(
                id=row.id,
                record_id=row.record_id,
                version=row.version,
                patient=row.patient,
                accessor=row.accessor,
                purpose=row.purpose,
                consent_id=row.consent_id,
                emergency=bool(row.emergency),
                reason=row.reason,
                # A batched delivery has no transaction: it names its disclosure-log leaf instead.
                tx_hash=row.tx_hash or "",
                block_number=int(row.block_number or 0),
                log_index=-1 if row.log_index is None else int(row.log_index),
                status=row.status,
                leaf_index=None if row.leaf_index is None else int(row.leaf_index),
            )
            for row in s.execute(select(DeliveryRow).order_by(DeliveryRow.id)).scalars()
        ]
        keys = [(rid, int(v)) for rid, v in s.execute(select(DataKeyRow.record_id, DataKeyRow.version)).all()]
        erased = [
            rid
            for (rid,) in s.execute(
                select(RecordRow.record_id).where((RecordRow.erased_at.is_not(None)) | (RecordRow.state == "erased"))
            ).all()
        ]
    return OperatorRecords(deliveries, keys, erased)


def operator_log(db: Database) -> OperatorLog | None:
    """The operator's batched disclosure log as the DB holds it (None when it has no entry).

    The entries are read whole (the verifier recomputes every root from them); consistency proofs
    come from the subtree hashes the DB stores, as the operator serves them.
    """
    from ledger_service.service.batching import DbLeafStore

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


def entry_blocks(log: OperatorLog | None) -> list[int]:
    """The blocks batched entries name, whose timestamps the verifier needs beside the events'."""
    from ledger_service.audit.entries import DisclosureEntry

    blocks: list[int] = []
    for raw in log.entries if log is not None else []:
        try:
            blocks.append(DisclosureEntry.decode(raw).block_number)
        except AuditError:
            continue  # a malformed entry is reported by the verifier itself
    return blocks


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
