"""Relay of patients' signed consent messages (anyone may relay; the signature is what counts)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from consent_api.deps import ServicesDep, address_param
from consent_api.schemas import ContractNonceOut, GrantOut, GrantRequest, RevokeRequest, TxOut
from consent_api.throttle import RELAY_LIMITED, relay
from ledger_service.domain.consent import ConsentGrant, ConsentRevoke

router = APIRouter(prefix="/v1/consents", tags=["consents"])


def _bytes(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


@router.get("/nonce/{patient}", response_model=ContractNonceOut, summary="The patient's current contract nonce")
def patient_nonce(patient: str, services: ServicesDep) -> ContractNonceOut:
    return ContractNonceOut(nonce=services.ledger.fresh_nonce(address_param(patient, "patient")))


@router.post(
    "",
    response_model=GrantOut,
    status_code=status.HTTP_201_CREATED,
    summary="Relay a signed ConsentGrant",
    responses={200: {"description": "The identical signed message was relayed before; its result"}, **RELAY_LIMITED},
)
async def grant(body: GrantRequest, request: Request, response: Response, services: ServicesDep) -> GrantOut:
    g = body.grant
    message = ConsentGrant(
        patient=address_param(g.patient, "grant.patient"),
        grantee=address_param(g.grantee, "grant.grantee"),
        scope=_bytes(g.scope),
        purpose=_bytes(g.purpose),
        valid_from=g.valid_from,
        valid_until=g.valid_until,
        nonce=g.nonce,
        deadline=g.deadline,
    )
    result = await relay(request, services.hub_relay.relay, message, _bytes(body.signature))
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    assert result.consent_id is not None
    return GrantOut(consent_id=result.consent_id, tx_hash=result.tx_hash)


@router.post(
    "/{consent_id}/revoke", response_model=TxOut, summary="Relay a signed ConsentRevoke", responses=RELAY_LIMITED
)
async def revoke(consent_id: str, body: RevokeRequest, request: Request, services: ServicesDep) -> TxOut:
    from ledger_service.domain.codes import parse_bytes32
    from ledger_service.errors import ValidationError

    path_id = parse_bytes32(consent_id, "consentId")
    r = body.revoke
    if _bytes(r.consent_id) != path_id:
        raise ValidationError("revoke.consentId differs from the consent in the path", field="consentId")
    message = ConsentRevoke(
        patient=address_param(r.patient, "revoke.patient"), consent_id=path_id, nonce=r.nonce, deadline=r.deadline
    )
    result = await relay(request, services.hub_relay.relay, message, _bytes(body.signature))
    return TxOut(tx_hash=result.tx_hash)
