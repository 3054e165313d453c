"""A guardian's view: the patients who named the signed-in account as their delegate."""

from __future__ import annotations

from fastapi import APIRouter

from consent_api.deps import CurrentCaller, ServicesDep, address_param
from consent_api.schemas import Out
from ledger_service.errors import PermissionDenied

router = APIRouter(prefix="/v1/delegates", tags=["patients"])


class NamingPatientOut(Out):
    patient: str
    valid_until: int
    live: bool


class NamingPatientList(Out):
    patients: list[NamingPatientOut]


@router.get(
    "/{address}/patients",
    response_model=NamingPatientList,
    summary="The patients who named you as their delegate (guardian), with each delegation's state now",
)
def patients_naming(address: str, caller: CurrentCaller, services: ServicesDep) -> NamingPatientList:
    delegate = address_param(address, "address")
    if delegate != caller.address:
        raise PermissionDenied("only the delegate may list the patients who named them", reason="not-the-delegate")
    return NamingPatientList(
        patients=[
            NamingPatientOut(patient=v.delegate, valid_until=v.valid_until, live=v.live)
            for v in services.consents.patients_naming(delegate)
        ]
    )
