"""The hub keeps the record labels a provider's node of its own seals to the patient (docs/architecture.md,
"Record titles"): sealed bytes only, which it cannot open. It takes one from the record's author only, for
the record's patient and the key the chain holds for them, so that no one can put a title of their own
choosing under someone else's record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ledger_service.codec.primitives import checksum_address
from ledger_service.db.database import Database
from ledger_service.db.models import RecordRow
from ledger_service.db.records import put_label
from ledger_service.errors import NotRecordAuthor, RecordErased, RecordNotFound, ValidationError

__all__ = ["MAX_SEALED_LABEL", "HubLabels"]

# enc (32) + the label (title 200 and file name 255 characters, up to 4 bytes each in UTF-8, in JSON) + tag
MAX_SEALED_LABEL: Final = 4096


class HubLabels:
    def __init__(self, *, db: Database, registered_key: Callable[[str], bytes]) -> None:
        self.db = db
        self._registered_key = registered_key

    def deposit(
        self, *, author: str, record_id: str, version: int, recipient: str, recipient_key: bytes, sealed: bytes
    ) -> None:
        if not 48 <= len(sealed) <= MAX_SEALED_LABEL:
            raise ValidationError(f"a sealed label is 48 to {MAX_SEALED_LABEL} bytes", field="sealed")
        author, recipient = checksum_address(author), checksum_address(recipient)
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            if record is None or record.state == "pending":
                raise RecordNotFound(f"no record {record_id}", record_id=record_id)
            if record.erased_at is not None or record.state in ("erasing", "erased"):
                raise RecordErased(f"record {record_id} was erased", record_id=record_id)
            if checksum_address(record.author) != author:
                raise NotRecordAuthor(f"{author} is not the author of record {record_id}", record_id=record_id)
            if recipient != checksum_address(record.patient):
                raise ValidationError("a label is deposited for the record's patient", field="recipient")
            if not 1 <= version <= record.current_version:
                raise ValidationError("the label's version is not a version of the record", field="version")
        if recipient_key != self._registered_key(recipient):
            raise ValidationError("the label is not sealed to the patient's key on chain", field="recipientKey")
        with self.db.session() as s:
            put_label(
                s, record_id=record_id, version=version, recipient=recipient, recipient_key=recipient_key, sealed=sealed
            )
