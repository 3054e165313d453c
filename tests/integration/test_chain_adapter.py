"""The chain adapter against a real anvil: receipts, timeouts, errors, the event indexer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import func, select

from ledger_service.chain.indexer import EventIndexer
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import NonceManager, TransactionSender
from ledger_service.db.database import Database
from ledger_service.db.indexer_store import DbIndexStore
from ledger_service.db.models import ChainEventRow
from ledger_service.db.nonces import DbNonceLedger
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import ConsentState, consent_id
from ledger_service.errors import ChainUnavailable, TransactionReverted, TransactionTimeout
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A private anvil: these tests reorganize and pause it."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("own-chain"), chain_port=free_port())
    with Runtime(settings) as runtime:
        yield runtime


def _patient_ledger(runtime: Runtime, **sender_options: float) -> tuple[ConsentLedgerContract, str]:
    rpc = RpcClient(runtime.settings.effective_rpc_url)
    account = Account.create()
    rpc.request("anvil_setBalance", [account.address, hex(10**18)])
    codec = ledger_codec()
    sender = TransactionSender(rpc, account.key.hex(), codec, chain_id=runtime.deployment.chain_id, **sender_options)
    return ConsentLedgerContract(rpc, runtime.deployment.ledger_address, codec, sender), account.address


def _grant_direct(ledger: ConsentLedgerContract, patient: str, grantee: str, purpose: str = "TREAT") -> bytes:
    p = purpose_to_bytes32(purpose)
    ledger.grant_direct(ConsentState(consent_id(patient, grantee, ZERO32, p), patient, grantee, ZERO32, p, 0, 0))
    return consent_id(patient, grantee, ZERO32, p)


def test_custom_errors_are_decoded_into_domain_errors(own_chain: Runtime) -> None:
    ledger, patient = _patient_ledger(own_chain)
    stranger = Account.create().address
    with pytest.raises(TransactionReverted) as unknown:
        ledger.revoke_direct(consent_id(patient, stranger, ZERO32, purpose_to_bytes32("TREAT")))
    assert unknown.value.error_name == "UnknownConsent"
    assert "UnknownConsent(0x" in str(unknown.value)
    with pytest.raises(TransactionReverted) as etreat:
        ledger.grant_direct(ConsentState(b"", patient, stranger, ZERO32, purpose_to_bytes32("ETREAT"), 0, 0))
    assert etreat.value.error_name == "PurposeNotGrantable"


def test_receipt_wait_times_out_when_nothing_is_mined(own_chain: Runtime) -> None:
    ledger, patient = _patient_ledger(own_chain, receipt_timeout=1.0)
    rpc = ledger.rpc
    rpc.request("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionTimeout, match="no receipt"):
            _grant_direct(ledger, patient, own_chain.deployment.demo["providers"][0]["address"])
    finally:
        rpc.request("evm_setAutomine", [True])
        rpc.request("evm_mine", [])


def test_unreachable_node_is_chain_unavailable() -> None:
    with pytest.raises(ChainUnavailable):
        RpcClient(f"http://127.0.0.1:{free_port()}", timeout=1).block_number()


def test_nonce_manager_is_shared_per_account_and_node(own_chain: Runtime) -> None:
    rpc = RpcClient(own_chain.settings.effective_rpc_url)
    address = Account.create().address
    assert NonceManager.shared(rpc, address) is NonceManager.shared(RpcClient(rpc.url), address.lower())


def test_a_node_started_at_a_used_url_gets_fresh_nonce_counters(own_chain: Runtime) -> None:
    """An anvil started later on a port an earlier one used must not inherit that chain's counter."""
    rpc = RpcClient(own_chain.settings.effective_rpc_url)
    address = Account.create().address
    earlier = NonceManager.shared(rpc, address)
    with earlier.lock:
        earlier.take()
    NonceManager.forget_node(rpc.url)  # what AnvilProcess.start does once its node answers
    assert NonceManager.shared(rpc, address) is not earlier


class _CountingRpc(RpcClient):
    """The real client, counting the requests it sends by method."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: Counter[str] = Counter()

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.sent[method] += 1
        return super().request(method, params)


def test_a_sender_with_a_nonce_ledger_reads_the_nodes_count_once_and_again_after_an_outside_send(
    own_chain: Runtime, tmp_path: Path
) -> None:
    """The DB's count covers every process sharing it; the node's is read once, and again only after a send
    the ledger never saw (here a transaction sent from the same account behind its back) made one clash."""
    db = Database(f"sqlite:///{tmp_path / 'nonces.db'}")
    db.migrate()
    rpc = _CountingRpc(own_chain.settings.effective_rpc_url)
    account = Account.create()
    rpc.request("anvil_setBalance", [account.address, hex(10**18)])
    codec = ledger_codec()
    sender = TransactionSender(
        rpc, account.key.hex(), codec, chain_id=own_chain.deployment.chain_id, nonce_ledger=DbNonceLedger(db)
    )
    ledger = ConsentLedgerContract(rpc, own_chain.deployment.ledger_address, codec, sender)
    clinic, lab = (p["address"] for p in own_chain.deployment.demo["providers"][:2])
    _grant_direct(ledger, account.address, clinic)
    _grant_direct(ledger, account.address, clinic, "HRESCH")
    assert rpc.sent["eth_getTransactionCount"] == 1

    outside = Account.sign_transaction(
        {
            "to": account.address,
            "value": 1,
            "gas": 21_000,
            "gasPrice": int(rpc.request("eth_gasPrice"), 16),
            "nonce": int(rpc.request("eth_getTransactionCount", [account.address, "pending"]), 16),
            "chainId": own_chain.deployment.chain_id,
        },
        account.key,
    )
    rpc.request("eth_sendRawTransaction", ["0x" + outside.raw_transaction.hex()])
    rpc.sent.clear()

    _grant_direct(ledger, account.address, lab)  # its first nonce clashes with the outside send
    assert rpc.sent["eth_getTransactionCount"] == 1
    assert ledger.consent(consent_id(account.address, lab, ZERO32, purpose_to_bytes32("TREAT")))[0] == account.address


def _indexer(runtime: Runtime, db_path: Path, confirmations: int = 0) -> EventIndexer:
    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    rpc = RpcClient(runtime.settings.effective_rpc_url)
    return EventIndexer(
        rpc,
        DbIndexStore(db),
        ledger_codec(),
        runtime.deployment.ledger_address,
        start_block=runtime.deployment.block_number,
        confirmations=confirmations,
    )


def _db(indexer: EventIndexer) -> Database:
    assert isinstance(indexer.store, DbIndexStore)
    return indexer.store.db


def _event_count(indexer: EventIndexer, name: str | None = None) -> int:
    with _db(indexer).session() as s:
        query = select(func.count()).select_from(ChainEventRow)
        if name:
            query = query.where(ChainEventRow.name == name)
        return int(s.execute(query).scalar_one())


def test_indexer_follows_resumes_and_respects_confirmations(own_chain: Runtime, tmp_path: Path) -> None:
    clinic = own_chain.deployment.demo["providers"][0]["address"]
    indexer = _indexer(own_chain, tmp_path / "index.sqlite3")
    indexer.catch_up()
    granted_before = _event_count(indexer, "ConsentGranted")

    ledger, patient = _patient_ledger(own_chain)
    _grant_direct(ledger, patient, clinic)
    indexer.catch_up()
    assert _event_count(indexer, "ConsentGranted") == granted_before + 1

    # A fresh indexer on the same DB resumes from the stored cursor: nothing is indexed twice.
    resumed = _indexer(own_chain, tmp_path / "index.sqlite3")
    assert resumed.cursor() == indexer.cursor()
    _grant_direct(ledger, patient, clinic, "HPAYMT")
    resumed.catch_up()
    assert _event_count(resumed, "ConsentGranted") == granted_before + 2
    with _db(resumed).session() as s:
        rows = s.execute(select(ChainEventRow).where(ChainEventRow.patient == patient)).scalars().all()
    assert sorted(json.loads(r.args)["purpose"] for r in rows) == sorted(
        "0x" + purpose_to_bytes32(p).hex() for p in ("TREAT", "HPAYMT")
    )

    # Two blocks behind the head: the newest grants wait for their confirmations.
    deep = _indexer(own_chain, tmp_path / "deep.sqlite3", confirmations=2)
    _grant_direct(ledger, patient, clinic, "HOPERAT")
    deep.catch_up()
    head = ledger.rpc.block_number()
    assert deep.cursor()[0] == head - 2
    with _db(deep).session() as s:
        newest = s.execute(select(func.max(ChainEventRow.block_number))).scalar_one()
    assert newest <= head - 2
    on_chain = len(ledger.rpc.get_logs(ledger.address, 0, head, [ledger.codec.topic("ConsentGranted")]))
    assert _event_count(deep, "ConsentGranted") < on_chain
    ledger.rpc.request("anvil_mine", [hex(2)])
    deep.catch_up()
    assert _event_count(deep, "ConsentGranted") == on_chain


def test_indexer_rewinds_a_reorganized_branch(own_chain: Runtime, tmp_path: Path) -> None:
    clinic = own_chain.deployment.demo["providers"][0]["address"]
    indexer = _indexer(own_chain, tmp_path / "reorg.sqlite3")
    ledger, patient = _patient_ledger(own_chain)
    _grant_direct(ledger, patient, clinic, "TREAT")
    _grant_direct(ledger, patient, clinic, "HRESCH")
    indexer.catch_up()
    with _db(indexer).session() as s:
        mine = s.execute(select(func.count()).where(ChainEventRow.patient == patient)).scalar_one()
    assert mine == 2

    # Replace the last block (the HRESCH grant) with an empty one.
    ledger.rpc.request("anvil_reorg", [1, []])
    step = indexer.step()
    assert step is not None and step.rewound_to is not None
    indexer.catch_up()
    with _db(indexer).session() as s:
        names = s.execute(select(ChainEventRow.args).where(ChainEventRow.patient == patient)).scalars().all()
    assert len(names) == 1
    assert json.loads(names[0])["purpose"].startswith("0x" + b"TREAT".hex())


def test_a_fresh_nonce_is_above_every_used_one_so_a_node_counting_up_collides_with_none(
    own_chain: Runtime, tmp_path: Path
) -> None:
    """A refused message leaves a gap below used nonces (here nonce 1, between 0 and 2, and 3..299 below 300):
    a new node counting up from the lowest gap would sign with nonce 2, which the ledger refuses as used."""
    from ledger_service.node.signing import MessageNonces

    ledger, signer = _patient_ledger(own_chain)

    def invalidate(nonce: int) -> None:
        ledger.sender.transact(ledger.address, ledger.encode("invalidateNonce", nonce), action="invalidateNonce")

    assert ledger.fresh_nonce(signer) == 0
    invalidate(0)
    invalidate(2)
    assert ledger.fresh_nonce(signer) == 3
    invalidate(300)  # the next bitmap word
    assert ledger.fresh_nonce(signer) == 301
    db = Database(f"sqlite:///{tmp_path}/node.db")
    db.migrate()
    allocated = [MessageNonces(DbNonceLedger(db), ledger.fresh_nonce).allocate(signer) for _ in range(3)]
    assert allocated == [301, 302, 303]
    assert not any(ledger.nonce_used(signer, n) for n in allocated)
