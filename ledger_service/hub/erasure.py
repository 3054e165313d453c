"""Erasure at the patient's request: crypto-shred (destroy the keys and salts), unpin and collect the
blobs, then the on-chain event. A crash between the two is finished by
:meth:`ErasureService.finish_interrupted_erasures`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from ledger_service.blobs import BlobStore, Cid
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.database import Database
from ledger_service.db.models import DataKeyRow, RecordRow, RecordVersionRow
from ledger_service.errors import PermissionDenied, RecordErased, RecordNotFound
from ledger_service.records.disclosure import account_address
from ledger_service.records.locks import RecordLocks


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ErasureResult:
    record_id: str
    tx_hash: str
    versions: int


class ErasureService:
    def __init__(self, *, db: Database, blobs: BlobStore, ledger: ConsentLedgerContract, locks: RecordLocks) -> None:
        self.db = db
        self.blobs = blobs
        self.ledger = ledger  # the custodian's handle: delegations, the erasure event
        self._locks = locks  # shared with the node's amendments (bootstrap.py)

    def erase(self, *, record_id: str, requested_by: str) -> ErasureResult:
        """Crypto-shred: destroy keys and salts, unpin and collect blobs, then the on-chain event."""
        with self._locks.of(record_id):
            with self.db.session() as s:
                record = s.get(RecordRow, record_id)
                if record is None or record.state == "pending":
                    raise RecordNotFound(f"no record {record_id}", record_id=record_id)
                if record.erased_at is not None or record.state == "erasing":
                    raise RecordErased(f"record {record_id} is already erased", record_id=record_id)
                self._check_patient_or_delegate(record.patient, requested_by)
                record.state = "erasing"
                for key_row in s.execute(select(DataKeyRow).where(DataKeyRow.record_id == record_id)).scalars():
                    s.delete(key_row)
                cids = [
                    v.cid
                    for v in s.execute(
                        select(RecordVersionRow).where(RecordVersionRow.record_id == record_id)
                    ).scalars()
                ]
                patient = record.patient
            for cid in cids:
                self.blobs.unpin(Cid.parse(cid))
            self.blobs.gc()
            return self._emit_erasure(record_id, patient, len(cids))

    def _check_patient_or_delegate(self, patient: str, caller: str) -> None:
        caller = account_address(caller, "caller")
        if caller == patient:
            return
        _valid_until, live = self.ledger.delegation(patient, caller)
        if not live:
            raise PermissionDenied(
                f"{caller} is neither the patient nor a live delegate of the patient", account=caller
            )

    def _emit_erasure(self, record_id: str, patient: str, versions: int) -> ErasureResult:
        receipt = self.ledger.erase_record(patient, bytes.fromhex(record_id[2:]))
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            assert record is not None
            record.state, record.erased_at, record.erasure_tx = "erased", _now(), receipt.tx_hex
        return ErasureResult(record_id, receipt.tx_hex, versions)

    def finish_interrupted_erasures(self) -> int:
        """Erasures whose keys are gone but whose on-chain event did not land: emit it now."""
        with self.db.session() as s:
            pending = [
                (r.record_id, r.patient)
                for r in s.execute(select(RecordRow).where(RecordRow.state == "erasing")).scalars()
            ]
        for record_id, patient in pending:
            onchain = self.ledger.record(patient, bytes.fromhex(record_id[2:]))
            if onchain.erased:
                with self.db.session() as s:
                    record = s.get(RecordRow, record_id)
                    assert record is not None
                    record.state, record.erased_at = "erased", _now()
            else:
                self._emit_erasure(record_id, patient, onchain.version)
        return len(pending)
