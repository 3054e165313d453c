"""RFC 9457 problem details: one stable ``type`` per error family, mapped at the edge."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger_service import errors

log = logging.getLogger("consent_api")

PROBLEM_BASE = "/problems/"
PROBLEM_JSON = "application/problem+json"

# (status, title) per error code; the code is the last segment of the problem type.
# Order matters only for documentation; lookup walks the exception's MRO.
PROBLEMS: dict[str, tuple[int, str]] = {
    "validation-error": (400, "Invalid request"),
    "invalid-signature": (400, "Signed message not accepted"),
    "invalid-sign-in": (401, "Sign-in refused"),
    "unauthorized": (401, "Authentication required"),
    "permission-denied": (403, "Not allowed for your role"),
    "consent-denied": (403, "No consent for this access"),
    "release-refused": (403, "Key share not released"),
    "not-record-author": (403, "Only the record's author may amend it"),
    "invalid-passkey": (400, "Not a P-256 passkey public key"),
    "not-found": (404, "Not found"),
    "account-not-found": (404, "Passkey account not found"),
    "record-not-found": (404, "Record not found"),
    "share-not-held": (404, "No key share held"),
    "method-not-allowed": (405, "Method not allowed"),
    "idempotency-conflict": (409, "Idempotency key conflict"),
    "stale-version": (409, "Record changed meanwhile"),
    "directory-conflict": (409, "Already in your patient directory"),
    "passkey-refused": (409, "The account refused the passkey change"),
    "transaction-reverted": (409, "The ledger refused the transaction"),
    "record-erased": (410, "Record erased"),
    "key-destroyed": (410, "Record keys destroyed"),
    "payload-too-large": (413, "Request body too large"),
    "rate-limited": (429, "Too many requests"),
    "relay-suspended": (429, "Relay suspended for this account"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "invalid-record-content": (422, "Record content is not acceptable"),
    "invalid-media-type": (422, "Record media type is not acceptable"),
    "blob-integrity": (502, "Stored record failed its integrity check"),
    "blob-not-found": (502, "Stored record is missing"),
    "decryption-failed": (502, "Stored record failed authentication"),
    "chain-unavailable": (503, "Ledger chain unavailable"),
    "custody-unavailable": (503, "Key custodians unavailable"),
    "key-share-error": (502, "A key share failed its check"),
    "relay-busy": (503, "Relay busy"),
    "blob-store-unavailable": (503, "Record store unavailable"),
    "database-unavailable": (503, "Metadata database unavailable"),
    "transaction-timeout": (504, "Ledger transaction not confirmed in time"),
    "internal-error": (500, "Internal error"),
}


def problem(status: int, code: str, detail: str, *, title: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or PROBLEMS.get(code, (status, HTTPStatus(status).phrase))[1],
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _for_ledger_error(exc: errors.LedgerError) -> JSONResponse:
    code = exc.code
    for cls in type(exc).__mro__:
        candidate = getattr(cls, "code", None)
        if candidate in PROBLEMS:
            code = candidate
            break
    else:
        code = "internal-error"
    status, _title = PROBLEMS[code]
    extra: dict[str, Any] = {}
    for key in ("field", "reason", "record_id", "purpose"):
        value = exc.details.get(key)
        if isinstance(value, str):
            extra["recordId" if key == "record_id" else key] = value
    if isinstance(exc, errors.TransactionReverted) and exc.error_name:
        extra["contractError"] = exc.error_name
    if status >= 500 and code != "relay-busy":  # a refused relay flood is not an incident per request
        log.warning("%s: %s", code, exc)
    response = problem(status, code, str(exc), **extra)
    retry_after = exc.details.get("retry_after")
    if isinstance(retry_after, int):  # 429 / 503: when the client may try again (RFC 9110 10.2.3)
        response.headers["Retry-After"] = str(retry_after)
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.LedgerError)
    async def ledger_error(_request: Request, exc: errors.LedgerError) -> JSONResponse:
        return _for_ledger_error(exc)

    @app.exception_handler(RequestValidationError)
    async def request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{i['location']}: {i['message']}" for i in issues[:5]) or "invalid request"
        return problem(400, "validation-error", detail, errors=issues)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "permission-denied",
            404: "not-found",
            405: "method-not-allowed",
            413: "payload-too-large",
            415: "unsupported-media-type",
        }.get(exc.status_code, "validation-error" if exc.status_code < 500 else "internal-error")
        response = problem(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RecursionError)
    async def too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return problem(400, "validation-error", "the request body is nested too deeply")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Never echo internals (they may hold key material or record bytes).
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "the server failed to handle the request; it has been logged")
