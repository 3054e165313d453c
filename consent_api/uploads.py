"""Reading record uploads (docs/operations.md, "Request body limits").

A JSON upload is parsed whole, in a worker process when it is large (ledger_service/workers.py): the
parse holds the GIL, and on the API's own threads it froze every other request. A multipart upload
streams its file part to a temporary file (on disk past 1 MB); a file declared as FHIR JSON is refused
as soon as it crosses the FHIR limit, since it would have to be held whole for its validation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from consent_api.schemas import RecordAmendIn, RecordCreateIn
from ledger_service.domain.media_types import media_type_essence
from ledger_service.domain.records import FHIR_MEDIA_TYPE
from ledger_service.errors import RecordTooLarge, ValidationError

# A JSON body under this many bytes parses in a few milliseconds, in the calling thread: less than
# handing it to a worker process takes.
JSON_INLINE_BELOW = 256 * 1024
UPLOAD_CHUNK = 1024 * 1024


def json_content(media_type: str, content: dict[str, Any] | str) -> bytes:
    if _declares_fhir(media_type):
        if not isinstance(content, dict):
            raise ValidationError("content must be a FHIR resource object for application/fhir+json", field="content")
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if not isinstance(content, str):
        raise ValidationError("content must be base64 text for media types other than FHIR JSON", field="content")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError("content is not valid base64", field="content") from exc


def parse_json_upload(raw: bytes, *, amend: bool) -> tuple[dict[str, str], bytes, str]:
    """(fields, content bytes, fingerprint) of a JSON upload; runs in a worker process when large, so
    it answers with bytes and strings only and raises only the service's own errors."""
    try:
        payload = json.loads(raw)
        model = RecordAmendIn.model_validate(payload) if amend else RecordCreateIn.model_validate(payload)
    except RecursionError as exc:
        raise ValidationError("the request body is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(f"body is not JSON: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError("body is not JSON: it is not UTF-8 text") from exc
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValidationError(f"{where}: {first.get('msg')}", field=where) from exc
    fields = {"mediaType": model.media_type}
    if isinstance(model, RecordCreateIn):
        fields.update(patient=model.patient, category=model.category)
    # The label rides beside the content, never into it (docs/architecture.md, "Record titles").
    if model.title is not None:
        fields["title"] = model.title
    if model.file_name is not None:
        fields["fileName"] = model.file_name
    body = json_content(model.media_type, model.content)
    return fields, body, hashlib.sha256(raw).hexdigest()


def _declares_fhir(media_type: str) -> bool:
    # The service's own rule (FHIR parameters such as fhirVersion do not make it another type).
    return media_type_essence(media_type) == FHIR_MEDIA_TYPE


class _FhirLimitedParser(MultiPartParser):
    """Starlette's multipart parser, refusing a FHIR JSON file part as soon as it crosses the FHIR limit.

    Whether the file is FHIR is the ``mediaType`` field's to say: sent before the file, the file is
    refused at the limit; sent after it, the file (on disk by then) is refused once the field is read.
    """

    def __init__(self, headers: Headers, stream: AsyncGenerator[bytes, None], *, fhir_limit: int) -> None:
        super().__init__(headers, stream, max_files=1, max_fields=8)
        self.fhir_limit = fhir_limit
        self.file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        super().on_part_data(data, start, end)
        if self._current_part.file is not None:
            self.file_bytes += end - start
            self._refuse_fhir_over_limit()

    def on_part_end(self) -> None:
        super().on_part_end()
        self._refuse_fhir_over_limit()

    def _refuse_fhir_over_limit(self) -> None:
        if self.file_bytes > self.fhir_limit and any(
            name == "mediaType" and isinstance(value, str) and _declares_fhir(value) for name, value in self.items
        ):
            raise RecordTooLarge(
                f"a FHIR JSON file exceeds {self.fhir_limit} bytes, the limit of FHIR uploads (validated whole); "
                "send larger files as another media type"
            )


async def parse_multipart_upload(
    request: Request, *, amend: bool, fhir_limit: int
) -> tuple[dict[str, str], UploadFile, str]:
    """(fields, the file, fingerprint) of a multipart upload."""
    try:
        form = await _FhirLimitedParser(request.headers, request.stream(), fhir_limit=fhir_limit).parse()
    except MultiPartException as exc:
        raise ValidationError(f"multipart body: {exc.message}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ValidationError("multipart upload needs a `file` part", field="file")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    required = ("mediaType",) if amend else ("patient", "category", "mediaType")
    for name in required:
        if not fields.get(name):
            raise ValidationError(f"multipart upload needs a `{name}` field", field=name)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    while chunk := await upload.read(UPLOAD_CHUNK):
        digest.update(chunk)
    await upload.seek(0)
    return fields, upload, digest.hexdigest()
