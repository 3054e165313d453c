"""Record rows as the stories of the node and the hub look them up."""

from __future__ import annotations

from ledger_service.db.database import Database
from ledger_service.db.models import RecordRow
from ledger_service.errors import RecordErased, RecordNotFound


def anchored_record(db: Database, record_id: str) -> RecordRow:
    """The record, if it is anchored and not erased; else the record error a caller gets."""
    with db.session() as s:
        record = s.get(RecordRow, record_id)
        if record is None or record.state == "pending":
            raise RecordNotFound(f"no record {record_id}", record_id=record_id)
        if record.erased_at is not None or record.state == "erasing":
            raise RecordErased(f"record {record_id} was erased at the patient's request", record_id=record_id)
        return record
