"""A patient's own views: consents, records, disclosures (accounting of disclosures), delegates."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from consent_api.deps import CurrentCaller, ServicesDep, address_param, patient_or_delegate
from consent_api.schemas import (
    ConsentList,
    ConsentOut,
    DelegateList,
    DelegateOut,
    DelegateRequest,
    DelegateRevokeRequest,
    DisclosureList,
    DisclosureOut,
    EmergencyReviewIn,
    EmergencyReviewOut,
    RecordList,
    RecordOut,
    SealedLabelOut,
    TxOut,
)
from consent_api.throttle import RELAY_LIMITED, relay
from ledger_service.domain.consent import DelegateGrant, DelegateRevoke
from ledger_service.domain.record_labels import RecordLabel
from ledger_service.errors import ValidationError
from ledger_service.hub.consents import consent_summaries
from ledger_service.hub.disclosures import BatchedDisclosure, accounting_of
from ledger_service.hub.emergency_reviews import disclosure_id, mark_reviewed, reviews_of
from ledger_service.hub.records import RecordSummary, VersionSummary
from ledger_service.node.record_labels import SealedLabel

router = APIRouter(prefix="/v1/patients", tags=["patients"])


@router.get("/{patient}/consents", response_model=ConsentList, summary="The patient's grants with their status")
def consents(patient: str, caller: CurrentCaller, services: ServicesDep) -> ConsentList:
    patient = patient_or_delegate(services, caller, patient)
    summaries = consent_summaries(services.consents, patient, services.categories(), services.directory.name_of)
    return ConsentList(consents=[ConsentOut(**asdict(s)) for s in summaries])


def _record_out(
    services: ServicesDep,
    record: RecordSummary,
    head: VersionSummary | None,
    label: RecordLabel | None = None,
    sealed: SealedLabel | None = None,
) -> RecordOut:
    return RecordOut(
        record_id=record.record_id,
        patient=record.patient,
        author=record.author,
        author_name=services.directory.name_of(record.author),
        category=record.category,
        media_type=head.media_type if head else "",
        version=record.current_version,
        cid=head.cid if head else "",
        size=head.plaintext_size if head else 0,
        created_at=int(record.created_at.timestamp()),
        erased=record.erased,
        title=label.title if label and not record.erased else None,
        file_name=(label.file_name or None) if label and not record.erased else None,
        sealed_label=None
        if sealed is None or record.erased
        else SealedLabelOut(
            version=sealed.version, recipient_key="0x" + sealed.recipient_key.hex(), sealed="0x" + sealed.sealed.hex()
        ),
    )


@router.get(
    "/{patient}/records",
    response_model=RecordList,
    summary="The patient's records (a provider sees those it wrote or may read now)",
)
def records(patient: str, caller: CurrentCaller, services: ServicesDep) -> RecordList:
    if caller.has("provider") and address_param(patient, "patient") != caller.address:
        patient = address_param(patient, "patient")
        heads = services.records.head_versions_of(patient)
        shown = [
            record
            for record in services.records.records_of(patient)
            if record.author == caller.address
            or any(
                services.ledger.is_authorized(patient, caller.address, bytes.fromhex(record.record_id[2:]), p)
                for p in _grantable_purposes()
            )
        ]
        # A provider sees the titles it holds a copy of: its own records', and those it has read.
        labels = services.labels.labels_for([r.record_id for r in shown], caller.address) if services.labels else {}
        return RecordList(
            records=[_record_out(services, r, heads.get(r.record_id), labels.get(r.record_id)) for r in shown]
        )
    patient = patient_or_delegate(services, caller, patient)
    heads = services.records.head_versions_of(patient)
    records = services.records.records_of(patient)
    sealed: dict[str, SealedLabel] = {}
    if services.labels is not None and caller.address == patient:
        # The patient's copies, sealed to their key on chain, opened in their browser; a delegate gets none.
        sealed = services.labels.patient_copies(patient, [(r.record_id, r.author) for r in records if not r.erased])
    return RecordList(
        records=[_record_out(services, r, heads.get(r.record_id), sealed=sealed.get(r.record_id)) for r in records]
    )


def _grantable_purposes() -> list[bytes]:
    from ledger_service.domain.codes import GRANTABLE_PURPOSES, purpose_to_bytes32

    return [purpose_to_bytes32(p) for p in GRANTABLE_PURPOSES]


@router.get(
    "/{patient}/disclosures",
    response_model=DisclosureList,
    summary="Accounting of disclosures: every release of the patient's records, with proofs in batched mode",
    description=(
        "Per-read disclosures come from the chain's events (`txHash`). Batched disclosures come from the "
        "operator's disclosure log (`leafIndex`) and carry `proof`: a receipt that `consent-ledger "
        "verify-receipt` checks against the chain alone once its batch is anchored, or "
        '`{"status": "pending", "leafIndex": n}` before. Newest first.'
    ),
)
def disclosures(patient: str, caller: CurrentCaller, services: ServicesDep) -> DisclosureList:
    patient = patient_or_delegate(services, caller, patient)
    reviewed = reviews_of(services.db, patient)
    out = []
    for d in accounting_of(services.db, services.indexer, services.disclosure_log, patient):
        out.append(
            DisclosureOut(
                record_id=d.record_id,
                version=d.version,
                accessor=d.accessor,
                accessor_name=services.directory.name_of(d.accessor),
                purpose=d.purpose,
                consent_id=d.consent_id,
                emergency=d.emergency,
                reason=d.reason,
                block_number=d.block_number,
                timestamp=d.timestamp,
                tx_hash=None if isinstance(d, BatchedDisclosure) else d.tx_hash,
                leaf_index=d.leaf_index if isinstance(d, BatchedDisclosure) else None,
                proof=d.proof if isinstance(d, BatchedDisclosure) else None,
                disclosure_id=disclosure_id(d),
                reviewed_at=reviewed.get(disclosure_id(d)) if d.emergency else None,
            )
        )
    return DisclosureList(disclosures=out)


def _own_patient(patient: str, caller: CurrentCaller, services: ServicesDep) -> str:
    # a dependency, so that a caller who is not the patient is refused before its body is read
    return patient_or_delegate(services, caller, patient)


@router.post(
    "/{patient}/emergency-reviews",
    response_model=EmergencyReviewOut,
    summary="Mark an emergency access to the patient's records as reviewed (the patient or a delegate)",
    description=(
        "`disclosureId` is the emergency disclosure's `disclosureId` in the accounting of disclosures. "
        "Marking it again returns the first mark. A disclosure made under consent is refused (400)."
    ),
)
def review_emergency(
    body: EmergencyReviewIn,
    patient: Annotated[str, Depends(_own_patient)],
    caller: CurrentCaller,
    services: ServicesDep,
) -> EmergencyReviewOut:
    at = mark_reviewed(
        services.db, services.indexer, services.disclosure_log, patient, caller.address, body.disclosure_id
    )
    return EmergencyReviewOut(disclosure_id=body.disclosure_id, reviewed_at=at)


@router.post(
    "/{patient}/delegates",
    response_model=TxOut,
    status_code=status.HTTP_201_CREATED,
    summary="Relay a signed DelegateGrant (name a guardian)",
    responses=RELAY_LIMITED,
)
async def add_delegate(patient: str, body: DelegateRequest, request: Request, services: ServicesDep) -> TxOut:
    d = body.delegate
    if address_param(d.patient, "delegate.patient") != address_param(patient, "patient"):
        raise ValidationError("delegate.patient differs from the patient in the path", field="patient")
    message = DelegateGrant(
        patient=address_param(d.patient, "delegate.patient"),
        delegate=address_param(d.delegate, "delegate.delegate"),
        valid_until=d.valid_until,
        nonce=d.nonce,
        deadline=d.deadline,
    )
    result = await relay(request, services.hub_relay.relay, message, bytes.fromhex(body.signature[2:]))
    return TxOut(tx_hash=result.tx_hash)


@router.delete(
    "/{patient}/delegates/{delegate}",
    response_model=TxOut,
    summary="Relay a signed DelegateRevoke (remove a guardian; only the patient signs it)",
    responses=RELAY_LIMITED,
)
async def remove_delegate(
    patient: str, delegate: str, body: DelegateRevokeRequest, request: Request, services: ServicesDep
) -> TxOut:
    r = body.revoke
    if address_param(r.patient, "revoke.patient") != address_param(patient, "patient"):
        raise ValidationError("revoke.patient differs from the patient in the path", field="patient")
    if address_param(r.delegate, "revoke.delegate") != address_param(delegate, "delegate"):
        raise ValidationError("revoke.delegate differs from the delegate in the path", field="delegate")
    message = DelegateRevoke(
        patient=address_param(r.patient, "revoke.patient"),
        delegate=address_param(r.delegate, "revoke.delegate"),
        nonce=r.nonce,
        deadline=r.deadline,
    )
    result = await relay(request, services.hub_relay.relay, message, bytes.fromhex(body.signature[2:]))
    return TxOut(tx_hash=result.tx_hash)


@router.get("/{patient}/delegates", response_model=DelegateList, summary="The patient's delegates (guardians)")
def delegates(patient: str, caller: CurrentCaller, services: ServicesDep) -> DelegateList:
    patient = patient_or_delegate(services, caller, patient)
    return DelegateList(
        delegates=[
            DelegateOut(delegate=v.delegate, valid_until=v.valid_until, live=v.live)
            for v in services.consents.delegates_of(patient)
        ]
    )
