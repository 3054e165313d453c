"""Accounting of disclosures: every release of a patient's records, read from chain events.

The chain is the source of truth (the events cannot be edited); the operator's delivery
log adds only the break-glass reason text, whose hash is on chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_utils import to_checksum_address
from sqlalchemy import select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow, DeliveryRow
from ledger_service.domain.codes import purpose_from_bytes32


@dataclass(frozen=True)
class Disclosure:
    record_id: str
    version: int
    patient: str
    accessor: str
    purpose: str
    consent_id: str | None
    emergency: bool
    reason: str | None
    block_number: int
    timestamp: int
    tx_hash: str
    log_index: int


def disclosures_of(db: Database, indexer: EventIndexer, patient: str) -> list[Disclosure]:
    """Newest first."""
    patient = to_checksum_address(patient)
    indexer.catch_up()
    with db.session() as s:
        events = (
            s.execute(
                select(ChainEventRow)
                .where(
                    ChainEventRow.patient == patient, ChainEventRow.name.in_(("AccessLogged", "EmergencyAccessLogged"))
                )
                .order_by(ChainEventRow.block_number.desc(), ChainEventRow.log_index.desc())
            )
            .scalars()
            .all()
        )
        reasons = {
            d.tx_hash: d.reason
            for d in s.execute(
                select(DeliveryRow).where(DeliveryRow.patient == patient, DeliveryRow.emergency)
            ).scalars()
        }
    out = []
    for event in events:
        args = json.loads(event.args)
        emergency = event.name == "EmergencyAccessLogged"
        out.append(
            Disclosure(
                record_id=event.record_id or "",
                version=int(args["version"]),
                patient=patient,
                accessor=to_checksum_address(args["accessor"]),
                purpose="ETREAT" if emergency else purpose_from_bytes32(bytes.fromhex(args["purpose"][2:])),
                consent_id=None if emergency else args["consentId"],
                emergency=emergency,
                reason=reasons.get(event.tx_hash) if emergency else None,
                block_number=event.block_number,
                timestamp=event.block_timestamp,
                tx_hash=event.tx_hash,
                log_index=event.log_index,
            )
        )
    return out
