"""FHIR JSON validation of an upload: the resource is parsed whole, so its size is bounded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ledger_service.errors import InvalidRecordContent, RecordTooLarge

# FHIR bodies are parsed whole for validation; larger files must not be FHIR JSON. The default of the
# service's limit, which the settings set (max_json_body).
MAX_FHIR_BYTES = 32 * 1024 * 1024
# A FHIR document under this many bytes is validated in the calling thread: that takes milliseconds,
# less than handing it to a worker process (ledger_service/workers.py).
FHIR_INLINE_BELOW = 16 * 1024


def validate_fhir(content: bytes) -> dict[str, Any]:
    """Parse and validate a FHIR R4 resource (checked against fhir.resources' R4B models)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecordContent(f"FHIR content is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise InvalidRecordContent("FHIR content must be a JSON object with a resourceType")
    try:
        model = get_fhir_model_class(data["resourceType"])
    except (ValueError, KeyError) as exc:
        raise InvalidRecordContent(f"unknown FHIR resourceType {data['resourceType']!r}") from exc
    try:
        model.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError, and fhir-core's own errors
        first = str(exc).splitlines()[:3]
        raise InvalidRecordContent(f"invalid FHIR {data['resourceType']}: {' '.join(first)}") from exc
    return data


def check_fhir(content: bytes) -> None:
    """validate_fhir without its result, as a worker process answers (the parsed tree stays there)."""
    validate_fhir(content)


def fhir_document(content: Iterable[bytes], limit: int) -> bytes:
    """The whole FHIR document for its validation, read no further than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in content:
        size += len(chunk)
        if size > limit:
            raise RecordTooLarge(
                f"FHIR JSON is limited to {limit} bytes (it is validated whole); send larger files as another type"
            )
        parts.append(chunk)
    return b"".join(parts)
