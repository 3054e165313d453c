"""Typed dependencies: the service container, the signed-in caller and role guards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from eth_utils import is_address, to_checksum_address
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger_service.bootstrap import Services
from ledger_service.errors import PermissionDenied, ValidationError
from ledger_service.hub.auth import AuthenticationError, Session

bearer = HTTPBearer(auto_error=False, description="Token from POST /v1/auth/login (Sign-In with Ethereum)")


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain def dependency on a worker thread, which this lookup does not need
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True)
class Caller:
    """The signed-in account and the roles the chain gives it right now."""

    session: Session
    roles: frozenset[str]

    @property
    def address(self) -> str:
        return self.session.address

    def has(self, role: str) -> bool:
        if role == "provider":
            return "provider" in self.roles and "suspended" not in self.roles
        return role in self.roles


def current_caller(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("sign in first: send `Authorization: Bearer <token>` from POST /v1/auth/login")
    session = services.auth.verify_token(credentials.credentials)
    # One batched round trip at the latest block, never cached: a suspension or a revoked role takes
    # effect on the very next request. (A per-block cache would need the latest block number first,
    # which is itself a round trip: it could not make this cheaper without risking a stale answer.)
    return Caller(session, frozenset(services.ledger.roles_of(session.address)))


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require(role: str, caller: Caller) -> None:
    if not caller.has(role):
        held = ", ".join(sorted(caller.roles)) or "none"
        raise PermissionDenied(f"this needs the {role} role; {caller.address} holds: {held}", reason=f"needs-{role}")


# Async, though they do no I/O: a sync dependency costs each request a hop through the thread pool.
async def provider_caller(caller: CurrentCaller) -> Caller:
    require("provider", caller)
    return caller


async def auditor_caller(caller: CurrentCaller) -> Caller:
    require("auditor", caller)
    return caller


ProviderCaller = Annotated[Caller, Depends(provider_caller)]
AuditorCaller = Annotated[Caller, Depends(auditor_caller)]


def address_param(value: str, field: str) -> str:
    if not is_address(value):
        raise ValidationError(f"{field} is not an Ethereum address: {value[:60]!r}", field=field)
    return to_checksum_address(value)


def patient_or_delegate(services: Services, caller: Caller, patient: str) -> str:
    """The patient's own routes: the patient, or a live delegate (guardian) of the patient."""
    patient = address_param(patient, "patient")
    if caller.address == patient:
        return patient
    _valid_until, live = services.ledger.delegation(patient, caller.address)
    if not live:
        raise PermissionDenied(
            f"{caller.address} is neither patient {patient} nor a live delegate of the patient",
            reason="not-patient-or-delegate",
        )
    return patient


def record_id_param(value: str) -> str:
    if len(value) != 66 or not value.startswith("0x"):
        raise ValidationError("recordId must be 0x followed by 64 hex digits", field="recordId")
    try:
        bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ValidationError("recordId must be 0x followed by 64 hex digits", field="recordId") from exc
    return value.lower()
