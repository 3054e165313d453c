"""Record rows as the stories of the node and the hub look them up."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from ledger_service.db.database import Database
from ledger_service.db.models import RecordRow
from ledger_service.errors import RecordErased, RecordNotFound

_RECORD = select(*RecordRow.__table__.columns).where(RecordRow.record_id == bindparam("record_id"))


def anchored_record(db: Database, record_id: str) -> RecordRow:
    """The record, if it is anchored and not erased; else the record error a caller gets. The row is read with
    one Core statement on a connection (every read starts here) and handed back detached, for reading only."""
    with db.engine.connect() as connection:
        row = connection.execute(_RECORD, {"record_id": record_id}).first()
    if row is None or row.state == "pending":
        raise RecordNotFound(f"no record {record_id}", record_id=record_id)
    if row.erased_at is not None or row.state == "erasing":
        raise RecordErased(f"record {record_id} was erased at the patient's request", record_id=record_id)
    return RecordRow(**row._asdict())
