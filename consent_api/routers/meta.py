"""Health, chain facts, the provider directory and the caller's identity."""

from __future__ import annotations

from fastapi import APIRouter

from consent_api.deps import CurrentCaller, ServicesDep
from consent_api.schemas import (
    ChainInfo,
    CustodianListed,
    CustodyOut,
    DemoAccounts,
    DeploymentOut,
    Eip712DomainOut,
    Health,
    Me,
    ProviderList,
    ProviderOut,
)
from ledger_service.bootstrap import Services
from ledger_service.domain.codes import PURPOSES, hex32

router = APIRouter(tags=["chain"])


@router.get("/health", response_model=Health, summary="Liveness: the chain answers")
def health(services: ServicesDep) -> Health:
    return Health(status="ok", chain_id=services.deployment.chain_id, block_number=services.rpc.block_number())


@router.get(
    "/v1/chain",
    response_model=ChainInfo,
    response_model_exclude_none=True,
    summary="Chain, contracts, EIP-712 domain, codes",
)
def chain_info(services: ServicesDep) -> ChainInfo:
    d = services.deployment
    demo = None
    if d.demo:
        demo = DemoAccounts(providers=d.demo["providers"], auditor=d.demo["auditor"], patients=d.demo["patients"])
    domain = services.domain.as_dict()
    return ChainInfo(
        chain_id=d.chain_id,
        block_number=services.rpc.block_number(),
        contracts=d.contracts,
        deployment=DeploymentOut(
            block_number=d.block_number, tx_hash=d.tx_hash, code_hash=d.code_hash, ledger_version=d.ledger_version
        ),
        eip712_domain=Eip712DomainOut(
            name=domain["name"],
            version=domain["version"],
            chain_id=domain["chainId"],
            verifying_contract=domain["verifyingContract"],
        ),
        categories={code: hex32(category) for code, category in services.categories().items()},
        purposes=list(PURPOSES),
        demo=demo,
        custody=_custody(services),
    )


def _custody(services: Services) -> CustodyOut | None:
    listed = services.custodian_listing()
    if listed is None:
        return None
    threshold, custodians = listed
    return CustodyOut(
        threshold=threshold,
        custodians=[CustodianListed(index=i, url=url, public_key="0x" + key.hex()) for i, url, key in custodians],
    )


@router.get("/v1/providers", response_model=ProviderList, summary="Onboarded providers by name")
def providers(services: ServicesDep) -> ProviderList:
    return ProviderList(
        providers=[
            ProviderOut(address=p.address, name=p.name, emergency=p.emergency, suspended=p.suspended)
            for p in services.directory.providers()
        ]
    )


@router.get("/v1/me", response_model=Me, summary="The signed-in account and its roles on chain now")
def me(caller: CurrentCaller) -> Me:
    return Me(address=caller.address, roles=sorted(caller.roles), expires_at=caller.session.expires_at)
