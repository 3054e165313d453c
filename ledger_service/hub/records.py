"""The patient-facing lookups of records and their anchored versions, as plain data for the edge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ledger_service.db.database import Database
from ledger_service.db.models import RecordRow, RecordVersionRow
from ledger_service.records.disclosure import account_address


@dataclass(frozen=True)
class RecordSummary:
    record_id: str
    patient: str
    author: str
    category: str
    current_version: int
    created_at: datetime
    erased: bool  # erased at the patient's request, or being erased


@dataclass(frozen=True)
class VersionSummary:
    record_id: str
    version: int
    cid: str
    media_type: str
    plaintext_size: int
    version_hash: str
    previous_hash: str
    author: str
    tx_hash: str | None
    block_number: int | None


def _record(row: RecordRow) -> RecordSummary:
    return RecordSummary(
        record_id=row.record_id,
        patient=row.patient,
        author=row.author,
        category=row.category,
        current_version=row.current_version,
        created_at=row.created_at,
        erased=row.erased_at is not None or row.state in ("erasing", "erased"),
    )


def _version(row: RecordVersionRow) -> VersionSummary:
    return VersionSummary(
        record_id=row.record_id,
        version=row.version,
        cid=row.cid,
        media_type=row.media_type,
        plaintext_size=row.plaintext_size,
        version_hash=row.version_hash,
        previous_hash=row.previous_hash,
        author=row.author,
        tx_hash=row.tx_hash,
        block_number=row.block_number,
    )


class RecordLookups:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def versions(self, record_id: str) -> list[VersionSummary]:
        with self.db.session() as s:
            return [
                _version(row)
                for row in s.execute(
                    select(RecordVersionRow)
                    .where(RecordVersionRow.record_id == record_id, RecordVersionRow.state == "anchored")
                    .order_by(RecordVersionRow.version)
                ).scalars()
            ]

    def head_versions_of(self, patient: str) -> dict[str, VersionSummary]:
        """The newest anchored version of each of the patient's records, in one query (a listing
        must not cost a query per record)."""
        patient = account_address(patient, "patient")
        heads: dict[str, VersionSummary] = {}
        with self.db.session() as s:
            rows = s.execute(
                select(RecordVersionRow)
                .join(RecordRow, RecordRow.record_id == RecordVersionRow.record_id)
                .where(RecordRow.patient == patient, RecordVersionRow.state == "anchored")
                .order_by(RecordVersionRow.version)
            ).scalars()
            for row in rows:
                heads[row.record_id] = _version(row)
        return heads

    def records_of(self, patient: str) -> list[RecordSummary]:
        patient = account_address(patient, "patient")
        with self.db.session() as s:
            return [
                _record(row)
                for row in s.execute(
                    select(RecordRow)
                    .where(RecordRow.patient == patient, RecordRow.state != "pending")
                    .order_by(RecordRow.created_at)
                ).scalars()
            ]
