"""Sign-In with Ethereum (EIP-4361)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from consent_api.deps import ServicesDep
from consent_api.schemas import LoginIn, LoginOut, NonceOut
from consent_api.throttle import LIMITED, limit_sign_in
from ledger_service.origins import sign_in_origins

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.get(
    "/nonce",
    response_model=NonceOut,
    summary="A fresh single-use sign-in nonce",
    dependencies=[Depends(limit_sign_in)],
    responses=LIMITED,
)
async def nonce(services: ServicesDep) -> NonceOut:
    return NonceOut(nonce=services.auth.issue_nonce())  # signed, not stored: no thread, no DB


@router.post(
    "/login",
    response_model=LoginOut,
    summary="Exchange a signed EIP-4361 message for a bearer token",
    dependencies=[Depends(limit_sign_in)],
    responses=LIMITED,
)
def login(body: LoginIn, services: ServicesDep) -> LoginOut:
    # The origins a message may name come from the settings, never from the request's Host or
    # X-Forwarded-* headers: those are the client's choice (ledger_service/origins.py).
    origins = sign_in_origins(services.settings)
    token, session = services.auth.login(body.message, body.signature, origins=origins)
    return LoginOut(
        token=token,
        address=session.address,
        roles=services.ledger.roles_of(session.address),
        expires_at=session.expires_at,
    )
