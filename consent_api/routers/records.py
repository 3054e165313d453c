"""Records: upload, amend, read with a purpose, break-glass, erasure."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from consent_api.deps import ProviderCaller, ServicesDep, record_id_param
from consent_api.schemas import EmergencyIn, RecordAccessOut, RecordCreated, RecordSuggestIn, RecordSuggestion
from consent_api.uploads import JSON_INLINE_BELOW, UPLOAD_CHUNK, parse_json_upload, parse_multipart_upload
from ledger_service.bootstrap import Services
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.records import anchored_record
from ledger_service.domain.codes import GRANTABLE_PURPOSES, purpose_to_bytes32
from ledger_service.domain.media_types import media_type_essence, served_as
from ledger_service.domain.record_labels import RecordLabel, download_name, suggest
from ledger_service.domain.records import FHIR_MEDIA_TYPE
from ledger_service.errors import LedgerError, PermissionDenied, ValidationError
from ledger_service.node.reads import RecordContent
from ledger_service.node.uploads import AnchoredVersion

router = APIRouter(prefix="/v1/records", tags=["records"])
log = logging.getLogger(__name__)
# A FHIR body this large or larger is titled by its type: parsed again on the event loop it would hold
# other requests up (consent_api/uploads.py parses such bodies in workers).
SUGGEST_PARSE_BELOW = JSON_INLINE_BELOW

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="Makes a retried request do its work once")
]
MULTIPART_SCHEMA: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["patient", "category", "mediaType", "file"],
        "properties": {
            "patient": {"type": "string"},
            "category": {"type": "string"},
            "mediaType": {"type": "string"},
            "title": {"type": "string", "description": "sealed, never stored in clear"},
            "fileName": {"type": "string", "description": "default: the file part's name"},
            "file": {"type": "string", "format": "binary"},
        },
    }
}
CONTENT_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RecordCreateIn"}},
            "multipart/form-data": MULTIPART_SCHEMA,
        },
        "required": True,
    }
}
AMEND_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RecordAmendIn"}},
            "multipart/form-data": {
                "schema": {**MULTIPART_SCHEMA["schema"], "required": ["mediaType", "file"]},
            },
        },
        "required": True,
    }
}


async def _parse_upload(request: Request, *, amend: bool) -> tuple[dict[str, str], list[bytes] | UploadFile, str]:
    """(fields, content, fingerprint) from a JSON or a multipart body (consent_api/uploads.py)."""
    services: Services = request.app.state.services
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        parse = functools.partial(parse_json_upload, amend=amend)
        fields, body, fingerprint = await run_in_threadpool(
            services.parse_workers.run, parse, raw, inline_below=JSON_INLINE_BELOW
        )
        return fields, [body], fingerprint
    if content_type == "multipart/form-data":
        return await parse_multipart_upload(request, amend=amend, fhir_limit=services.settings.max_json_body)
    raise ValidationError("send application/json or multipart/form-data", field="Content-Type")


def _fhir_of(media_type: str, content: list[bytes] | UploadFile) -> dict[str, Any] | None:
    if media_type_essence(media_type) != FHIR_MEDIA_TYPE or not isinstance(content, list):
        return None
    if sum(len(c) for c in content) >= SUGGEST_PARSE_BELOW:
        return {}
    try:
        resource = json.loads(b"".join(content))
    except (ValueError, RecursionError):
        return {}
    return resource if isinstance(resource, dict) else {}


def _label_of(fields: dict[str, str], content: list[bytes] | UploadFile, *, amend: bool) -> RecordLabel | None:
    """The upload's label, checked before anything is stored: the given title and file name (a multipart
    file part's own name by default), a new record without a title titled from its content. None: an
    amendment that keeps its record's label."""
    file_name = fields.get("fileName")
    if file_name is None and isinstance(content, UploadFile) and content.filename:
        file_name = content.filename
    title = fields.get("title")
    if amend and title is None and file_name is None:
        return None
    label = RecordLabel.of(title, file_name)
    if not label.title and not label.file_name and media_type_essence(fields["mediaType"]) != FHIR_MEDIA_TYPE:
        return None  # a file with neither title nor name: nothing to call it by but its id
    if not label.title:
        suggested = suggest(
            media_type=fields["mediaType"], fhir=_fhir_of(fields["mediaType"], content), file_name=label.file_name
        )
        label = RecordLabel(title=suggested.title, file_name=label.file_name)
    return label


def _attach_label(
    services: Services, anchored: AnchoredVersion, *, author: str, label: RecordLabel | None, patient: str | None
) -> None:
    """Seal the label once the version is anchored. A failure leaves the record untitled rather than answer
    an error for a record that is on chain (a retry would anchor it twice)."""
    if label is None or services.labels is None:
        return
    try:
        services.labels.attach(
            record_id=anchored.record_id, version=anchored.version, author=author, patient=patient, label=label
        )
    except LedgerError as exc:
        log.warning("record %s is stored without its title: %s", anchored.record_id, type(exc).__name__)


def _chunks(content: list[bytes] | UploadFile) -> Iterator[bytes]:
    if isinstance(content, list):
        yield from content
        return
    handle = content.file
    while chunk := handle.read(UPLOAD_CHUNK):
        yield chunk


async def _idempotent_upload(
    services: ServicesDep,
    response: Response,
    caller_address: str,
    key: str | None,
    fingerprint: str,
    work: Callable[[str | None], AnchoredVersion],
) -> dict[str, Any]:
    """Run the upload once per Idempotency-Key; a replay answers 200 with the first result."""
    store = services.idempotency
    if not key:
        return (await run_in_threadpool(work, None)).as_result()
    scoped = IdempotencyStore.scoped(caller_address, key)
    previous = await run_in_threadpool(store.claim, scoped, fingerprint)
    if previous is not None:
        response.status_code = status.HTTP_200_OK
        return previous
    try:
        # The pending version carries the key, so a crash here is answered by recovery.
        result = (await run_in_threadpool(work, scoped)).as_result()
    except BaseException:
        await run_in_threadpool(store.release, scoped)
        raise
    await run_in_threadpool(store.complete, scoped, result)
    return result


@router.post(
    "",
    response_model=RecordCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a record for a patient (FHIR JSON or any file)",
    openapi_extra=CONTENT_DOC,
)
async def create_record(
    request: Request,
    response: Response,
    caller: ProviderCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    fields, content, fingerprint = await _parse_upload(request, amend=False)
    label = _label_of(fields, content, amend=False)

    def work(scoped_key: str | None) -> AnchoredVersion:
        anchored = services.uploads.create(
            idempotency_key=scoped_key,
            provider=caller.address,
            patient=fields["patient"],
            category=fields["category"],
            media_type=fields["mediaType"],
            content=_chunks(content),
        )
        _attach_label(services, anchored, author=caller.address, label=label, patient=fields["patient"])
        return anchored

    return await _idempotent_upload(services, response, caller.address, idempotency_key, fingerprint, work)


@router.post(
    "/suggest",
    response_model=RecordSuggestion,
    summary="Suggest a title and a category for an upload (nothing is stored)",
)
def suggest_label(body: RecordSuggestIn, caller: ProviderCaller, services: ServicesDep) -> RecordSuggestion:
    fhir = (
        body.content
        if isinstance(body.content, dict) and media_type_essence(body.media_type) == FHIR_MEDIA_TYPE
        else None
    )
    suggestion = suggest(media_type=body.media_type, fhir=fhir, file_name=body.file_name)
    category = suggestion.category if suggestion.category in services.categories() else None
    return RecordSuggestion(title=suggestion.title, category=category)


@router.post(
    "/{record_id}/versions",
    response_model=RecordCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Amend a record: a new version (the authoring provider only)",
    openapi_extra=AMEND_DOC,
)
async def amend_record(
    record_id: str,
    request: Request,
    response: Response,
    caller: ProviderCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    record_id = record_id_param(record_id)
    fields, content, fingerprint = await _parse_upload(request, amend=True)
    label = _label_of(fields, content, amend=True)

    def work(scoped_key: str | None) -> AnchoredVersion:
        anchored = services.uploads.amend(
            idempotency_key=scoped_key,
            provider=caller.address,
            record_id=record_id,
            media_type=fields["mediaType"],
            content=_chunks(content),
        )
        _attach_label(services, anchored, author=caller.address, label=label, patient=None)
        return anchored

    return await _idempotent_upload(services, response, caller.address, idempotency_key, fingerprint + record_id, work)


# Record bytes are the provider's, not this site's: even shown in a browser they may load nothing and
# run nothing (sandbox: an opaque origin with no scripts, forms or plugins).
RECORD_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"


def _content_disposition(disposition: str, name: str, fallback: str) -> str:
    """RFC 6266: ``filename`` in ASCII for old clients (the hex fallback when the name is not plain ASCII),
    ``filename*`` (RFC 5987, UTF-8, percent-encoded) with the name itself."""
    if name == fallback:
        return f'{disposition}; filename="{fallback}"'
    plain = name if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name else fallback
    return f"{disposition}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _content_response(content: RecordContent, label: RecordLabel | None = None) -> Response:
    """The released bytes as a download, or inline only for JSON (docs/security.md, "Record media types"),
    named by the record's label when the reader holds it (docs/architecture.md, "Record titles").

    ``served_as`` maps any stored value to an allowlisted type or application/octet-stream and never
    fails, so no header here can fail to be written after the disclosure was logged.
    """
    media_type, served = served_as(content.media_type)
    fallback = f"record-{content.record_id}-v{content.version}{served.extension}"  # hex id: nothing to escape
    filename = download_name(label, extension=served.extension, fallback=fallback)
    headers = {
        "Content-Length": str(content.size),
        "Content-Disposition": _content_disposition("inline" if served.inline else "attachment", filename, fallback),
        "Content-Security-Policy": RECORD_CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Record-Version": str(content.version),
        "X-Record-Cid": content.cid,
        "X-Disclosure-Tx": content.disclosure_tx,
        "Cache-Control": "no-store",
    }
    if content.whole is not None:  # verified in full already: one body, no stream to pull chunk by chunk
        return Response(content.whole, media_type=media_type, headers=headers)
    return StreamingResponse(content.chunks, media_type=media_type, headers=headers)


RECORD_BYTES = {
    200: {
        "description": "The record's bytes in its media type, released after the on-chain disclosure",
        "content": {"application/fhir+json": {}, "application/octet-stream": {}},
        "headers": {
            "X-Record-Version": {"schema": {"type": "integer"}},
            "X-Record-Cid": {"schema": {"type": "string"}},
            "X-Disclosure-Tx": {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "/{record_id}",
    summary="Read a record for a stated purpose (consent check, then on-chain disclosure)",
    responses=RECORD_BYTES,  # type: ignore[arg-type]
    response_class=StreamingResponse,
)
def read_record(
    record_id: str,
    caller: ProviderCaller,
    services: ServicesDep,
    purpose: Annotated[str, Query(min_length=1, max_length=16, examples=["TREAT"])],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    content = services.reads.read(
        accessor=caller.address, record_id=record_id_param(record_id), purpose=purpose, idempotency_key=idempotency_key
    )
    return _content_response(content, _reader_label(services, content.record_id, caller.address))


def _reader_label(services: Services, record_id: str, reader: str) -> RecordLabel | None:
    """The reader's label, after the disclosure: a failure here only loses the file name, never the read."""
    if services.labels is None:
        return None
    try:
        return services.labels.label_for_reader(record_id=record_id, reader=reader)
    except LedgerError as exc:
        log.warning("the label of record %s was not opened for its reader: %s", record_id, type(exc).__name__)
        return None


@router.post(
    "/{record_id}/emergency-access",
    summary="Break the glass: read without consent, with a reason; logged and flagged",
    responses=RECORD_BYTES,  # type: ignore[arg-type]
    response_class=StreamingResponse,
)
def emergency_access(
    record_id: str,
    body: EmergencyIn,
    caller: ProviderCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    if not caller.has("emergency"):
        raise PermissionDenied(
            f"{caller.address} may not break the glass (no EMERGENCY_ROLE)", reason="needs-emergency"
        )
    content = services.reads.emergency_read(
        accessor=caller.address,
        record_id=record_id_param(record_id),
        reason=body.reason,
        idempotency_key=idempotency_key,
    )
    return _content_response(content, _reader_label(services, content.record_id, caller.address))


@router.get(
    "/{record_id}/access",
    response_model=RecordAccessOut,
    summary="The purposes the caller's consents cover for this record now, and whether it may break the glass",
    description=(
        "What a provider may do with a record before it reads it, or after a read was refused: the grantable "
        "purposes (`GET /v1/chain`) for which a consent of the patient's authorizes the caller now. Nothing "
        "is logged: no content is released."
    ),
)
def record_access(record_id: str, caller: ProviderCaller, services: ServicesDep) -> RecordAccessOut:
    record_id = record_id_param(record_id)
    record = anchored_record(services.db, record_id)
    rid = bytes.fromhex(record_id[2:])
    covered = [
        p
        for p in GRANTABLE_PURPOSES
        if services.ledger.is_authorized(record.patient, caller.address, rid, purpose_to_bytes32(p))
    ]
    return RecordAccessOut(record_id=record_id, covered_purposes=covered, emergency=caller.has("emergency"))
