"""Request body limits by route, enforced before a body is read (docs/operations.md, "Request body limits").

Only the record upload routes take large bodies; every other route, matched or not (a path no route
has gets the small limit too), takes at most ``max_small_body``: sign-in, relayed signed messages, an
emergency reason. The limit is chosen from the method and path alone, so a body over it is refused
when its Content-Length is declared, or as soon as a chunked one crosses it, never read whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_api import problems
from ledger_service.settings import Settings

# The routes whose bodies may be large, as the routers declare them: the only place that says so.
LARGE_BODY_ROUTES: Final = (
    ("POST", "/v1/records"),
    ("POST", "/v1/records/{record_id}/versions"),
)
# A JSON upload carries its content inside an envelope (patient, category, mediaType): room for it on
# top of the FHIR limit.
ENVELOPE_MARGIN: Final = 64 * 1024


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$")


_LARGE: Final = tuple((method, template, _template_pattern(template)) for method, template in LARGE_BODY_ROUTES)


@dataclass(frozen=True)
class Limits:
    small: int  # every route but the uploads
    json: int  # uploads as JSON: the content is inline
    multipart: int  # uploads as multipart: the file is streamed to disk

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            small=settings.max_small_body,
            json=settings.max_json_body + ENVELOPE_MARGIN,
            multipart=settings.max_upload_bytes,
        )

    def for_request(self, method: str, path: str, content_type: str) -> tuple[int, str]:
        """(limit, what it is the limit of) for a request, from its method, path and Content-Type."""
        if method == "POST" and path == "/v1/blobs":
            return self.multipart, "raw POST /v1/blobs"  # ciphertext streamed to a spool file, like a multipart file
        for route_method, template, pattern in _LARGE:
            if method == route_method and pattern.match(path):
                if content_type.startswith("multipart/form-data"):
                    return self.multipart, f"multipart {route_method} {template}"
                return self.json, f"JSON {route_method} {template}"
        return self.small, f"{method} {path[:200]}"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a chunked body crosses its limit. An HTTPException, so the app turns
    it into the 413 problem wherever the body was being read (FastAPI's own body parsing included)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(413, too_large_detail(limit, what))
        self.limit = limit
        self.what = what


def too_large_detail(limit: int, what: str) -> str:
    return f"request body exceeds {limit} bytes, the limit of {what}"


class BodyLimit:
    """Refuse bodies over their route's limit (413) before reading them whole, declared or chunked."""

    def __init__(self, app: ASGIApp, *, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit, what = self.limits.for_request(scope["method"], scope["path"], content_type)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit, what, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, what)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # the body was read after the answer began: nothing left to say
                raise
            await _too_large(limit, what, scope, receive, send)


async def _too_large(limit: int, what: str, scope: Scope, receive: Receive, send: Send) -> None:
    response = problems.problem(413, "payload-too-large", too_large_detail(limit, what))
    await response(scope, receive, send)
