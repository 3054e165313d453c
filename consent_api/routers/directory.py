"""A provider's own patient directory (the node's): find a patient by name, MRN or account.

Served by the node only: names, birth dates and MRNs never reach the hub (docs/architecture.md,
"Patient directory"). Each provider sees and edits only its own entries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field

from consent_api.deps import Caller, ProviderCaller, ServicesDep
from consent_api.schemas import Out, Schema
from ledger_service.bootstrap import Services
from ledger_service.errors import ConfigurationError, NotFoundError, PermissionDenied
from ledger_service.node.patient_directory import MAX_MRN, MAX_NAME, MAX_QUERY, DirectoryEntry, PatientDirectory

router = APIRouter(prefix="/v1/directory", tags=["patient directory"])


class DirectoryEntryIn(Schema):
    # lengths are checked again, with plain messages, by the directory itself
    name: str = Field(max_length=4 * MAX_NAME, description="The patient's name as the clinic knows it")
    birth_date: str | None = Field(default=None, max_length=32, description="YYYY-MM-DD", examples=["1984-03-09"])
    mrn: str | None = Field(default=None, max_length=4 * MAX_MRN, description="The clinic's medical record number")


class DirectoryEntryOut(Out):
    address: str
    name: str
    birth_date: str | None
    mrn: str | None
    updated_at: int


class DirectoryList(Out):
    patients: list[DirectoryEntryOut]


def _out(entry: DirectoryEntry) -> DirectoryEntryOut:
    return DirectoryEntryOut(
        address=entry.address,
        name=entry.name,
        birth_date=entry.birth_date,
        mrn=entry.mrn,
        updated_at=entry.updated_at,
    )


def _directory(services: Services, caller: Caller) -> PatientDirectory:
    """The node's directory, for a provider this node signs for (another provider's directory is its own node's)."""
    if services.patient_directory is None:
        raise ConfigurationError("this process is a hub: a patient directory is kept by the provider's node")
    if caller.address not in services.providers.accounts:
        raise PermissionDenied(
            "this node does not serve your organisation: your patient directory is on your own node",
            reason="not-this-nodes-provider",
        )
    return services.patient_directory


@router.get(
    "/patients",
    response_model=DirectoryList,
    summary="Find patients in your own directory by name (part of it, any case), MRN or account",
)
def find_patients(
    caller: ProviderCaller,
    services: ServicesDep,
    q: Annotated[str, Query(max_length=MAX_QUERY, description="name, MRN or account (0x…)")] = "",
) -> DirectoryList:
    return DirectoryList(patients=[_out(e) for e in _directory(services, caller).search(caller.address, q)])


@router.get("/patients/{address}", response_model=DirectoryEntryOut, summary="One patient of your directory")
def get_patient(address: str, caller: ProviderCaller, services: ServicesDep) -> DirectoryEntryOut:
    entry = _directory(services, caller).get(caller.address, address)
    if entry is None:
        raise NotFoundError("this patient is not in your directory")
    return _out(entry)


@router.put(
    "/patients/{address}",
    response_model=DirectoryEntryOut,
    summary="Add or change a patient of your directory (409 directory-conflict if the MRN is another's)",
)
def put_patient(
    address: str, body: DirectoryEntryIn, caller: ProviderCaller, services: ServicesDep
) -> DirectoryEntryOut:
    entry = _directory(services, caller).put(
        caller.address, address, name=body.name, birth_date=body.birth_date, mrn=body.mrn
    )
    return _out(entry)


@router.delete("/patients/{address}", status_code=204, summary="Remove a patient from your directory")
def delete_patient(address: str, caller: ProviderCaller, services: ServicesDep) -> Response:
    _directory(services, caller).delete(caller.address, address)
    return Response(status_code=204)
