"""Erasure at the patient's signed request: crypto-shred (destroy the keys and salts), unpin and collect the
blobs, then relay the patient's (or a live delegate's) signed ``RecordErase``, whose event names its signer.

The hub cannot erase on its own: the ledger takes an erasure only with the patient's or a live delegate's
signature, and the signed request is checked against the chain (``eth_call``) before anything is destroyed.
It is kept with the record until its event lands, so a crash in between is finished by
:meth:`ErasureService.finish_interrupted_erasures` re-sending the same request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from ledger_service.blobs import BlobStore, Cid
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.database import Database
from ledger_service.db.models import CommitmentSaltRow, RecordLabelRow, RecordRow, RecordVersionRow
from ledger_service.domain.consent import RecordErase
from ledger_service.errors import RecordErased, RecordNotFound, ValidationError
from ledger_service.hub.relay import Relay
from ledger_service.records.locks import RecordLocks


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ErasureResult:
    record_id: str
    tx_hash: str
    versions: int
    block_number: int | None = None


class ErasureService:
    def __init__(
        self, *, db: Database, blobs: BlobStore, ledger: ConsentLedgerContract, relay: Relay, locks: RecordLocks
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.ledger = ledger  # views: whether a record is erased on chain
        self.relay = relay  # sends the patient's signed erasure
        self._locks = locks  # shared with the node's amendments (bootstrap.py)

    def erase(self, *, record_id: str, request: RecordErase, signature: bytes) -> ErasureResult:
        """Crypto-shred: check the signed request on chain, destroy keys and salts, unpin and collect blobs,
        then relay the request (its event names the signer)."""
        if "0x" + request.record_id.hex() != record_id.lower():
            raise ValidationError("erase.recordId differs from the record in the path", field="recordId")
        with self._locks.of(record_id):
            with self.db.session() as s:
                record = s.get(RecordRow, record_id)
                if record is None or record.state == "pending":
                    raise RecordNotFound(f"no record {record_id}", record_id=record_id)
                if record.erased_at is not None or record.state == "erasing":
                    raise RecordErased(f"record {record_id} is already erased", record_id=record_id)
                if request.patient.lower() != record.patient.lower():
                    raise ValidationError("erase.patient is not the record's patient", field="patient")
            # Refused here (bad signature, not the patient or a live delegate, nonce used) destroys nothing.
            self.relay.check_shape(request, signature, None)
            self.relay.simulate(request, signature)
            with self.db.session() as s:
                record = s.get(RecordRow, record_id)
                assert record is not None
                record.state = "erasing"
                record.erase_request = _signed_erase_json(request, signature)
                for key_row in s.execute(
                    select(CommitmentSaltRow).where(CommitmentSaltRow.record_id == record_id)
                ).scalars():
                    s.delete(key_row)
                # The record's title goes with it (docs/architecture.md, "Record titles").
                s.execute(delete(RecordLabelRow).where(RecordLabelRow.record_id == record_id))
                cids = [
                    v.cid
                    for v in s.execute(
                        select(RecordVersionRow).where(RecordVersionRow.record_id == record_id)
                    ).scalars()
                ]
            for cid in cids:
                self.blobs.unpin(Cid.parse(cid))
            self.blobs.gc()
            return self._emit_erasure(record_id, request, signature, len(cids))

    def _emit_erasure(self, record_id: str, request: RecordErase, signature: bytes, versions: int) -> ErasureResult:
        outcome = self.relay.relay(request, signature)
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            assert record is not None
            record.state, record.erased_at, record.erasure_tx = "erased", _now(), outcome.tx_hash
        return ErasureResult(record_id, outcome.tx_hash, versions, outcome.block_number)

    def finish_interrupted_erasures(self) -> int:
        """Erasures whose keys are gone but whose on-chain event did not land: emit it now."""
        with self.db.session() as s:
            pending = [
                (r.record_id, r.patient, r.erase_request)
                for r in s.execute(select(RecordRow).where(RecordRow.state == "erasing")).scalars()
            ]
        for record_id, patient, signed in pending:
            onchain = self.ledger.record(patient, bytes.fromhex(record_id[2:]))
            if onchain.erased:
                with self.db.session() as s:
                    record = s.get(RecordRow, record_id)
                    assert record is not None
                    record.state, record.erased_at = "erased", _now()
            elif signed is not None:
                request, signature = _parse_signed_erase(signed)
                self._emit_erasure(record_id, request, signature, onchain.version)
        return len(pending)


def _signed_erase_json(request: RecordErase, signature: bytes) -> str:
    return json.dumps(
        {
            "patient": request.patient,
            "recordId": "0x" + request.record_id.hex(),
            "nonce": request.nonce,
            "deadline": request.deadline,
            "signature": "0x" + signature.hex(),
        }
    )


def _parse_signed_erase(text: str) -> tuple[RecordErase, bytes]:
    data = json.loads(text)
    request = RecordErase(
        data["patient"], bytes.fromhex(data["recordId"][2:]), int(data["nonce"]), int(data["deadline"])
    )
    return request, bytes.fromhex(data["signature"][2:])
