"""Sign-In with Ethereum (EIP-4361)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from consent_api.deps import ServicesDep
from consent_api.schemas import LoginIn, LoginOut, NonceOut

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def expected_domain_and_origin(request: Request) -> tuple[str, str]:
    """The domain and origin a sign-in message must name: this server as the client reached it."""
    settings = request.app.state.services.settings
    if settings.public_origin:
        origin = settings.public_origin.rstrip("/")
        return origin.split("://", 1)[-1], origin
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return host, f"{request.url.scheme}://{host}"


@router.get("/nonce", response_model=NonceOut, summary="A fresh single-use sign-in nonce")
def nonce(services: ServicesDep) -> NonceOut:
    return NonceOut(nonce=services.auth.issue_nonce())


@router.post("/login", response_model=LoginOut, summary="Exchange a signed EIP-4361 message for a bearer token")
def login(body: LoginIn, request: Request, services: ServicesDep) -> LoginOut:
    domain, origin = expected_domain_and_origin(request)
    token, session = services.auth.login(body.message, body.signature, domain=domain, origin=origin)
    return LoginOut(
        token=token,
        address=session.address,
        roles=services.ledger.roles_of(session.address),
        expires_at=session.expires_at,
    )
