"""Sign-In with Ethereum (EIP-4361)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from consent_api.deps import ServicesDep
from consent_api.schemas import LoginIn, LoginOut, NonceOut
from consent_api.throttle import LIMITED, RELAY_LIMITED, client_of, limit_sign_in, throttle_of
from ledger_service.codec.erc6492 import is_erc6492
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
    description="The signature is the address's `personal_sign` (EIP-191) signature; for a contract account, a "
    "proof its ERC-1271 `isValidSignature` accepts; for a passkey account of this deployment not deployed yet, "
    "that proof wrapped by ERC-6492 in its `createAccount`, which the hub then relays first.",
    dependencies=[Depends(limit_sign_in)],
    responses={**LIMITED, 401: {"description": "Sign-in refused (`/problems/invalid-sign-in`)"}, **RELAY_LIMITED},
)
async def login(body: LoginIn, request: Request, services: ServicesDep) -> LoginOut:
    # The origins a message may name come from the settings, never from the request's Host or
    # X-Forwarded-* headers: those are the client's choice (ledger_service/origins.py).
    origins = sign_in_origins(services.settings)

    def sign_in() -> tuple[str, str, int]:
        token, session = services.auth.login(body.message, body.signature, origins=origins)
        return token, session.address, session.expires_at

    if is_erc6492(bytes.fromhex(body.signature[2:])):
        # It may deploy the account: counted and run as the relayed writes are (consent_api/throttle.py).
        throttle = throttle_of(request)
        throttle.admit(throttle.relay, client_of(request))
        token, address, expires_at = await throttle.relay_slots.run(sign_in)
    else:
        token, address, expires_at = await run_in_threadpool(sign_in)
    roles = await run_in_threadpool(services.ledger.roles_of, address)
    return LoginOut(token=token, address=address, roles=roles, expires_at=expires_at)
