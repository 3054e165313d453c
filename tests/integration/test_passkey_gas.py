"""A passkey account's heaviest signatures fit the relay's fixed gas limits and the ERC-1271 checks' bound.

The relay sends every signed act with a fixed gas limit (FIXED_GAS) after an ``eth_call`` with that same bound;
the hub and the auditor ask ERC-1271 within ERC1271_GAS. A passkey account tries its first passkey first, then
the others, so the heaviest signature is the last of 8 passkeys'. Measured on the real anvil with a real
account: each relayed act by that last passkey lands, and uses at most two thirds of its limit.
"""

from __future__ import annotations

import os

import pytest
from eth_account import Account

from ledger_service.bootstrap import Services
from ledger_service.chain.accounts import ACCOUNT_FIXED_GAS, ContractSignatures
from ledger_service.chain.ledger import FIXED_GAS, SIGNED_ACT_GAS
from ledger_service.codec import eip712
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import ConsentGrant, ConsentRevoke, DelegateGrant, DelegateRevoke, SignedMessage
from ledger_service.domain.passkeys import AddPasskey, Passkey, account_domain
from ledger_service.records.relaying import RelayOutcome
from ledger_service.transparency.signatures import ERC1271_GAS, erc1271_call
from tests.conftest import Chain
from tests.security.independent_client import SoftPasskey

pytestmark = pytest.mark.integration

MARGIN = 1.5  # each measured figure times this must stay within its limit


def _gas(services: Services, tx_hash: str) -> int:
    receipt = services.rpc.receipt(bytes.fromhex(tx_hash[2:]))
    assert receipt is not None and receipt.status == 1
    return receipt.gas_used


def test_the_last_of_eight_passkeys_signs_every_act_within_the_limits(services: Services, chain: Chain) -> None:
    accounts = services.hub_accounts
    first = SoftPasskey()
    account = accounts.create(Passkey.of(first.x, first.y)).address
    keys = [first]
    domain = account_domain(services.deployment.chain_id, account)
    for nonce in range(7):  # the eighth added by the seventh: every earlier passkey is tried before it
        new = SoftPasskey()
        message = AddPasskey(new.x, new.y, nonce, services.chain_time() + 600)
        tx_hash, _ = accounts.change_passkey(account, message, keys[-1].sign(eip712.digest(domain, message)))
        assert _gas(services, tx_hash) * MARGIN <= ACCOUNT_FIXED_GAS["addPasskey"]
        keys.append(new)
    assert len(accounts.describe(account).passkeys) == 8
    last = keys[-1]

    # The ERC-1271 check the hub (sign-in, batched requests) and the auditor make, within its bound.
    digest = os.urandom(32)
    signature = last.sign(digest)
    estimate = int(
        services.rpc.request(
            "eth_estimateGas", [{"to": account, "data": "0x" + erc1271_call(digest, signature).hex()}]
        ),
        16,
    )
    assert estimate * MARGIN <= ERC1271_GAS, estimate
    assert ContractSignatures(services.rpc).is_valid_signature(account, digest, signature)

    relay = services.hub_relay
    lab, clinic = chain.lab.address, chain.clinic.address
    treat = purpose_to_bytes32("TREAT")

    def relayed(message: SignedMessage) -> RelayOutcome:
        return relay.relay(message, last.sign(eip712.digest(services.domain, message)))

    def nonce() -> int:
        return services.ledger.fresh_nonce(account)

    deadline = services.chain_time() + 600
    measured: dict[str, int] = {}
    # The patient's first grant writes its nonce word from zero: the heaviest grant.
    first_grant = relayed(ConsentGrant(account, lab, ZERO32, treat, 0, 0, nonce(), deadline))
    measured["grantConsentBySig"] = _gas(services, first_grant.tx_hash)
    granted = relayed(ConsentGrant(account, clinic, ZERO32, treat, 0, 0, nonce(), deadline))
    assert granted.consent_id is not None
    revoked = relayed(ConsentRevoke(account, bytes.fromhex(granted.consent_id[2:]), nonce(), deadline))
    measured["revokeConsentBySig"] = _gas(services, revoked.tx_hash)
    guardian = Account.create().address
    measured["grantDelegateBySig"] = _gas(
        services, relayed(DelegateGrant(account, guardian, 0, nonce(), deadline)).tx_hash
    )
    measured["revokeDelegateBySig"] = _gas(
        services, relayed(DelegateRevoke(account, guardian, nonce(), deadline)).tx_hash
    )
    for name, used in measured.items():
        assert used * MARGIN <= FIXED_GAS.get(name, SIGNED_ACT_GAS), (name, used)
    assert first_grant.consent_id is not None
    patient, _from, _until, was_revoked = services.ledger.consent(bytes.fromhex(first_grant.consent_id[2:]))
    assert (patient, was_revoked) == (account, False)  # the account's consent, on chain
