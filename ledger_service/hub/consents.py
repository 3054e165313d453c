"""Reading a patient's consent state back from the indexed events (relaying is :mod:`.relay`'s)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.database import Database
from ledger_service.db.models import ChainEventRow
from ledger_service.domain.codes import ZERO32, hex32, purpose_from_bytes32
from ledger_service.domain.consent import (
    ConsentState,
)


@dataclass(frozen=True)
class ConsentView:
    state: ConsentState
    status: str
    granted_at: int
    tx_hash: str
    signer: str
    revoked_at: int | None
    revoke_tx: str | None


@dataclass(frozen=True)
class DelegateView:
    delegate: str
    valid_until: int
    live: bool


class ConsentService:
    """A patient's consents and delegations, replayed from the indexed events (relaying is :mod:`.relay`'s)."""

    def __init__(
        self,
        *,
        db: Database,
        ledger: ConsentLedgerContract,
        indexer: EventIndexer,
        chain_time: Callable[[], int],
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.indexer = indexer
        self.chain_time = chain_time

    # ------------------------------------------------------------- reads

    def _events(self, patient: str, names: tuple[str, ...]) -> list[ChainEventRow]:
        self.indexer.catch_up()
        with self.db.session() as s:
            return list(
                s.execute(
                    select(ChainEventRow)
                    .where(ChainEventRow.patient == patient, ChainEventRow.name.in_(names))
                    .order_by(ChainEventRow.block_number, ChainEventRow.log_index)
                ).scalars()
            )

    def consents_of(self, patient: str) -> list[ConsentView]:
        """Every consent the patient has granted, with its status now (replayed from events)."""
        patient = to_checksum_address(patient)
        now = self.chain_time()
        views: dict[str, dict[str, Any]] = {}
        for row in self._events(patient, ("ConsentGranted", "ConsentRevoked")):
            args = json.loads(row.args)
            consent = args["consentId"]
            if row.name == "ConsentGranted":
                views[consent] = {
                    "state": ConsentState(
                        bytes.fromhex(consent[2:]),
                        patient,
                        to_checksum_address(args["grantee"]),
                        bytes.fromhex(args["scope"][2:]),
                        bytes.fromhex(args["purpose"][2:]),
                        int(args["validFrom"]),
                        int(args["validUntil"]),
                    ),
                    "granted_at": row.block_timestamp,
                    "tx_hash": row.tx_hash,
                    "signer": to_checksum_address(args["signer"]),
                    "revoked_at": None,
                    "revoke_tx": None,
                }
            elif consent in views:
                view = views[consent]
                state: ConsentState = view["state"]
                view["state"] = ConsentState(**{**state.__dict__, "revoked": True})
                view["revoked_at"], view["revoke_tx"] = row.block_timestamp, row.tx_hash
        return [
            ConsentView(status=v["state"].status_at(now), **v)
            for v in sorted(views.values(), key=lambda v: v["granted_at"], reverse=True)
        ]

    def delegates_of(self, patient: str) -> list[DelegateView]:
        patient = to_checksum_address(patient)
        seen: dict[str, None] = {}
        for row in self._events(patient, ("DelegateGranted",)):
            seen[to_checksum_address(json.loads(row.args)["delegate"])] = None
        views = []
        for delegate in seen:
            valid_until, live = self.ledger.delegation(patient, delegate)
            views.append(DelegateView(delegate, valid_until, live))
        return views

    def patients_naming(self, delegate: str) -> list[DelegateView]:
        """The patients who named ``delegate`` their guardian (each with that delegation's state now), from
        the indexed DelegateGranted events; ``delegate`` of each view is the patient."""
        delegate = to_checksum_address(delegate)
        self.indexer.catch_up()
        with self.db.session() as s:
            rows = list(
                s.execute(
                    select(ChainEventRow.patient, ChainEventRow.args)
                    .where(ChainEventRow.name == "DelegateGranted")
                    .order_by(ChainEventRow.block_number, ChainEventRow.log_index)
                )
            )
        seen: dict[str, None] = {}
        for patient, args in rows:
            if patient and to_checksum_address(json.loads(args)["delegate"]) == delegate:
                seen[to_checksum_address(patient)] = None
        views = []
        for patient in seen:
            valid_until, live = self.ledger.delegation(patient, delegate)
            views.append(DelegateView(patient, valid_until, live))
        return views


def scope_kind(scope: bytes, categories: dict[str, bytes]) -> tuple[str, str]:
    """("all" | "category" | "record", a human label) for a consent scope."""
    if scope == ZERO32:
        return "all", "All records"
    for code, category in categories.items():
        if category == scope:
            return "category", code
    return "record", hex32(scope)


@dataclass(frozen=True)
class ConsentSummary:
    """A consent as the API shows it; one shape for the patient's list and the FHIR Consent bundle.

    Field names are those of the API's ``ConsentOut``.
    """

    consent_id: str
    patient: str
    grantee: str
    grantee_name: str | None
    scope: str
    scope_kind: str
    scope_label: str
    purpose: str
    valid_from: int
    valid_until: int
    status: str
    granted_at: int
    tx_hash: str
    signer: str
    revoked_at: int | None
    revoke_tx_hash: str | None

    @property
    def scope_value(self) -> str:
        """FHIR's scope value: "" for all records, else the category code or the record id."""
        return "" if self.scope_kind == "all" else self.scope_label


def consent_summaries(
    consents: ConsentService,
    patient: str,
    categories: dict[str, bytes],
    name_of: Callable[[str], str | None],
) -> list[ConsentSummary]:
    """The patient's grants with status, scope kind and label, and the grantee's directory name."""
    out = []
    for view in consents.consents_of(patient):
        kind, label = scope_kind(view.state.scope, categories)
        out.append(
            ConsentSummary(
                consent_id=hex32(view.state.consent_id),
                patient=patient,
                grantee=view.state.grantee,
                grantee_name=name_of(view.state.grantee),
                scope=hex32(view.state.scope),
                scope_kind=kind,
                scope_label=label,
                purpose=purpose_from_bytes32(view.state.purpose),
                valid_from=view.state.valid_from,
                valid_until=view.state.valid_until,
                status=view.status,
                granted_at=view.granted_at,
                tx_hash=view.tx_hash,
                signer=view.signer,
                revoked_at=view.revoked_at,
                revoke_tx_hash=view.revoke_tx,
            )
        )
    return out
