"""Batched disclosure mode end to end on a private anvil (the batch head is global per contract).

Reads append to the DB's Merkle log instead of logging a transaction; each entry holds the accessor's
signed request, and the hub appends none that is not the accessor's, for this read, in time and new
(each refusal played as the attack: a request handed to the hub that it must not log); the batcher
anchors roots; receipts verify against the chain alone; the verifier reads the operator's log from the
DB; a read fails closed when the entry cannot be written; the batcher adopts an anchor whose DB row was lost.

The key custodians release a read's key shares only against the receipt of its entry (docs/architecture.md,
"Key custody"), so a read anchors its batch before any byte goes out: its only transactions are that
anchor and, on the accessor's first read, the registration of its encryption key. Entries handed to the
hub's strategy directly (no read, no release) stay pending for the batcher.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger_service.audit.cli import add_audit_commands
from ledger_service.audit.fetch import verify_receipt
from ledger_service.bootstrap import Services, admin_ledger, bootstrap
from ledger_service.chain.sender import TransactionSender
from ledger_service.codec import eip712
from ledger_service.codec.abi import DecodedEvent
from ledger_service.codec.primitives import checksum_address
from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.leaf_store import DbLeafStore, LogAppendConflict
from ledger_service.db.models import DeliveryRow, DisclosureBatchRow, DisclosureLogEntryRow
from ledger_service.db.records import anchored_record
from ledger_service.domain.codes import ZERO32, hex32, purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest, ConsentGrant, Eip712Domain, typed_data
from ledger_service.errors import ConsentDenied, PermissionDenied, SignatureError
from ledger_service.hub.batching import DisclosureBatcher
from ledger_service.node.reads import RecordContent
from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest, SignedAccess
from ledger_service.runtime import Runtime
from ledger_service.settings import ANVIL_DEV_KEYS, Settings
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog, root_of_entries
from ledger_service.transparency.receipts import Anchor, ReceiptError
from ledger_service.transparency.signatures import ecdsa_signer
from tests.conftest import free_port, fresh_database_url

pytestmark = pytest.mark.integration

BATCH_SIZE = 4
CLINIC_KEY, LAB_KEY = ANVIL_DEV_KEYS[1], ANVIL_DEV_KEYS[2]  # the demo providers' keys (anvil accounts #1, #2)
# Runtime code of an ERC-1271 wallet that accepts every signature (returns bytes32(0x1626ba7e)), and of one
# that accepts none (returns a zero word).
ACCEPTING_WALLET = "0x631626ba7e60e01b60005260206000f3"
REFUSING_WALLET = "0x60206000f3"


@dataclass
class Env:
    runtime: Runtime
    settings: Settings
    services: Services
    clinic: str  # EMERGENCY_ROLE
    lab: str  # no EMERGENCY_ROLE

    def patient(self) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.services.rpc.request("anvil_setBalance", [account.address, hex(10**18)])
        return account

    def grant(self, patient: LocalAccount, grantee: str, purpose: str = "TREAT") -> bytes:
        ledger = self.services.ledger
        grant = ConsentGrant(
            patient.address,
            grantee,
            ZERO32,
            purpose_to_bytes32(purpose),
            0,
            0,
            ledger.fresh_nonce(patient.address),
            int(self.services.rpc.get_block("latest")["timestamp"], 16) + 600,
        )
        domain = Eip712Domain(self.runtime.deployment.chain_id, self.runtime.deployment.ledger_address)
        signature = Account.sign_typed_data(patient.key, full_message=typed_data(domain, grant)).signature
        ledger.send_signed(grant, bytes(signature))
        return grant.consent_id

    def record(self, patient: str, content: bytes = b"K 4.1 mmol/L", provider: str | None = None) -> str:
        created = self.services.uploads.create(
            provider=provider or self.lab,
            patient=patient,
            category="laboratory",
            media_type="text/plain",
            content=[content],
        )
        return created.record_id

    def request(
        self,
        record_id: str,
        patient: str,
        *,
        accessor: str | None = None,
        version: int = 1,
        purpose: str = "TREAT",
        deadline: int | None = None,
    ) -> AccessRequest:
        """An access request as a node would sign it, with a nonce of its own (unordered nonces)."""
        return AccessRequest(
            patient,
            accessor or self.clinic,
            bytes.fromhex(record_id[2:]),
            version,
            purpose_to_bytes32(purpose),
            secrets.randbits(128),
            self.services.chain_time() + 600 if deadline is None else deadline,
        )

    def signed(self, request: AccessRequest, key: str = CLINIC_KEY) -> SignedAccess:
        signature = Account.sign_typed_data(key, full_message=typed_data(self.services.domain, request)).signature
        return SignedAccess(request, bytes(signature), eip712.digest(self.services.domain, request))

    def hand_to_hub(self, record_id: str, signed: SignedAccess, *, accessor: str | None = None) -> DeliveryRow:
        """Hand the hub's batched strategy a read with this signed request, as a node (honest or not) would."""
        record = anchored_record(self.services.db, record_id)
        read = DisclosureRequest(
            purpose="TREAT",
            reason=None,
            sign=lambda _resync: signed,
            precheck=None,
            refused_by="AccessNotAuthorized",
            refusal=lambda: ConsentDenied("refused"),
            still_allowed=lambda: None,
        )
        accessor = accessor or self.clinic
        return self.services.reads.disclosure.disclose(record, accessor, read, KeyedRequest(None, "h", lambda: None))

    def access_events(self, from_block: int) -> int:
        codec = self.services.ledger.codec
        head = self.services.rpc.block_number()
        if from_block > head:
            return 0
        topics = [[codec.topic("AccessLogged"), codec.topic("EmergencyAccessLogged")]]
        return len(self.services.rpc.get_logs(self.services.ledger.address, from_block, head, topics))

    def transactions(self, from_block: int) -> list[DecodedEvent]:
        """Every transaction mined from ``from_block`` on, oldest first, as the one ledger event it emitted
        (a transaction that failed, or emitted anything else, fails the test)."""
        return _mined(self.services, from_block)

    def key_registered(self, provider: str) -> bool:
        """Whether ``provider``'s encryption key is on chain (its first read registers it)."""
        return self.services.ledger.encryption_key_of(provider) != ZERO32

    def entry(self, record_id: str, patient: str) -> DeliveryRow:
        """An entry appended without a read (no key share released, so nothing anchors it but the batcher)."""
        return self.hand_to_hub(record_id, self.signed(self.request(record_id, patient)))

    def batch_events(self, from_block: int) -> list[Any]:
        codec = self.services.ledger.codec
        head = self.services.rpc.block_number()
        logs = self.services.rpc.get_logs(
            self.services.ledger.address, from_block, head, [codec.topic("DisclosureBatchAnchored")]
        )
        return [codec.decode_log(lg) for lg in logs]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("batched-mode")
    base = Settings(data_dir=data_dir, chain_port=free_port(), receipt_timeout=30.0, database_url=fresh_database_url())
    with Runtime(base) as runtime:
        settings = base.model_copy(
            update={"disclosure_mode": "batched", "batch_size": BATCH_SIZE, "batch_interval": 3600.0}
        )
        services = bootstrap(settings, runtime.deployment)
        try:
            providers = runtime.deployment.demo["providers"]
            yield Env(runtime, settings, services, providers[0]["address"], providers[1]["address"])
        finally:
            services.close()


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="consent-ledger")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _mined(services: Services, from_block: int) -> list[DecodedEvent]:
    """See :meth:`Env.transactions`."""
    rpc, codec = services.rpc, services.ledger.codec
    events: list[DecodedEvent] = []
    for number in range(from_block, rpc.block_number() + 1):
        for tx in rpc.get_block(number)["transactions"]:
            receipt = rpc.receipt(bytes.fromhex(tx[2:]))
            assert receipt is not None and receipt.status == 1, tx
            (emitted,) = receipt.logs
            event = codec.decode_log(emitted)
            assert event is not None and event.address == checksum_address(services.ledger.address), emitted
            events.append(event)
    return events


def _sends(*, registers_key: bool) -> list[str]:
    """The transactions a batched read sends, sorted by event name: its batch's anchor and, on the accessor's
    first read, its encryption key; never an AccessLogged or EmergencyAccessLogged."""
    return sorted(["DisclosureBatchAnchored"] + ["EncryptionKeySet"] * registers_key)


def _deliveries(services: Services, record_id: str) -> list[DeliveryRow]:
    with services.db.session() as s:
        return list(s.execute(select(DeliveryRow).where(DeliveryRow.record_id == record_id)).scalars())


# ----------------------------------------------------------------- the read path


def test_batched_read_logs_an_entry_and_a_delivery_but_no_access_event(env: Env) -> None:
    services = env.services
    alice = env.patient()
    consent = env.grant(alice, env.clinic)
    record_id = env.record(alice.address, b"Na 140 mmol/L")
    size, anchored = services.disclosure_log.size(), services.disclosure_log.anchored_size()
    first_read = not env.key_registered(env.clinic)
    before = services.rpc.block_number()

    content = services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    assert content.disclosure_tx == "" and content.leaf_index == size
    # No access transaction. The custodians released the key shares against the entry's receipt, so by the time
    # the read hands out its stream the batch is anchored and the receipt verifies against the chain alone.
    assert env.access_events(before + 1) == 0
    sent = env.transactions(before + 1)
    assert sorted(e.name for e in sent) == _sends(registers_key=first_read)
    (anchor,) = (e for e in sent if e.name == "DisclosureBatchAnchored")
    assert (int(anchor.args["fromIndex"]), int(anchor.args["toIndex"])) == (anchored, size + 1)
    assert bytes(anchor.args["root"]) == services.disclosure_log.merkle.root(size + 1)
    receipt = services.disclosure_log.proof(size)
    assert receipt["anchor"]["txHash"] == "0x" + anchor.tx_hash.hex()
    assert verify_receipt(receipt, services.rpc).leaf_index == size
    # The shares came sealed to the clinic's encryption key on chain: the node's own, registered once.
    assert services.custody is not None
    public_key = services.custody.encryption.file_of(env.clinic).public_key
    assert services.ledger.encryption_key_of(env.clinic) == public_key
    for registered in (e for e in sent if e.name == "EncryptionKeySet"):
        assert (registered.args["account"], bytes(registered.args["publicKey"])) == (env.clinic, public_key)
    assert content.read_all() == b"Na 140 mmol/L"

    assert services.disclosure_log.size() == size + 1
    entry = DisclosureEntry.decode(services.disclosure_log.merkle.entry(size))
    assert entry.record_id.hex() == record_id[2:] and entry.version == 1
    assert (entry.patient, entry.accessor) == (alice.address, env.clinic)
    assert entry.purpose == purpose_to_bytes32("TREAT") and entry.consent_id == consent
    assert entry.reason_hash == ZERO32 and not entry.emergency
    assert (entry.chain_id, entry.ledger) == (services.deployment.chain_id, services.deployment.ledger_address)
    assert entry.block_number == before
    assert entry.timestamp == int(services.rpc.get_block(before)["timestamp"], 16)

    (row,) = _deliveries(services, record_id)
    assert (row.leaf_index, row.tx_hash, row.log_index, row.block_number) == (size, None, None, before)
    assert (row.accessor, row.purpose, row.consent_id, row.emergency) == (
        env.clinic,
        "TREAT",
        "0x" + consent.hex(),
        False,
    )
    # The entry is the clinic's own signed request: it recovers to the clinic, and the row keeps it.
    assert isinstance(entry.request(), AccessRequest) and ecdsa_signer(entry.digest(), entry.signature) == env.clinic
    assert entry.deadline >= entry.timestamp
    assert row.request_digest == hex32(entry.digest())
    assert row.signed_request is not None and SignedAccess.from_json(row.signed_request).signature == entry.signature

    # The clinic's next read anchors its own entry and nothing else: the key is registered already.
    before = services.rpc.block_number()
    assert services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT").read_all()
    assert [e.name for e in env.transactions(before + 1)] == _sends(registers_key=False)
    assert env.access_events(before + 1) == 0
    assert verify_receipt(services.disclosure_log.proof(size + 1), services.rpc).tree_size == size + 2


@pytest.mark.parametrize(
    "attack",
    ["another key", "past deadline", "another record", "another purpose", "a version to come", "a wrong digest"],
)
def test_the_hub_appends_no_request_that_is_not_the_accessors_for_this_read(env: Env, attack: str) -> None:
    """A request handed to the hub that the clinic did not sign, or not for this read, or no longer usable,
    is refused before any entry exists: the operator cannot log a disclosure in the clinic's name."""
    services = env.services
    ivy = env.patient()
    env.grant(ivy, env.clinic)
    record_id = env.record(ivy.address)
    other_record = env.record(ivy.address, b"another")
    request = env.request(record_id, ivy.address)
    if attack == "another key":
        signed = env.signed(request, LAB_KEY)
    elif attack == "past deadline":
        signed = env.signed(replace(request, deadline=services.chain_time() - 1))
    elif attack == "another record":
        signed = env.signed(replace(request, record_id=bytes.fromhex(other_record[2:])))
    elif attack == "another purpose":
        signed = env.signed(replace(request, purpose=purpose_to_bytes32("HPAYMT")))
    elif attack == "a version to come":
        signed = env.signed(replace(request, version=2))
    else:
        signed = replace(env.signed(request), digest=keccak(b"another request"))
    size = services.disclosure_log.size()
    with pytest.raises(SignatureError) as refused:
        env.hand_to_hub(record_id, signed)
    assert refused.value.details["reason"] in {"bad-signature", "deadline-passed", "bad-request"}
    assert services.disclosure_log.size() == size and _deliveries(services, record_id) == []
    env.hand_to_hub(record_id, env.signed(request))  # the clinic's own request for this read is logged
    assert services.disclosure_log.size() == size + 1


def test_a_signed_request_is_logged_once_and_not_once_its_nonce_is_spent(env: Env) -> None:
    services = env.services
    jay = env.patient()
    env.grant(jay, env.clinic)
    record_id = env.record(jay.address)
    signed = env.signed(env.request(record_id, jay.address))
    env.hand_to_hub(record_id, signed)
    size = services.disclosure_log.size()
    with pytest.raises(SignatureError, match="already logged"):
        env.hand_to_hub(record_id, signed)  # replayed to the hub: one request, one disclosure
    # A request whose nonce is spent on chain (here the clinic cancelled it: invalidateNonce) is not logged.
    cancelled = env.signed(env.request(record_id, jay.address))
    clinic = TransactionSender(services.rpc, CLINIC_KEY, services.ledger.codec, chain_id=services.deployment.chain_id)
    clinic.transact(
        services.ledger.address,
        services.ledger.encode("invalidateNonce", cancelled.message.nonce),
        action="invalidateNonce",
    )
    with pytest.raises(SignatureError, match="already used on chain"):
        env.hand_to_hub(record_id, cancelled)
    assert services.disclosure_log.size() == size and len(_deliveries(services, record_id)) == 1


def test_a_contract_accessor_signs_under_erc1271_and_the_auditor_agrees(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that is a contract has no key: the hub asks its isValidSignature at the pinned block."""
    services = env.services
    if env.settings.database_url:
        monkeypatch.setenv("CONSENT_LEDGER_DATABASE_URL", env.settings.database_url)
    wallet = Account.create().address
    services.rpc.request("anvil_setCode", [wallet, REFUSING_WALLET])
    admin_ledger(env.settings, env.runtime.deployment, services.rpc).onboard_provider(wallet, "Wallet Clinic")
    kim = env.patient()
    env.grant(kim, wallet)
    record_id = env.record(kim.address)
    approval = b"approved by two of three officers"

    def wallet_request() -> SignedAccess:
        request = env.request(record_id, kim.address, accessor=wallet)
        return SignedAccess(request, approval, eip712.digest(services.domain, request))

    size = services.disclosure_log.size()
    with pytest.raises(SignatureError, match="ERC-1271"):
        env.hand_to_hub(record_id, wallet_request(), accessor=wallet)
    assert services.disclosure_log.size() == size
    services.rpc.request("anvil_setCode", [wallet, ACCEPTING_WALLET])
    row = env.hand_to_hub(record_id, wallet_request(), accessor=wallet)
    entry = DisclosureEntry.decode(services.disclosure_log.merkle.entry(size))
    assert (row.leaf_index, entry.accessor, entry.signature) == (size, wallet, approval)
    services.batcher.anchor_now()
    argv = ["verify", "--data-dir", str(env.settings.data_dir), "--json", "--no-progress"]
    assert _cli(argv) == 0, capsys.readouterr().out
    assert json.loads(capsys.readouterr().out)["ok"]
    assert verify_receipt(services.disclosure_log.proof(size), services.rpc).entry.accessor == wallet


def test_emergency_read_is_an_etreat_entry_and_needs_the_role(env: Env) -> None:
    services = env.services
    bob = env.patient()
    record_id = env.record(bob.address, b"blood type O-")
    size = services.disclosure_log.size()
    content = services.reads.emergency_read(accessor=env.clinic, record_id=record_id, reason="unconscious in ER")
    assert content.read_all() == b"blood type O-"
    entry = DisclosureEntry.decode(services.disclosure_log.merkle.entry(size))
    assert entry.emergency and entry.purpose == purpose_to_bytes32("ETREAT") and entry.consent_id == ZERO32
    assert entry.reason_hash == keccak(b"unconscious in ER")
    (row,) = _deliveries(services, record_id)
    assert (row.emergency, row.reason, row.leaf_index, row.consent_id) == (True, "unconscious in ER", size, None)

    with pytest.raises(PermissionDenied):
        services.reads.emergency_read(accessor=env.lab, record_id=record_id, reason="curious")
    with pytest.raises(ConsentDenied):
        services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    assert services.disclosure_log.size() == size + 1 and len(_deliveries(services, record_id)) == 1


def test_idempotent_retry_appends_once_per_release(env: Env) -> None:
    """docs/security.md, "Idempotent reads", in batched mode: a retry whose bytes never went out is
    answered by its entry; once they went out in full, the same key is a new release and a new entry."""
    services = env.services
    carol = env.patient()
    env.grant(carol, env.clinic)
    record_id = env.record(carol.address)
    size = services.disclosure_log.size()

    def read() -> RecordContent:
        return services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT", idempotency_key="k-1")

    cut = read()
    cut.chunks.close()  # the client went away before any byte
    retried = read()
    content = retried.read_all()
    assert content and cut.leaf_index == retried.leaf_index == size
    assert services.disclosure_log.size() == size + 1 and len(_deliveries(services, record_id)) == 1
    again = read()
    assert again.read_all() == content and again.leaf_index == size + 1
    assert services.disclosure_log.size() == size + 2 and len(_deliveries(services, record_id)) == 2


@pytest.mark.parametrize("stage", ["append", "after-append"])
def test_read_fails_closed_when_the_entry_cannot_be_written(
    env: Env, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    services = env.services
    dave = env.patient()
    env.grant(dave, env.clinic)
    record_id = env.record(dave.address)
    size = services.disclosure_log.size()
    store = services.disclosure_log.store
    original = store.append_in

    def failing(session: Session, entry: bytes) -> int:
        if stage == "after-append":
            original(session, entry)  # the entry and its nodes are written, then the transaction fails
        raise DatabaseError("disk full")

    monkeypatch.setattr(store, "append_in", failing)
    opened: list[object] = []
    monkeypatch.setattr(services.blobs, "open", lambda cid: opened.append(cid) or iter([b""]))
    with pytest.raises(DatabaseError):
        services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    assert opened == []  # the blob was never even fetched
    assert services.disclosure_log.size() == size and _deliveries(services, record_id) == []
    monkeypatch.undo()
    assert services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT").read_all()
    assert services.disclosure_log.size() == size + 1


# ----------------------------------------------------------------- anchoring


def test_anchor_covers_the_log_and_receipts_verify_against_the_chain(env: Env) -> None:
    services = env.services
    erin = env.patient()
    env.grant(erin, env.clinic)
    record_id = env.record(erin.address)
    for _ in range(3):  # entries no read anchored (a read anchors its own before its bytes go out)
        env.entry(record_id, erin.address)
    batcher = services.batcher
    anchored = services.disclosure_log.anchored_size()
    size = services.disclosure_log.size()
    assert size - anchored >= 3 and batcher.pending() == size - anchored
    assert all(services.disclosure_log.proof(i) == {"status": "pending", "leafIndex": i} for i in range(anchored, size))
    assert batcher.due() == (size - anchored >= BATCH_SIZE)
    before = services.rpc.block_number()
    anchor = batcher.anchor_now()
    assert anchor is not None and (anchor.from_index, anchor.to_index) == (anchored, size)
    assert [e.name for e in env.transactions(before + 1)] == ["DisclosureBatchAnchored"]

    entries = [services.disclosure_log.merkle.entry(i) for i in range(size)]
    (event,) = env.batch_events(before + 1)
    assert event is not None and event.name == "DisclosureBatchAnchored"
    assert bytes(event.args["root"]) == root_of_entries(entries) == anchor.root
    assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (anchored, size)
    assert batcher.chain_head() == (anchor.root, size)
    assert batcher.anchor_now() is None and not batcher.due()

    for leaf in range(size):
        receipt = services.disclosure_log.proof(leaf)
        assert receipt["leafIndex"] == leaf and receipt["treeSize"] <= size
        assert verify_receipt(receipt, services.rpc).leaf_index == leaf
    altered = services.disclosure_log.proof(size - 1)
    altered["entry"]["version"] = 2
    with pytest.raises(ReceiptError):
        verify_receipt(altered, services.rpc)

    # A read anchors before its bytes go out, and its one anchor covers whatever was pending beside it
    # (group commit): here an entry appended just before. Its receipt verifies offline at once.
    env.entry(record_id, erin.address)
    first_read = not env.key_registered(env.clinic)
    before = services.rpc.block_number()
    content = services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    assert content.leaf_index == size + 1
    sent = env.transactions(before + 1)
    assert sorted(e.name for e in sent) == _sends(registers_key=first_read) and env.access_events(before + 1) == 0
    (event,) = (e for e in sent if e.name == "DisclosureBatchAnchored")
    assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (size, size + 2)
    for leaf in (size, size + 1):
        receipt = services.disclosure_log.proof(leaf)
        assert receipt["treeSize"] == size + 2 and receipt["anchor"]["txHash"] == "0x" + event.tx_hash.hex()
        assert verify_receipt(receipt, services.rpc).leaf_index == leaf
    assert content.read_all() and batcher.anchor_now() is None


def test_background_batcher_anchors_every_n_entries_and_after_t_seconds(env: Env) -> None:
    services = env.services
    env.services.batcher.anchor_now()  # start from a fully anchored log
    frank = env.patient()
    env.grant(frank, env.clinic)
    record_id = env.record(frank.address)

    def wait_anchored(size: int, timeout: float = 15.0) -> float:
        started = time.monotonic()
        while services.disclosure_log.anchored_size() < size:
            assert time.monotonic() - started < timeout, "the batcher did not anchor"
            time.sleep(0.05)
        return time.monotonic() - started

    # N entries: the batcher wakes on each append (interval far away). The entries are appended without a read:
    # a read anchors its own entry before its bytes go out, so only entries nobody read yet wait for the batcher.
    stop = threading.Event()
    thread = threading.Thread(target=services.batcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        start = services.disclosure_log.size()
        before = services.rpc.block_number()
        for _ in range(BATCH_SIZE - 1):
            env.entry(record_id, frank.address)
        time.sleep(0.5)
        assert services.disclosure_log.anchored_size() == start  # N-1 entries: not yet
        assert env.transactions(before + 1) == []
        env.entry(record_id, frank.address)
        wait_anchored(start + BATCH_SIZE)
        assert services.batcher.chain_head()[1] == start + BATCH_SIZE
        (event,) = env.transactions(before + 1)  # one anchor for the N
        assert event.name == "DisclosureBatchAnchored"
        assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (start, start + BATCH_SIZE)

        # A read while the batcher runs: the read anchors its entry itself, and no entry is anchored twice.
        first_read = not env.key_registered(env.clinic)
        before = services.rpc.block_number()
        assert services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT").read_all()
        time.sleep(0.5)
        sent = env.transactions(before + 1)
        assert sorted(e.name for e in sent) == _sends(registers_key=first_read)
        (event,) = (e for e in sent if e.name == "DisclosureBatchAnchored")
        assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (
            start + BATCH_SIZE,
            start + BATCH_SIZE + 1,
        )
    finally:
        stop.set()
        services.batcher.notify()
        thread.join(timeout=10)
    assert not thread.is_alive()

    # T seconds: a second API process on the same DB, started through Services.start_background.
    quick = bootstrap(
        env.settings.model_copy(update={"batch_size": 1000, "batch_interval": 1.0}), env.runtime.deployment
    )
    try:
        quick.start_background()
        size = services.disclosure_log.size()
        before = services.rpc.block_number()
        env.entry(record_id, frank.address)  # this process's batcher does not run: only the other's anchors it
        waited = wait_anchored(size + 1)
        assert waited >= 0.5
    finally:
        quick.close()
    head_root, head_size = services.batcher.chain_head()
    assert head_size == size + 1 and head_root == services.disclosure_log.merkle.root(size + 1)
    (event,) = env.transactions(before + 1)
    assert event.name == "DisclosureBatchAnchored"
    assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (size, size + 1)


def test_batcher_adopts_an_anchor_whose_db_write_was_lost(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    services = env.services
    log = services.disclosure_log
    services.batcher.anchor_now()
    gina = env.patient()
    env.grant(gina, env.clinic)
    record_id = env.record(gina.address)
    env.entry(record_id, gina.address)  # pending, for the batcher (a read would anchor its own entry)

    def crash(anchor: Anchor) -> None:
        raise DatabaseError("process killed before the batch row was written")

    monkeypatch.setattr(log, "record_batch", crash)
    anchored, size = log.anchored_size(), log.size()
    with pytest.raises(DatabaseError):
        services.batcher.anchor_now()
    monkeypatch.undo()
    assert log.anchored_size() == anchored  # the DB missed it ...
    assert services.batcher.chain_head() == (log.merkle.root(size), size)  # ... the chain has it

    # A restarted process reconciles on start (a fresh batcher, as bootstrap builds one).
    restarted = DisclosureBatcher(
        log, services.ledger, batch_size=BATCH_SIZE, batch_interval=3600, start_block=services.deployment.block_number
    )
    assert restarted.reconcile() == 1 and restarted.reconcile() == 0
    assert log.anchored_size() == size
    with services.db.session() as s:
        row = s.get(DisclosureBatchRow, size)
        assert row is not None and (row.from_index, row.root) == (anchored, "0x" + log.merkle.root(size).hex())
    assert verify_receipt(log.proof(size - 1), services.rpc).tree_size == size

    # Lost again, and this time the next anchor finds out by itself (the contract refuses the old start):
    # a read's, which anchors its own entry before its bytes go out and so must first adopt the lost one.
    env.entry(record_id, gina.address)
    monkeypatch.setattr(log, "record_batch", crash)
    with pytest.raises(DatabaseError):
        services.batcher.anchor_now()
    monkeypatch.undo()
    assert log.anchored_size() == size and services.batcher.chain_head() == (log.merkle.root(size + 1), size + 1)
    before = services.rpc.block_number()
    content = services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    assert content.leaf_index == size + 1 and content.read_all()
    assert env.access_events(before + 1) == 0
    assert [b.to_index for b in log.batches()][-2:] == [size + 1, size + 2]
    (event,) = env.batch_events(before + 1)  # the adopted anchor was not sent again
    assert (int(event.args["fromIndex"]), int(event.args["toIndex"])) == (size + 1, size + 2)
    for leaf in (size, size + 1):
        assert verify_receipt(log.proof(leaf), services.rpc).tree_size == leaf + 1
    assert services.batcher.anchor_now() is None


# ----------------------------------------------------------------- the verifier on the DB's log


def test_verify_uses_the_db_log_and_flags_a_tampered_entry(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = env.services
    if env.settings.database_url:  # the CLI reads the DB URL from the environment, as an operator's would
        monkeypatch.setenv("CONSENT_LEDGER_DATABASE_URL", env.settings.database_url)
    henry = env.patient()
    env.grant(henry, env.clinic)
    record_id = env.record(henry.address)
    for _ in range(2):
        services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    services.batcher.anchor_now()
    services.reads.read(accessor=env.clinic, record_id=record_id, purpose="TREAT")
    services.batcher.anchor_now()  # at least two batches in this history: consistency proofs between them

    argv = ["verify", "--data-dir", str(env.settings.data_dir), "--json", "--no-progress"]
    assert _cli(argv) == 0, capsys.readouterr().out
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["summary"]["batchedDisclosures"] == services.disclosure_log.size()
    assert report["summary"]["batches"] == len(services.disclosure_log.batches()) >= 2
    assert report["summary"]["disclosures"] == 0  # not one AccessLogged event in this deployment
    assert any("disclosure log" in note for note in report["notes"])

    # Tamper with one anchored entry: its release time (word 13) moves by a second.
    leaf = services.disclosure_log.size() - 2
    with services.db.session() as s:
        original = s.execute(
            select(DisclosureLogEntryRow.entry).where(DisclosureLogEntryRow.leaf_index == leaf)
        ).scalar_one()
        at = 32 * 13 + 31
        tampered = bytes(original[:at]) + bytes([original[at] ^ 1]) + bytes(original[at + 1 :])
        s.execute(update(DisclosureLogEntryRow).where(DisclosureLogEntryRow.leaf_index == leaf).values(entry=tampered))
    try:
        assert _cli(argv) == 1
        report = json.loads(capsys.readouterr().out)
        codes = {v["code"] for v in report["violations"]}
        assert {"batch-root-mismatch", "batch-entry-time-mismatch"} <= codes, report["violations"]
    finally:
        with services.db.session() as s:
            s.execute(
                update(DisclosureLogEntryRow).where(DisclosureLogEntryRow.leaf_index == leaf).values(entry=original)
            )
    assert _cli(argv) == 0
    capsys.readouterr()


# ----------------------------------------------------------------- the store under two processes


def test_two_processes_append_to_one_db_log_without_losing_an_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    first, second = Database(url), Database(url)
    first.migrate()
    stores = [DbLeafStore(first), DbLeafStore(second)]
    ledger, patient, accessor = (Account.create().address for _ in range(3))

    def entry(n: int) -> bytes:
        return DisclosureEntry(
            31337,
            ledger,
            n.to_bytes(32, "big"),
            1,
            patient,
            accessor,
            purpose_to_bytes32("TREAT"),
            ZERO32,
            ZERO32,
            n,
            n + 600,
            n,
            n,
            b"\x01" * 65,  # the store keeps entries as they come: no signature is checked here
        ).encode()

    taken: list[int] = []
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        store = stores[k % 2]
        try:
            for j in range(20):
                with store.db.session() as s:
                    taken.append(store.append_in(s, entry(k * 100 + j)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(taken) == list(range(80))
    log = MerkleLog(DbLeafStore(second))
    entries = [log.entry(i) for i in range(log.size)]
    memory = MerkleLog.of(entries)
    for n in (1, 2, 3, 31, 64, 80):
        assert log.root(n) == memory.root(n)
    assert log.consistency_proof(13, 80) == memory.consistency_proof(13, 80)
    assert log.inclusion_proof(42, 77) == memory.inclusion_proof(42, 77)

    # The LeafStore protocol's append refuses nodes computed against a size that went stale.
    stale = MerkleLog(stores[0])
    size_before = stale.size
    with stores[1].db.session() as s:
        stores[1].append_in(s, entry(999))
    with pytest.raises(LogAppendConflict):
        stores[0].append(entry(1000), [(0, size_before, b"\x00" * 32)])
    first.dispose()
    second.dispose()
