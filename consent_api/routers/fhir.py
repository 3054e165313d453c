"""FHIR R4 searchset Bundles: Consent from on-chain grants, AuditEvent from disclosures."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from consent_api.deps import Caller, CurrentCaller, ServicesDep, address_param, patient_or_delegate
from ledger_service.bootstrap import Services
from ledger_service.fhir_export import Accounts, ConsentFacts, DisclosureFacts, bundle_of
from ledger_service.hub.consents import consent_summaries
from ledger_service.hub.disclosures import BatchedDisclosure, ChainDisclosure, accounting_of

router = APIRouter(prefix="/v1/fhir", tags=["fhir"])

FHIR_JSON = "application/fhir+json"
PatientQuery = Annotated[
    str, Query(description="The patient's address", examples=["0x90F79bf6EB2c4f870365E785982E1f101E93b906"])
]
BUNDLE = {200: {"description": "A FHIR R4 searchset Bundle", "content": {FHIR_JSON: {}}}}


def _patient_for(services: Services, caller: Caller, patient: str) -> str:
    """The patient themself, a delegate, or an auditor."""
    if caller.has("auditor"):
        return address_param(patient, "patient")
    return patient_or_delegate(services, caller, patient)


def _base(request: Request) -> str:
    return str(request.url_for("fhir_consent")).rsplit("/", 1)[0]


@router.get("/Consent", name="fhir_consent", responses=BUNDLE, response_class=JSONResponse)  # type: ignore[arg-type]
def consent_bundle(
    patient: PatientQuery, request: Request, caller: CurrentCaller, services: ServicesDep
) -> JSONResponse:
    patient = _patient_for(services, caller, patient)
    facts = [
        ConsentFacts(
            consent_id=s.consent_id,
            patient=s.patient,
            grantee=s.grantee,
            grantee_name=s.grantee_name,
            scope_kind=s.scope_kind,
            scope_value=s.scope_value,
            purpose=s.purpose,
            valid_from=s.valid_from,
            valid_until=s.valid_until,
            status=s.status,
            granted_at=s.granted_at,
            signer=s.signer,
            tx_hash=s.tx_hash,
        )
        for s in consent_summaries(services.consents, patient, services.categories(), services.directory.name_of)
    ]
    bundle: dict[str, Any] = bundle_of("Consent", facts, Accounts(services.deployment.chain_id), _base(request))
    return JSONResponse(bundle, media_type=FHIR_JSON)


@router.get("/AuditEvent", responses=BUNDLE, response_class=JSONResponse)  # type: ignore[arg-type]
def audit_event_bundle(
    patient: PatientQuery, request: Request, caller: CurrentCaller, services: ServicesDep
) -> JSONResponse:
    patient = _patient_for(services, caller, patient)
    custodian = services.ledger.sender.address if services.ledger.sender else services.deployment.custodian
    facts = [
        DisclosureFacts(
            record_id=d.record_id,
            version=d.version,
            patient=patient,
            accessor=d.accessor,
            accessor_name=services.directory.name_of(d.accessor),
            custodian=custodian,
            purpose=d.purpose,
            emergency=d.emergency,
            reason=d.reason,
            timestamp=d.timestamp,
            block_number=d.block_number,
            tx_hash=d.tx_hash if isinstance(d, ChainDisclosure) else None,
            leaf_index=d.leaf_index if isinstance(d, BatchedDisclosure) else None,
        )
        for d in accounting_of(services.db, services.indexer, services.disclosure_log, patient)
    ]
    bundle = bundle_of("AuditEvent", facts, Accounts(services.deployment.chain_id), _base(request))
    return JSONResponse(bundle, media_type=FHIR_JSON)
