"""Ciphertext by content address: a provider stores its encrypted blobs at the hub (README, "Roles: hub and node").

The hub stores bytes it cannot read: a record version's payload is encrypted by the provider's node before it
leaves it. CIDs follow ``ipfs add --cid-version=1 --raw-leaves``; every read re-hashes every block.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from consent_api.deps import CurrentCaller, ProviderCaller, ServicesDep
from consent_api.schemas import Out
from ledger_service.blobs import Cid
from ledger_service.errors import BlobNotFound, NotFoundError, PermissionDenied

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])

_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 1 << 20  # bodies above this go to a temporary file, never held whole in memory


class BlobOut(Out):
    cid: str
    size: int


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(_CHUNK):
        yield chunk


@router.post("", response_model=BlobOut, status_code=status.HTTP_201_CREATED, summary="Store bytes by content")
async def put_blob(request: Request, caller: ProviderCaller, services: ServicesDep) -> BlobOut:
    if not services.ledger.is_active_provider(caller.address):
        raise PermissionDenied(f"{caller.address} is not an active provider", account=caller.address)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        put = await run_in_threadpool(services.blobs.put, _chunks(spool))
    return BlobOut(cid=str(put.cid), size=put.size)


def _is_own_version(services: ServicesDep, patient: str, cid: Cid) -> bool:
    """Whether ``cid`` is the ciphertext of an anchored version of one of ``patient``'s records (not erased)."""
    lookups = services.records
    return any(
        Cid.parse(version.cid) == cid
        for record in lookups.records_of(patient)
        if not record.erased
        for version in lookups.versions(record.record_id)
    )


@router.get(
    "/{cid}",
    summary="The stored bytes, every block verified",
    description=(
        "Providers and auditors fetch any blob; a patient only the ciphertext of a version of their own records, "
        "which they decrypt in their browser with the shares the key custodians release to them."
    ),
    response_class=StreamingResponse,
)
def get_blob(cid: str, caller: CurrentCaller, services: ServicesDep) -> StreamingResponse:
    parsed = Cid.parse(cid)
    if not (caller.has("provider") or caller.has("auditor")) and not _is_own_version(services, caller.address, parsed):
        raise PermissionDenied(
            f"{caller.address} may fetch only the ciphertext of its own records' versions; {parsed} is none of them",
            reason="not-own-record",
        )
    try:
        stream = services.blobs.open(parsed)  # the root is checked before the first byte is sent
    except BlobNotFound as exc:
        # Here the blob is what was asked for, not a dependency of another answer: not found, not a 502.
        raise NotFoundError(f"no blob {parsed} is stored here (never stored, or unpinned by an erasure)") from exc
    return StreamingResponse(stream, media_type="application/octet-stream", headers={"X-Blob-Cid": str(parsed)})
