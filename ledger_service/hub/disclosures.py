"""Accounting of disclosures: every release of a patient's records.

Per-read mode: read from chain events. The chain is the source of truth (the events cannot
be edited); the operator's delivery log adds only the break-glass reason text, whose hash is
on chain. Batched mode: read from the operator's disclosure log, each entry with its receipt
(an inclusion proof under a root anchored on chain) once its batch is anchored. A deployment
that switched modes has both kinds in its history; :func:`accounting_of` lists both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow, DeliveryRow
from ledger_service.domain.codes import hex32, purpose_from_bytes32
from ledger_service.hub.batching import DisclosureLog


@dataclass(frozen=True)
class AccountedDisclosure:
    """One line of a patient's accounting of disclosures: who read which record version, why and when."""

    record_id: str
    version: int
    patient: str
    accessor: str
    purpose: str
    consent_id: str | None
    emergency: bool
    reason: str | None
    block_number: int  # per-read: the disclosure's block; batched: the block whose state authorized it
    timestamp: int


@dataclass(frozen=True)
class ChainDisclosure(AccountedDisclosure):
    """A disclosure logged by its own transaction (per-read mode)."""

    tx_hash: str
    log_index: int


def disclosures_of(db: Database, indexer: EventIndexer, patient: str) -> list[ChainDisclosure]:
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
                select(DeliveryRow).where(
                    DeliveryRow.patient == patient, DeliveryRow.emergency, DeliveryRow.tx_hash.is_not(None)
                )
            ).scalars()
        }
    out = []
    for event in events:
        args = json.loads(event.args)
        emergency = event.name == "EmergencyAccessLogged"
        out.append(
            ChainDisclosure(
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


@dataclass(frozen=True)
class BatchedDisclosure(AccountedDisclosure):
    """A disclosure logged as an entry of the batched disclosure log (no transaction of its own)."""

    leaf_index: int
    proof: dict[str, Any]  # the receipt once anchored, else {"status": "pending", "leafIndex": n}


def batched_disclosures_of(db: Database, log: DisclosureLog, patient: str) -> list[BatchedDisclosure]:
    """Newest first."""
    patient = to_checksum_address(patient)
    logged = log.entries_of(patient)
    if not logged:
        return []
    with db.session() as s:
        reasons: dict[int, str | None] = {
            leaf: reason
            for leaf, reason in s.execute(
                select(DeliveryRow.leaf_index, DeliveryRow.reason).where(
                    DeliveryRow.patient == patient, DeliveryRow.leaf_index.is_not(None), DeliveryRow.emergency
                )
            ).all()
            if leaf is not None
        }
    batches = log.batches()
    out = []
    for item in logged:
        e = item.entry
        out.append(
            BatchedDisclosure(
                record_id=hex32(e.record_id),
                version=e.version,
                patient=patient,
                accessor=to_checksum_address(e.accessor),
                purpose=purpose_from_bytes32(e.purpose),
                consent_id=None if e.emergency else hex32(e.consent_id),
                emergency=e.emergency,
                reason=reasons.get(item.leaf_index) if e.emergency else None,
                block_number=e.block_number,
                timestamp=e.timestamp,
                leaf_index=item.leaf_index,
                proof=log.proof(item.leaf_index, batches),
            )
        )
    return out


def accounting_of(
    db: Database, indexer: EventIndexer, log: DisclosureLog | None, patient: str
) -> list[ChainDisclosure | BatchedDisclosure]:
    """Every disclosure of the patient's records, per-read (chain events) and batched (log entries), newest first."""
    events: list[ChainDisclosure | BatchedDisclosure] = list(disclosures_of(db, indexer, patient))
    if log is not None:
        events.extend(batched_disclosures_of(db, log, patient))

    def newest(d: ChainDisclosure | BatchedDisclosure) -> tuple[int, int, int]:
        if isinstance(d, BatchedDisclosure):
            return (d.block_number, 1, d.leaf_index)  # checked at the end of its block: after its events
        return (d.block_number, 0, d.log_index)

    return sorted(events, key=newest, reverse=True)
