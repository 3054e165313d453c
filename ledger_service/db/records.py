"""Record rows as the stories of the node and the hub look them up."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ledger_service.db.database import Database
from ledger_service.db.models import RecordLabelRow, RecordRow
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


def put_label(
    session: Session, *, record_id: str, version: int, recipient: str, recipient_key: bytes, sealed: bytes
) -> None:
    """Insert or replace one recipient's sealed label of a record version (docs/architecture.md, "Record
    titles"); the node's seal and the hub's deposit both write it so."""
    row = session.get(RecordLabelRow, (record_id, version, recipient))
    if row is None:
        session.add(
            RecordLabelRow(
                record_id=record_id,
                version=version,
                recipient=recipient,
                recipient_key=recipient_key,
                sealed=sealed,
                created_at=datetime.now(UTC),
            )
        )
    else:
        row.recipient_key, row.sealed = recipient_key, sealed
