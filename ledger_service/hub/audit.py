"""Running the independent verifier for the API: the chain trail, the blobs, the operator DB."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from ledger_service.audit.fetch import PatientLogCache, fetch_raw_logs, fetch_trail
from ledger_service.audit.gcpause import paused_gc
from ledger_service.audit.report_html import render_html
from ledger_service.audit.sources import log_entries, operator_log, operator_records
from ledger_service.audit.trail import Trail
from ledger_service.audit.verifier import Report, Scope, verify
from ledger_service.blobs import BlobStore
from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.db.database import Database

KEEP_REPORTS = 32
KEEP_RECORD_PATIENTS = 100_000
ZERO_ADDRESS = "0x" + "00" * 20
_ANCHORED = "0x" + ledger_codec().topic("RecordAnchored").hex()


@dataclass(frozen=True)
class AuditRun:
    report_id: str
    report: Report
    trail: Trail


class AuditService:
    def __init__(
        self,
        *,
        rpc: RpcClient,
        contract: str,
        start_block: int,
        blobs: BlobStore,
        db: Database,
        operator_accounts: Collection[str] | None = None,
    ) -> None:
        self.rpc = rpc
        self.contract = contract
        self.start_block = start_block
        self.blobs = blobs
        self.db = db
        # The providers whose node keeps this DB (their deliveries and versions are looked for in it); None: all.
        self.operator_accounts = operator_accounts
        self._html: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        # Audits of one patient or record are repeated (the portal, the API's record route): keep each
        # patient's logs so the next audit reads only the blocks added since.
        self._logs = PatientLogCache()
        self._patients: OrderedDict[bytes, str] = OrderedDict()

    def run(self, *, patient: str | None = None, record_id: bytes | None = None) -> AuditRun:
        """Verify from the deployment block on and report what the scope names.

        A patient or record scope reads only that patient's events (and the global ones), so its
        cost follows the patient's history rather than the whole chain's; the record's patient is
        taken from its anchor on chain, not from the operator's DB.
        """
        if record_id is not None and patient is None:
            patient = self._patient_of(record_id)
        log = operator_log(self.db)
        # Reading and replaying a long history makes many small acyclic objects: see gcpause.
        with paused_gc():
            trail = fetch_trail(
                self.rpc,
                self.contract,
                from_block=self.start_block,
                entries=log_entries(log, patient=patient),
                patient=patient,
                cache=self._logs,
            )
            scope = Scope(patient=patient, record_id=record_id)
            operator = operator_records(self.db, patient=scope.patient, accounts=self.operator_accounts)
            report = verify(trail, self.blobs, operator=operator, log=log, scope=scope)
        report_id = secrets.token_hex(8)
        html = render_html(report)
        with self._lock:
            self._html[report_id] = html
            while len(self._html) > KEEP_REPORTS:
                self._html.popitem(last=False)
        return AuditRun(report_id, report, trail)

    def _patient_of(self, record_id: bytes) -> str:
        """The patient a record's first anchor names (the zero address, which has no events, if none).

        Remembered once found: a record's patient never changes (a reorganization that drops the
        anchor leaves the record without versions in that patient's trail, which is reported)."""
        with self._lock:
            known = self._patients.get(record_id)
        if known is not None:
            return known
        anchored = fetch_raw_logs(
            self.rpc,
            self.contract,
            self.start_block,
            self.rpc.block_number(),
            topic_filters=[[_ANCHORED, "0x" + record_id.hex()]],
        )
        if not anchored:
            return ZERO_ADDRESS
        patient = to_checksum_address("0x" + anchored[0]["topics"][2][-40:])
        with self._lock:
            self._patients[record_id] = patient
            while len(self._patients) > KEEP_RECORD_PATIENTS:
                self._patients.popitem(last=False)
        return patient

    def html(self, report_id: str) -> str | None:
        with self._lock:
            return self._html.get(report_id)


def record_trail(run: AuditRun, record_id: bytes) -> dict[str, Any]:
    """The chain's history of one record: versions, erasure and disclosures, in order."""
    versions = [v for v in run.trail.versions if v.record_id == record_id]
    erasures = [e for e in run.trail.erasures if e.record_id == record_id]
    disclosures = [d for d in run.trail.disclosures if d.record_id == record_id]
    return {
        "versions": [
            {
                "version": v.version,
                "author": v.author,
                "cid": _cid_text(v.cid),
                "commitment": "0x" + v.commitment.hex(),
                "previousHash": "0x" + v.previous_hash.hex(),
                "versionHash": "0x" + v.version_hash.hex(),
                "blockNumber": v.at.block,
                "timestamp": v.at.timestamp,
                "txHash": v.at.tx,
            }
            for v in versions
        ],
        "erasure": (
            {"blockNumber": erasures[0].at.block, "txHash": erasures[0].at.tx, "erasedBy": erasures[0].erased_by}
            if erasures
            else None
        ),
        "disclosures": [
            {
                "accessor": d.accessor,
                "version": d.version,
                "emergency": d.emergency,
                "purpose": "ETREAT" if d.emergency else d.purpose.rstrip(b"\x00").decode("ascii", "replace"),
                "consentId": None if d.emergency else "0x" + d.consent_id.hex(),
                "requestDigest": "0x" + d.request_digest.hex(),  # the accessor's signed request, as logged
                "blockNumber": d.at.block,
                "timestamp": d.at.timestamp,
                "txHash": d.at.tx,
            }
            for d in disclosures
        ],
    }


def _cid_text(raw: bytes) -> str:
    from ledger_service.blobs.cid import Cid

    try:
        return str(Cid.parse(raw))
    except Exception:  # an unparseable anchored CID is itself reported by the verifier
        return "0x" + raw.hex()
