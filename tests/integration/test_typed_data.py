"""Python and Solidity agree on the public EIP-712 messages and on the derived ids."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.domain.codes import ZERO32, category_id, purpose_to_bytes32
from ledger_service.domain.consent import (
    ConsentGrant,
    ConsentRevoke,
    DelegateGrant,
    Eip712Domain,
    consent_id,
    type_string,
    typed_data,
)
from ledger_service.errors import TransactionReverted
from tests.conftest import Chain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def relayer(chain: Chain) -> ConsentLedgerContract:
    rpc = RpcClient(chain.rpc_url)
    codec = ledger_codec()
    sender = TransactionSender(rpc, chain.admin.key.hex(), codec, chain_id=chain.deployment.chain_id)
    return ConsentLedgerContract(rpc, chain.deployment.ledger_address, codec, sender)


def _domain(chain: Chain) -> Eip712Domain:
    return Eip712Domain(chain_id=chain.deployment.chain_id, verifying_contract=chain.deployment.ledger_address)


def _sign(key: bytes, domain: Eip712Domain, message: ConsentGrant | ConsentRevoke | DelegateGrant) -> bytes:
    return bytes(Account.sign_typed_data(key, full_message=typed_data(domain, message)).signature)


def test_domain_separator_matches_the_contract(chain: Chain, relayer: ConsentLedgerContract) -> None:
    domain_type = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    from eth_abi import encode

    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [domain_type, keccak(b"ConsentLedger"), keccak(b"1"), chain.deployment.chain_id, relayer.address],
        )
    )
    assert relayer.domain_separator() == expected


def test_type_strings_are_the_public_interface() -> None:
    assert type_string("ConsentGrant") == (
        "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,"
        "uint64 validUntil,uint256 nonce,uint256 deadline)"
    )
    assert (
        type_string("ConsentRevoke")
        == "ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)"
    )
    assert type_string("DelegateGrant") == (
        "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)"
    )


def test_grant_signed_by_eth_account_is_accepted_and_ids_agree(chain: Chain, relayer: ConsentLedgerContract) -> None:
    patient = chain.patients[0]
    grantee = chain.clinic.address
    now = chain.now()
    grant = ConsentGrant(
        patient=patient.address,
        grantee=grantee,
        scope=category_id("laboratory"),
        purpose=purpose_to_bytes32("TREAT"),
        valid_from=0,
        valid_until=now + 86_400,
        nonce=relayer.fresh_nonce(patient.address),
        deadline=now + 600,
    )
    receipt = relayer.send_signed(grant, _sign(patient.key, _domain(chain), grant))
    event = relayer.event(receipt, "ConsentGranted")
    assert (
        event.args["consentId"] == grant.consent_id == consent_id(patient.address, grantee, grant.scope, grant.purpose)
    )
    assert event.args["patient"] == patient.address
    assert event.args["signer"] == patient.address
    assert relayer.fresh_nonce(patient.address) == grant.nonce + 1

    revoke = ConsentRevoke(patient.address, grant.consent_id, relayer.fresh_nonce(patient.address), now + 600)
    receipt = relayer.send_signed(revoke, _sign(patient.key, _domain(chain), revoke))
    assert relayer.event(receipt, "ConsentRevoked").args["consentId"] == grant.consent_id
    assert relayer.consent(grant.consent_id)[3] is True


def test_replayed_or_foreign_signatures_are_refused_with_their_reason(
    chain: Chain, relayer: ConsentLedgerContract
) -> None:
    patient = chain.patients[1]
    now = chain.now()
    grant = ConsentGrant(
        patient.address,
        chain.lab.address,
        ZERO32,
        purpose_to_bytes32("HRESCH"),
        0,
        0,
        relayer.fresh_nonce(patient.address),
        now + 600,
    )
    signature = _sign(patient.key, _domain(chain), grant)
    relayer.send_signed(grant, signature)
    with pytest.raises(TransactionReverted) as replay:
        relayer.send_signed(grant, signature)
    assert replay.value.error_name == "NonceAlreadyUsed"

    other_chain = Eip712Domain(chain_id=1, verifying_contract=chain.deployment.ledger_address)
    fresh = ConsentGrant(**{**grant.__dict__, "nonce": relayer.fresh_nonce(patient.address)})
    with pytest.raises(TransactionReverted) as cross_chain:
        relayer.send_signed(fresh, _sign(patient.key, other_chain, fresh))
    assert cross_chain.value.error_name == "InvalidSigner"

    with pytest.raises(TransactionReverted) as stranger:
        relayer.send_signed(fresh, _sign(chain.accounts[9].key, _domain(chain), fresh))
    assert stranger.value.error_name == "InvalidSigner"


def test_delegate_signature_counts_as_the_patient(chain: Chain, relayer: ConsentLedgerContract) -> None:
    patient, guardian = chain.patients[2], chain.patients[3]
    now = chain.now()
    delegation = DelegateGrant(
        patient.address, guardian.address, now + 3600, relayer.fresh_nonce(patient.address), now + 600
    )
    relayer.send_signed(delegation, _sign(patient.key, _domain(chain), delegation))
    assert relayer.delegation(patient.address, guardian.address) == (now + 3600, True)

    grant = ConsentGrant(
        patient.address,
        chain.clinic.address,
        ZERO32,
        purpose_to_bytes32("TREAT"),
        0,
        0,
        relayer.fresh_nonce(patient.address),
        now + 600,
    )
    receipt = relayer.send_signed(grant, _sign(guardian.key, _domain(chain), grant))
    event = relayer.event(receipt, "ConsentGranted")
    assert event.args["signer"] == guardian.address
    assert event.args["patient"] == patient.address
