"""Emergency reviews: the patient's answer to an emergency access.

docs/architecture.md, "The path of a read" (Emergency reviews).

An emergency access bypasses consent, so the patient is shown it on their first page until they mark it
reviewed. The mark lives in the hub's DB only: the disclosure on the ledger is unchanged by it, and the mark
holds nothing but the disclosure's id, who marked it and when.
"""

from __future__ import annotations

import time

from eth_utils import to_checksum_address
from sqlalchemy import select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.db.database import Database
from ledger_service.db.models import EmergencyReviewRow
from ledger_service.errors import NotFoundError, ValidationError
from ledger_service.hub.batching import DisclosureLog
from ledger_service.hub.disclosures import BatchedDisclosure, ChainDisclosure, accounting_of


def disclosure_id(d: ChainDisclosure | BatchedDisclosure) -> str:
    """A disclosure's stable name in the accounting: its event (transaction and log index) on chain, or its
    entry of the batched disclosure log."""
    if isinstance(d, BatchedDisclosure):
        return f"leaf:{d.leaf_index}"
    return f"{d.tx_hash}:{d.log_index}"


def reviews_of(db: Database, patient: str) -> dict[str, int]:
    """When each of the patient's reviewed emergency disclosures was marked, by disclosure id."""
    patient = to_checksum_address(patient)
    with db.session() as s:
        rows = s.execute(select(EmergencyReviewRow).where(EmergencyReviewRow.patient == patient)).scalars()
        return {row.disclosure_id: row.reviewed_at for row in rows}


def mark_reviewed(
    db: Database, indexer: EventIndexer, log: DisclosureLog | None, patient: str, by: str, disclosure: str
) -> int:
    """Mark one of the patient's emergency disclosures reviewed; returns when it was (first) marked.

    Marking an already reviewed one again changes nothing and returns the first time.
    """
    patient = to_checksum_address(patient)
    found = next((d for d in accounting_of(db, indexer, log, patient) if disclosure_id(d) == disclosure), None)
    if found is None:
        raise NotFoundError("no disclosure of this patient's records has that id", field="disclosureId")
    if not found.emergency:
        raise ValidationError(
            "only an emergency access is reviewed; this disclosure was made under consent", field="disclosureId"
        )
    now = int(time.time())
    with db.session() as s:
        statement = (
            db.dialect_insert(EmergencyReviewRow)
            .values(patient=patient, disclosure_id=disclosure, reviewed_by=to_checksum_address(by), reviewed_at=now)
            .on_conflict_do_nothing(index_elements=["patient", "disclosure_id"])
        )
        s.execute(statement)
        s.commit()
        row = s.get(EmergencyReviewRow, (patient, disclosure))
        return row.reviewed_at if row is not None else now
