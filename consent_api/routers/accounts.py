"""The patients' passkey accounts (docs/architecture.md, "Passkey accounts"): created and changed by the hub's
relayer, judged by the contracts alone.

Anyone may create an account for a passkey's public key (its address binds the key; only the key's holder
signs for it) and relay an account's signed passkey change, so these routes are limited like the other
relayed writes (consent_api/throttle.py) and wait for their transactions on the relay's own threads.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import Field

from consent_api.deps import ServicesDep, address_param
from consent_api.schemas import Out, Schema, Uint256
from consent_api.throttle import RELAY_LIMITED, client_of, throttle_of
from ledger_service.domain.passkeys import AddPasskey, Passkey, PasskeyMessage, RemovePasskey
from ledger_service.errors import InvalidPasskey
from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

_COORDINATE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not a P-256 key (`/problems/invalid-passkey`), or a malformed request"},
    **RELAY_LIMITED,
}


class PublicKeyIn(Schema):
    x: str = Field(max_length=66, description="The P-256 point's x, 0x and 64 hex digits")
    y: str = Field(max_length=66, description="Its y, 0x and 64 hex digits")

    def passkey(self) -> Passkey:
        if not (_COORDINATE.match(self.x) and _COORDINATE.match(self.y)):
            raise InvalidPasskey("publicKey x and y are each 0x and 64 hex digits", field="publicKey")
        return Passkey.of(bytes.fromhex(self.x[2:]), bytes.fromhex(self.y[2:]))


class PublicKeyOut(Out):
    x: str
    y: str


class CreateAccountIn(Schema):
    public_key: PublicKeyIn = Field(description="The first passkey of the account")


class CreatedAccountOut(Out):
    address: str
    tx_hash: str | None = Field(description="The createAccount transaction; null if the account existed already")


class AccountOut(Out):
    address: str
    deployed: bool
    passkeys: list[PublicKeyOut] = Field(description="The account's passkeys on chain now, its first one first")


class PasskeyChangeIn(Schema):
    public_key: PublicKeyIn = Field(description="The passkey to add or to remove")
    nonce: Uint256 = Field(description="An unused nonce of the account's own (nonceUsed)")
    deadline: Uint256 = Field(description="Chain time after which the message is refused")
    signature: str = Field(
        pattern=r"^0x([0-9a-fA-F]{2})+$",
        max_length=2 + 2 * MAX_SIGNATURE_BYTES,
        description="A WebAuthn assertion by one of the account's passkeys over the message's EIP-712 digest: "
        "abi.encode(r, s, challengeIndex, typeIndex, authenticatorData, clientDataJSON)",
    )


class TxHashOut(Out):
    tx_hash: str


def _admit(request: Request) -> None:
    """Counted with the relayed messages: each of these is a transaction the relayer pays for."""
    throttle = throttle_of(request)
    throttle.admit(throttle.relay, client_of(request))


@router.post(
    "",
    response_model=CreatedAccountOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create the passkey account of a P-256 public key (relayed createAccount)",
    responses={200: {"description": "The account existed already; nothing was sent"}, **_PROBLEMS},
)
async def create_account(
    body: CreateAccountIn, request: Request, response: Response, services: ServicesDep
) -> CreatedAccountOut:
    key = body.public_key.passkey()
    _admit(request)
    created = await throttle_of(request).relay_slots.run(services.hub_accounts.create, key)
    if created.tx_hash is None:
        response.status_code = status.HTTP_200_OK
    return CreatedAccountOut(address=created.address, tx_hash=created.tx_hash)


@router.get(
    "/{address}",
    response_model=AccountOut,
    summary="A passkey account of this deployment and its passkeys, from the chain",
    responses={404: {"description": "No account of this deployment's factory is deployed there"}},
)
def account(address: str, services: ServicesDep) -> AccountOut:
    view = services.hub_accounts.describe(address_param(address, "address"))
    return AccountOut(
        address=view.address,
        deployed=view.deployed,
        passkeys=[PublicKeyOut(**key.as_dict()) for key in view.passkeys],
    )


async def _change(
    request: Request, services: ServicesDep, address: str, message: PasskeyMessage, signature: str
) -> TxHashOut:
    _admit(request)
    account = address_param(address, "address")
    tx_hash, _replayed = await throttle_of(request).relay_slots.run(
        services.hub_accounts.change_passkey, account, message, bytes.fromhex(signature[2:])
    )
    return TxHashOut(tx_hash=tx_hash)


_CHANGE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    404: {"description": "No account of this deployment's factory is deployed there"},
    409: {"description": "The account refused the change for its passkeys (`/problems/passkey-refused`)"},
}


@router.post(
    "/{address}/passkeys",
    response_model=TxHashOut,
    summary="Relay an account's signed AddPasskey (a new device)",
    responses=_CHANGE_PROBLEMS,
)
async def add_passkey(address: str, body: PasskeyChangeIn, request: Request, services: ServicesDep) -> TxHashOut:
    key = body.public_key.passkey()
    message = AddPasskey(key.x, key.y, body.nonce, body.deadline)
    return await _change(request, services, address, message, body.signature)


@router.post(
    "/{address}/passkeys/remove",
    response_model=TxHashOut,
    summary="Relay an account's signed RemovePasskey (a lost or retired device)",
    responses=_CHANGE_PROBLEMS,
)
async def remove_passkey(address: str, body: PasskeyChangeIn, request: Request, services: ServicesDep) -> TxHashOut:
    key = body.public_key.passkey()
    message = RemovePasskey(key.x, key.y, body.nonce, body.deadline)
    return await _change(request, services, address, message, body.signature)
