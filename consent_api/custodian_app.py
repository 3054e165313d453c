"""A key custodian's HTTP API (docs/architecture.md, "Key custody"): its own process, its own port.

``GET /v1/custodian`` says who it is; ``POST /v1/custodian/shares`` takes a provider's signed deposit;
``POST /v1/custodian/release`` answers a release request with the share sealed to the accessor's key on
chain, against the disclosure's transaction (per-read mode) or its receipt (batched mode), exactly one of the
two. Errors are problem+json like the hub's: a refusal is 403, an erased record 410, a custodian whose chain
node is unreachable 503.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_api import problems
from consent_api.body_limits import BodyLimit, Limits
from consent_api.schemas import Address, Bytes32, HexBytes, Out, Schema
from ledger_service.custodian.service import Custodian
from ledger_service.errors import LedgerError

SealedShare = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{162}$", description="HPKE enc || ciphertext, 81 bytes")]
Version = Annotated[int, Field(ge=1, le=2**32 - 1)]


class CustodianOut(Out):
    index: int
    public_key: str = Field(description="The custodian's current X25519 public key (32 bytes)")
    threshold: int
    total: int


class DepositIn(Schema):
    patient: Address
    author: Address
    record_id: Bytes32
    version: Version
    recipient: Bytes32 = Field(description="The custodian public key the share is sealed to")
    sealed_share: SealedShare
    signature: HexBytes = Field(description="The author's ECDSA signature of the EIP-712 ShareDeposit")


class DepositOut(Out):
    index: int


class ReleaseIn(Schema):
    record_id: Bytes32
    version: Version
    accessor: Address
    disclosure_tx: Bytes32 | None = Field(
        default=None, description="Per-read mode: the transaction that logged the access on chain"
    )
    receipt: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Batched mode, instead of disclosureTx: the receipt (consent-ledger-disclosure-receipt/2) of the "
            "access's entry in the disclosure log, once its batch is anchored"
        ),
    )

    @model_validator(mode="after")
    def one_evidence(self) -> ReleaseIn:
        if (self.disclosure_tx is None) == (self.receipt is None):
            raise ValueError("give exactly one of disclosureTx (per-read mode) and receipt (batched mode)")
        return self


class ReleaseOut(Out):
    index: int
    sealed_share: str = Field(description="The share sealed (HPKE) to the accessor's encryption key on chain")


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def create_custodian_app(custodian: Custodian, *, limits: Limits, cors_origins: list[str] | None = None) -> FastAPI:
    app = FastAPI(
        title="Consent Ledger key custodian",
        version="2.0.0",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.custodian = custodian
    problems.install(app)

    @app.get("/health", summary="Liveness, and whether this custodian's chain node answers")
    def health() -> JSONResponse:
        try:
            head = custodian.ledger.rpc.block_number()
        except LedgerError as exc:
            return JSONResponse({"status": "degraded", "chain": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "index": custodian.config.index, "block": head})

    @app.get("/v1/custodian", response_model=CustodianOut, summary="This custodian's index, key and threshold")
    def info() -> CustodianOut:
        return CustodianOut(**custodian.info())

    @app.post(
        "/v1/custodian/shares",
        response_model=DepositOut,
        status_code=status.HTTP_201_CREATED,
        summary="Deposit the share of a record version about to be anchored",
    )
    async def deposit(body: DepositIn) -> JSONResponse:
        outcome = await run_in_threadpool(
            lambda: custodian.deposit(
                patient=body.patient,
                author=body.author,
                record_id=_bytes(body.record_id),
                version=body.version,
                recipient=_bytes(body.recipient),
                sealed=_bytes(body.sealed_share),
                signature=_bytes(body.signature),
            )
        )
        code = status.HTTP_200_OK if outcome.replaced else status.HTTP_201_CREATED
        return JSONResponse(DepositOut(index=outcome.index).model_dump(by_alias=True), status_code=code)

    @app.post("/v1/custodian/release", response_model=ReleaseOut, summary="The share, against a final disclosure")
    async def release(body: ReleaseIn) -> JSONResponse:
        sealed = await run_in_threadpool(
            lambda: custodian.release(
                record_id=_bytes(body.record_id),
                version=body.version,
                accessor=body.accessor,
                disclosure_tx=None if body.disclosure_tx is None else _bytes(body.disclosure_tx),
                receipt=body.receipt,
            )
        )
        # Answered as it is (ReleaseOut documents it): on every read's path, the answer is not validated again.
        return JSONResponse({"index": custodian.config.index, "sealedShare": "0x" + sealed.hex()})

    app.add_middleware(BodyLimit, limits=limits)  # every custodian route takes a small JSON body
    if cors_origins:
        # A patient's browser asks the custodians itself for the shares of its own records.
        app.add_middleware(
            CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"], allow_headers=["Content-Type"]
        )
    app.add_middleware(NoStore)  # outermost: every answer, refusals included
    return app


class NoStore:
    """``Cache-Control: no-store`` and ``nosniff`` on every answer, as plain ASGI (a sealed share is for its
    accessor alone, and a release is on every read's path: no per-request middleware task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = "no-store"
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_headers)
