"""The patient's erasure of a record (the hub's): crypto-shred, then the patient's signed RecordErase."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter

from consent_api.deps import ServicesDep, address_param, record_id_param
from consent_api.routers.records import IdempotencyKey
from consent_api.schemas import EraseRequest, ErasureOut
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.domain.consent import RecordErase

router = APIRouter(prefix="/v1/records", tags=["records"])


@router.delete(
    "/{record_id}",
    response_model=ErasureOut,
    summary="Erase a record (crypto-shredding), by the patient's signed RecordErase",
)
def erase_record(
    record_id: str, body: EraseRequest, services: ServicesDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Erase once per Idempotency-Key: a replay answers 200 with the first erasure, not "already erased".

    The signature is the authority (anyone may carry it): the patient's, or a live delegate's."""
    record_id = record_id_param(record_id)
    e = body.erase
    request = RecordErase(
        patient=address_param(e.patient, "erase.patient"),
        record_id=bytes.fromhex(e.record_id[2:]),
        nonce=e.nonce,
        deadline=e.deadline,
    )
    signature = bytes.fromhex(body.signature[2:])

    def erase() -> dict[str, Any]:
        result = services.hub_erasure.erase(record_id=record_id, request=request, signature=signature)
        return ErasureOut(record_id=result.record_id, tx_hash=result.tx_hash).model_dump(by_alias=True)

    if not idempotency_key:
        return erase()
    store = services.idempotency
    scoped = IdempotencyStore.scoped(request.patient, idempotency_key)
    previous = store.claim(scoped, hashlib.sha256(f"erase {record_id}".encode()).hexdigest())
    if previous is not None:
        return previous
    try:
        result = erase()
    except BaseException:
        store.release(scoped)
        raise
    store.complete(scoped, result)
    return result
