"""The hub's relay of any party's signed message, and the signers' unused nonces.

See the README ("Roles: hub and node") and docs/architecture.md ("Signed acts").

Anyone may relay: what counts is the signature of the party the message names. The relayer pays the gas;
nothing it sends can act for anyone who did not sign.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from consent_api.deps import ServicesDep, address_param
from consent_api.schemas import Out, Schema, Signature
from consent_api.throttle import RELAY_LIMITED, relay
from ledger_service.domain.codes import hex32
from ledger_service.domain.consent import EIP712_TYPES, RecordErase, SignedMessage, field_attribute
from ledger_service.errors import ValidationError
from ledger_service.records.relaying import RecordFacts

router = APIRouter(tags=["relay"])

_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
_MAX_BYTES_FIELD = 1024  # a binary CID is about 36 bytes; nothing in a message is larger


class RecordFactsIn(Schema):
    """Beside a RecordAnchor or RecordAmend: what the chain does not carry, for the patient's record list."""

    media_type: str = Field(max_length=255)
    plaintext_size: int = Field(ge=0)
    ciphertext_size: int = Field(ge=0)


class RelayIn(Schema):
    primary_type: str = Field(description="The EIP-712 primary type, e.g. RecordAnchor or AccessRequest")
    message: dict[str, Any] = Field(description="The message's fields, camelCase; bytes32 and bytes as 0x-hex")
    signature: Signature = Field(description="65-byte ECDSA signature, or an ERC-1271 proof of a contract account")
    reason: str | None = Field(
        default=None, max_length=2000, description="EmergencyAccessRequest only: its keccak256 is reasonHash"
    )
    record: RecordFactsIn | None = Field(default=None, description="RecordAnchor, RecordAmend: the version's facts")


class RelayOut(Out):
    tx_hash: str
    block_number: int
    record_id: str | None = None
    version: int | None = None
    consent_id: str | None = None


class NonceOut(Out):
    nonce: int


class EncryptionKeyOut(Out):
    account: str
    public_key: str = Field(description="encryptionKeyOf(account): X25519, 0x-hex; all zeros if none is set")


def _classes() -> dict[str, type]:
    import ledger_service.domain.consent as consent

    return {name: getattr(consent, name) for name in EIP712_TYPES}


def parse_message(primary_type: str, raw: dict[str, Any]) -> SignedMessage:
    """The typed message of ``primary_type`` from its JSON fields; a clear 422 names any bad field."""
    members = EIP712_TYPES.get(primary_type)
    if members is None:
        raise ValidationError(
            f"unknown primaryType {primary_type!r}; one of {', '.join(sorted(EIP712_TYPES))}", field="primaryType"
        )
    names = {m["name"] for m in members}
    extra = sorted(set(raw) - names)
    if extra:
        raise ValidationError(f"{primary_type} has no field {extra[0]!r}", field=f"message.{extra[0]}")
    values: list[Any] = []
    for member in members:
        name, kind = member["name"], member["type"]
        where = f"message.{name}"
        if name not in raw:
            raise ValidationError(f"{primary_type} needs {name!r}", field=where)
        value = raw[name]
        if kind == "address":
            values.append(address_param(str(value), where))
        elif kind == "bytes32":
            if not isinstance(value, str) or not _BYTES32.match(value):
                raise ValidationError(f"{name} must be 0x and 64 hexadecimal digits", field=where)
            values.append(bytes.fromhex(value[2:]))
        elif kind == "bytes":
            if not isinstance(value, str) or not _HEX.match(value) or len(value) > 2 + 2 * _MAX_BYTES_FIELD:
                raise ValidationError(f"{name} must be 0x-hex bytes (at most {_MAX_BYTES_FIELD})", field=where)
            values.append(bytes.fromhex(value[2:]))
        else:
            bits = int(kind[4:])
            if isinstance(value, str) and value.isdigit():
                value = int(value)  # uint256 values above 2^53 may come as decimal strings
            if type(value) is not int or not 0 <= value < 2**bits:
                raise ValidationError(f"{name} must be an integer in [0, 2^{bits})", field=where)
            values.append(value)
    cls = _classes()[primary_type]
    attributes = (field_attribute(m["name"]) for m in members)
    return cls(**dict(zip(attributes, values, strict=True)))  # type: ignore[no-any-return]


@router.post(
    "/v1/relay",
    response_model=RelayOut,
    response_model_exclude_none=True,
    summary="Relay one signed message of any party",
    responses={
        201: {"description": "RecordAnchor, RecordAmend: the anchored version"},
        403: {"description": "An AccessRequest without consent (nothing is sent)"},
        **RELAY_LIMITED,
    },
)
async def relay_message(body: RelayIn, request: Request, response: Response, services: ServicesDep) -> RelayOut:
    message = parse_message(body.primary_type, body.message)
    signature = bytes.fromhex(body.signature[2:])

    facts = None
    if body.record is not None:
        if body.primary_type not in ("RecordAnchor", "RecordAmend"):
            raise ValidationError("only a RecordAnchor or RecordAmend takes record facts", field="record")
        facts = RecordFacts(body.record.media_type, body.record.plaintext_size, body.record.ciphertext_size)

    if isinstance(message, RecordErase):
        # An erasure is more than its event: the keys are destroyed and the blobs unpinned first (hub/erasure.py),
        # exactly as DELETE /v1/records/{id} does.
        erasure = services.hub_erasure
        record_id = hex32(message.record_id)
        erased = await run_in_threadpool(erasure.erase, record_id=record_id, request=message, signature=signature)
        block = erased.block_number if erased.block_number is not None else services.rpc.block_number()
        return RelayOut(tx_hash=erased.tx_hash, block_number=block)

    def send(m: SignedMessage, sig: bytes) -> Any:
        return services.hub_relay.relay(m, sig, reason=body.reason, record=facts)

    outcome = await relay(request, send, message, signature)
    anchors = body.primary_type in ("RecordAnchor", "RecordAmend")
    if anchors:
        response.status_code = status.HTTP_201_CREATED  # a resubmission gets the same answer as the first time
    return RelayOut(
        tx_hash=outcome.tx_hash,
        block_number=outcome.block_number,
        record_id=outcome.record_id if anchors else None,
        version=outcome.version if anchors else None,
        consent_id=outcome.consent_id if body.primary_type == "AccessRequest" else None,
    )


@router.get("/v1/nonces/{signer}", response_model=NonceOut, summary="An unused nonce of a signer (below 2^53)")
def signer_nonce(signer: str, services: ServicesDep) -> NonceOut:
    return NonceOut(nonce=services.ledger.fresh_nonce(address_param(signer, "signer")))


@router.get(
    "/v1/encryption-keys/{account}",
    response_model=EncryptionKeyOut,
    summary="The X25519 key an account set on chain (its signed EncryptionKey), that key shares are sealed to",
)
def encryption_key(account: str, services: ServicesDep) -> EncryptionKeyOut:
    address = address_param(account, "account")
    return EncryptionKeyOut(account=address, public_key="0x" + services.ledger.encryption_key_of(address).hex())
