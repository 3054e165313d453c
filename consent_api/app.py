"""The FastAPI application factory: API v1, problem+json errors, the portal pages."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_api import problems
from consent_api.body_limits import BodyLimit, Limits
from consent_api.metrics import Metrics, new_metrics, request_labels
from consent_api.routers import (
    accounts,
    audit,
    auth,
    blobs,
    consents,
    delegates,
    directory,
    erasure,
    fhir,
    labels,
    meta,
    patients,
    records,
    relay,
)
from consent_api.throttle import Throttle
from ledger_service.audit.report_html import STYLE_SOURCE as REPORT_STYLE_SOURCE
from ledger_service.bootstrap import Services

STATIC_DIR = Path(__file__).resolve().parent / "static"


def content_security_policy(custodian_origins: Sequence[str] = ()) -> str:
    """Pages may only load what this server serves; the API answers with no framing allowed. The one
    inline style allowed is the audit report's own stylesheet, by its hash: the portal shows the report
    from a blob: URL, which inherits this policy. Besides this origin, the page may call only the key
    custodians ``GET /v1/chain`` lists: a patient's browser asks them for the shares of its own records."""
    connect = " ".join(("'self'", *custodian_origins))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self' {REPORT_STYLE_SOURCE}; img-src 'self' data:; "
        f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()


def custodian_origins(services: Services) -> list[str]:
    """The origins (scheme://host:port) of the key custodians this process lists in ``GET /v1/chain``."""
    s = services.settings
    if services.custodians:
        urls = [services.embedded_custodian_url(c.config.index) for c in services.custodians]
    else:
        urls = list(s.custodian_urls or ())
    origins = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # camera: the provider's find-a-patient page scans a patient's QR code (docs/architecture.md, "Patient directory")
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}

DESCRIPTION = """
Patient-controlled consent and record-audit ledger.

* Sign in with Ethereum (EIP-4361): `GET /v1/auth/nonce`, sign the message with `personal_sign`,
  `POST /v1/auth/login`, then send `Authorization: Bearer <token>`.
* Patients sign EIP-712 `ConsentGrant` / `ConsentRevoke` / `DelegateGrant` messages
  (domain from `GET /v1/chain`); anyone may relay them here.
* Every error is RFC 9457 `application/problem+json` with a stable `type` (`/problems/<code>`).
"""


class HeadersAndMetrics:
    """Security headers on every response, and request metrics, as plain ASGI.

    (Not ``@app.middleware("http")``: that wrapper turns errors raised while the body is read,
    such as the body limit's, into exception groups the limit can no longer catch.)
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, policy: str = CONTENT_SECURITY_POLICY) -> None:
        self.app = app
        self.metrics = metrics
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", self.policy)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            labels = request_labels(scope["method"], scope.get("route"), status)  # closed sets only
            template, method = labels["route"], labels["method"]
            self.metrics.inc("consent_ledger_requests_total", method=method, route=template, status=labels["status"])
            self.metrics.inc("consent_ledger_request_seconds_total", time.perf_counter() - started, route=template)
            if template.startswith("/v1/records/{record_id}") and method in ("GET", "POST") and status == 200:
                kind = "emergency" if template.endswith("emergency-access") else "consent"
                self.metrics.inc("consent_ledger_disclosures_total", kind=kind)


# py_ecc (pulled in by the Ethereum libraries) raises the recursion limit to 100,000 when it is
# imported; deeply nested JSON would then overflow the C stack and crash the process instead of
# raising RecursionError. Nothing here needs more than the interpreter's default.
RECURSION_LIMIT = 1000


def create_app(services: Services) -> FastAPI:
    sys.setrecursionlimit(RECURSION_LIMIT)
    settings = services.settings
    app = FastAPI(
        title="Consent Ledger API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url=None,  # /docs is the page below: swagger-ui served from this origin
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    problems.install(app)
    # The hub's routes and the node's (docs/architecture.md, "Three roles"); `up` serves both on one origin.
    hub_routers = (
        consents.router,
        relay.router,
        blobs.router,
        patients.router,
        erasure.router,
        labels.router,
        audit.router,
        fhir.router,
        accounts.router,
        delegates.router,
    )
    node_routers = (records.router, directory.router)
    role = settings.role
    for router in (
        meta.router,
        auth.router,
        *(hub_routers if role in ("all", "hub") else ()),
        *(node_routers if role in ("all", "node") else ()),
    ):
        app.include_router(router)

    metrics = new_metrics()
    app.state.metrics = metrics
    app.state.throttle = Throttle(settings)  # sign-in and relay rate limits, relay slots (consent_api/throttle.py)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(BodyLimit, limits=Limits.of(settings))  # by route (consent_api/body_limits.py)
    policy = content_security_policy(custodian_origins(services))
    app.add_middleware(HeadersAndMetrics, metrics=metrics, policy=policy)  # outermost: every response, 413s included

    @app.get("/problems/{code}", include_in_schema=False)
    def problem_doc(code: str) -> Response:
        status, title = problems.PROBLEMS.get(code, (404, "Unknown problem type"))
        return Response(f"{code}: {title} (HTTP {status})\n", media_type="text/plain")

    if STATIC_DIR.is_dir() and role in ("all", "hub"):
        app.mount("/portal/static", StaticFiles(directory=STATIC_DIR), name="portal-static")

        @app.get("/", include_in_schema=False)
        @app.get("/portal", include_in_schema=False)
        @app.get("/portal/{path:path}", include_in_schema=False)
        def portal(path: str = "") -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

        @app.get("/docs", include_in_schema=False)
        def api_docs() -> FileResponse:
            # Own page, not FastAPI's: that one loads swagger-ui from a CDN and starts it inline.
            return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})

    return app
