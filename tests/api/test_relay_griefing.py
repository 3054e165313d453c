"""A contract account cannot make the relayer pay for one reverted transaction after another.

The relay checks every signed message with a gas-bounded ``eth_call`` before it sends it (hub/relay.py). An ECDSA
signature answers that check and the mined transaction alike; an ERC-1271 contract need not. The attacker here
is such a contract (contracts/test/mocks/FlippingERC1271WalletMock.sol, compiled and deployed by the test): it
accepts its owner's signatures in even blocks only, so whenever the chain's latest block is even the relay's
check passes and the transaction, mined in the next (odd) block, reverts, at the relayer's expense. Played
against the app on the real anvil: after one such revert the contract's messages are refused (429
``relay-suspended``) and nothing more is sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import ConsentGrant
from ledger_service.errors import RelaySuspended
from ledger_service.hub.relay import RevertSuspensions
from tests.api.conftest import Api, assert_problem
from tests.contract_mocks import deploy_mock

pytestmark = pytest.mark.integration


def _relayer_sent(api: Api) -> int:
    """Transactions the relayer has sent so far (its account nonce on chain)."""
    relayer = api.services.ledger.sender
    assert relayer is not None
    return int(api.services.rpc.request("eth_getTransactionCount", [relayer.address, "latest"]), 16)


def _latest_even(api: Api) -> None:
    """Mine a block if need be, so that the latest block is even: the flipping wallet's check then passes."""
    if api.services.rpc.block_number() % 2:
        api.services.rpc.request("anvil_mine", ["0x1"])
    assert api.services.rpc.block_number() % 2 == 0


def _grant(api: Api, wallet: str, owner: LocalAccount, grantee: str, nonce: int) -> dict[str, Any]:
    grant = ConsentGrant(wallet, grantee, ZERO32, purpose_to_bytes32("TREAT"), 0, 0, nonce, api.chain.now() + 600)
    return {
        "grant": {
            "patient": wallet,
            "grantee": grantee,
            "scope": "0x" + ZERO32.hex(),
            "purpose": "0x" + grant.purpose.hex(),
            "validFrom": 0,
            "validUntil": 0,
            "nonce": nonce,
            "deadline": grant.deadline,
        },
        "signature": api.sign(owner, grant),
    }


def test_a_contract_whose_signature_check_flips_on_chain_is_refused_after_one_reverted_relay(api: Api) -> None:
    owner = api.new_patient()
    wallet, _codec = deploy_mock(
        api.services.rpc, owner.key.hex(), "FlippingERC1271WalletMock", ["address"], [owner.address]
    )
    lab = api.chain.lab.address

    # The attack, first round: the check passes in the even block, the transaction reverts in the odd one.
    _latest_even(api)
    sent = _relayer_sent(api)
    first = api.client.post("/v1/consents", json=_grant(api, wallet, owner, lab, 0))
    assert_problem(first, 400, "invalid-signature")
    assert _relayer_sent(api) == sent + 1, "the first round is the one reverted transaction the relayer pays for"

    # Every later round, whatever the message and the route: refused before anything is sent.
    _latest_even(api)
    for attempt, (route, body) in enumerate(
        [
            ("/v1/consents", _grant(api, wallet, owner, lab, 1)),
            ("/v1/consents", _grant(api, wallet, owner, api.chain.clinic.address, 2)),
        ]
    ):
        refused = api.client.post(route, json=body)
        problem = assert_problem(refused, 429, "relay-suspended")
        assert wallet in str(problem["detail"]) and "reverted on chain" in str(problem["detail"]), problem
        assert problem["reason"] == "reverted-after-check", problem
        assert int(refused.headers["Retry-After"]) > 0, attempt
    again = _grant(api, wallet, owner, lab, 3)
    relayed = api.client.post(
        "/v1/relay", json={"primaryType": "ConsentGrant", "message": again["grant"], "signature": again["signature"]}
    )
    assert_problem(relayed, 429, "relay-suspended")
    assert _relayer_sent(api) == sent + 1, "a suspended contract made the relayer send again"
    assert not api.services.ledger.is_authorized(wallet, lab, ZERO32, purpose_to_bytes32("TREAT"))

    # Nobody else is held up: an ordinary patient's grant is relayed as before.
    patient = api.new_patient()
    assert api.grant(patient, lab)


def test_a_suspension_lasts_its_period_only() -> None:
    """The period is the setting's (``relay_revert_suspension``); after it the chain judges the party again."""
    now = [1000.0]
    suspensions = RevertSuspensions(60.0, clock=lambda: now[0])
    suspensions.suspend("0xA", "reverted")
    with pytest.raises(RelaySuspended, match="60 s more: reverted") as refused:
        suspensions.check("0xA")
    assert refused.value.details["retry_after"] == 60
    now[0] += 59.5
    with pytest.raises(RelaySuspended, match="1 s more"):
        suspensions.check("0xA")
    now[0] += 1
    suspensions.check("0xA")  # over: judged by the chain again
    suspensions.check("0xB")
