"""Record labels the hub keeps for patients: a provider's node of its own deposits the label it sealed to the
patient (docs/architecture.md, "Record titles")."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from consent_api.deps import ProviderCaller, ServicesDep, record_id_param
from consent_api.schemas import LabelDepositIn
from ledger_service.hub.record_labels import HubLabels

router = APIRouter(prefix="/v1/records", tags=["records"])


@router.put(
    "/{record_id}/labels",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Deposit the record's label sealed to its patient (the record's author's node of its own)",
)
def deposit_label(record_id: str, body: LabelDepositIn, caller: ProviderCaller, services: ServicesDep) -> Response:
    HubLabels(db=services.db, registered_key=services.ledger.encryption_key_of).deposit(
        author=caller.address,
        record_id=record_id_param(record_id),
        version=body.version,
        recipient=body.recipient,
        recipient_key=bytes.fromhex(body.recipient_key[2:]),
        sealed=bytes.fromhex(body.sealed[2:]),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
