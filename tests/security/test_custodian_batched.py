"""Key custodians release a share against a batched disclosure's receipt only if the chain bears it out.

In batched mode a disclosure is an entry of the operator's Merkle log (the accessor's signed request) whose root
the operator anchors on chain; the chain itself judges nothing of the entry. Three ``consent-ledger serve
custodian`` processes (2-of-3) beside a hub that discloses in batches (one second apart). The test plays the
clinic's node with its own code (the helpers of tests/security/test_custodian.py): it deposits the shares of a
version it anchors through the hub's relay, reads the record through the hub, which logs the signed request in
its disclosure log (its own node holds no key of that version, so the read itself releases nothing), takes the
receipt from the patient's accounting once the batch is anchored, and asks the custodians for the shares with it.

The attacks: a receipt of another accessor's, record's or version's access; a tampered proof, or an entry the log
never held pinned to a real anchor; an anchor that is not final yet; a record erased since. Then forgeries, by an
operator whose batch-anchoring key (CUSTODIAN_ROLE) roots a log of its own making, of entries that the accessor
signed but the ledger would not have allowed at their block: before the consent was granted, with another consent
than the one in force, a break-glass access by a provider without EMERGENCY_ROLE or without a reason, a version
not anchored yet, an entry dated after its anchor; and a log anchored by another contract than the ledger. The
forgeries come last in this module: once the operator's forged root is the chain's batch head, the hub's own
batches no longer extend it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_utils import keccak

from ledger_service.chain.deploy import deploy_ledger
from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.sender import TransactionSender
from ledger_service.codec import eip712
from ledger_service.crypto.key_shares import open_share
from ledger_service.crypto.shamir import combine, split
from ledger_service.domain.codes import ZERO32
from ledger_service.domain.consent import AccessRequest, Eip712Domain, EmergencyAccessRequest
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.receipts import Anchor, make_receipt
from tests.faults.harness import ADMIN_KEY, CLINIC, CLINIC_KEY, LAB, LAB_KEY, ApiServer, Node, Served
from tests.security.independent_client import (
    ANVIL_KEYS,
    Chain,
    LedgerApi,
    bytes32_text,
    call_data,
    cid_bytes,
    consent_id_of,
    hex0x,
    unhex,
    words,
)
from tests.security.test_custodian import PATIENT, PATIENT_KEY, Provider, _custodian, record_id_of, refused

pytestmark = pytest.mark.timeout(900)

# A second batch-anchoring key of the operator's (CUSTODIAN_ROLE, like the hub's relayer): the forger.
OPERATOR_KEY = ANVIL_KEYS[8]
OPERATOR = Account.from_key(OPERATOR_KEY).address
CUSTODIAN_ROLE = bytes(keccak(b"CUSTODIAN_ROLE"))
TREAT = unhex(bytes32_text("TREAT"))
CLINIC_CONSENT = unhex(consent_id_of(PATIENT, CLINIC, hex0x(ZERO32), bytes32_text("TREAT")))
LAB_CONSENT = unhex(consent_id_of(PATIENT, LAB, hex0x(ZERO32), bytes32_text("TREAT")))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("chain")).start()
    assert node.deployment is not None
    rpc = Chain(node.url)
    granted = rpc.send(
        ADMIN_KEY,
        node.deployment.ledger_address,
        call_data("grantRole", ("bytes32", "address"), (CUSTODIAN_ROLE, OPERATOR)),
    )
    assert int(granted["status"], 16) == 1
    rpc.close()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def hub(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The hub with its node in one process (batched mode keeps its log there), anchoring a batch each second."""
    assert chain.deployment is not None
    server = ApiServer(
        tmp_path_factory.mktemp("hub"), chain.url, chain.deployment, disclosure_mode="batched", batch_interval=1
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def custodians(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    started = [_custodian(chain, tmp_path_factory.mktemp(f"custodian{i}"), i).start() for i in (1, 2, 3)]
    yield started
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def api(hub: ApiServer, chain: Node) -> Iterator[LedgerApi]:
    client = LedgerApi(hub.url, chain.url)
    yield client
    client.close()


def release(custodian: Served, record_id: bytes, version: int, accessor: str, receipt: Any) -> httpx.Response:
    body = {"recordId": hex0x(record_id), "version": version, "accessor": accessor, "receipt": receipt}
    return httpx.post(custodian.url + "/v1/custodian/release", json=body, timeout=30)


def anchored_record(clinic: Provider, custodians: list[Served]) -> tuple[bytes, bytes]:
    """A version the clinic anchors through the hub's relay once each custodian holds its share of the data key."""
    api = clinic.api
    headers = api.sign_in(Account.from_key(clinic.key))
    blob = api.http.post("/v1/blobs", content=os.urandom(256), headers=headers).raise_for_status().json()
    salt = secrets.token_bytes(32)
    record_id = record_id_of(salt)
    data_key = secrets.token_bytes(32)
    for custodian, share in zip(custodians, split(data_key, 2, 3), strict=True):
        assert clinic.deposit(custodian, record_id, 1, share).status_code == 201
    assert clinic.anchor(salt, cid_bytes(blob["cid"]))["recordId"] == hex0x(record_id)
    return record_id, data_key


def read_through_hub(api: LedgerApi, record_id: bytes, *, reason: str | None = None) -> None:
    """The clinic reads the record through the hub: the hub logs the signed request in its disclosure log before
    it looks for the key, which its own node never had (the version's key is with the custodians)."""
    headers = api.sign_in(Account.from_key(CLINIC_KEY))
    if reason is None:
        response = api.http.get(f"/v1/records/{hex0x(record_id)}", params={"purpose": "TREAT"}, headers=headers)
    else:
        response = api.http.post(
            f"/v1/records/{hex0x(record_id)}/emergency-access", json={"reason": reason}, headers=headers
        )
    assert response.status_code != 200, "the hub's node released a version whose key it never held"


FORGED: list[bool] = []  # set once the operator's forged root is the chain's batch head


def receipt_of(api: LedgerApi, record_id: bytes, *, emergency: bool = False, timeout: float = 60) -> dict[str, Any]:
    """The receipt of the clinic's disclosure of the record, from the patient's accounting, once anchored."""
    assert not FORGED, "the hub's batches no longer extend the chain's head: run this before the forgeries"
    headers = api.sign_in(Account.from_key(PATIENT_KEY))
    deadline = time.monotonic() + timeout
    while True:
        listed = api.http.get(f"/v1/patients/{PATIENT}/disclosures", headers=headers).raise_for_status().json()
        mine = [
            d
            for d in listed["disclosures"]
            if d["recordId"] == hex0x(record_id) and d["accessor"] == CLINIC and d["emergency"] == emergency
        ]
        assert len(mine) <= 1, mine
        if mine and mine[0]["leafIndex"] is not None and (mine[0]["proof"] or {}).get("format"):
            return dict(mine[0]["proof"])
        assert time.monotonic() < deadline, f"no anchored receipt for 0x{record_id.hex()} yet: {mine}"
        time.sleep(0.5)


def opened(clinic: Provider, response: httpx.Response, record_id: bytes) -> tuple[int, bytes]:
    assert response.status_code == 200, response.text
    index = int(response.json()["index"])
    return index, open_share(
        unhex(response.json()["sealedShare"]), clinic.slot(record_id, 1, index), clinic.encryption_key
    )


@pytest.fixture(scope="module")
def story(api: LedgerApi, custodians: list[Served]) -> dict[str, Any]:
    """A record version whose data key the custodians hold, read through the hub with consent and by break-glass."""
    clinic = Provider(api, CLINIC_KEY)
    lab = Provider(api, LAB_KEY)  # an encryption key of its own: a share sealed to the lab would open for it
    grant = api.consent_grant(PATIENT, CLINIC, nonce=api.nonce(PATIENT))
    granted = api.relay("ConsentGrant", grant, api.signed(PATIENT_KEY, "ConsentGrant", grant))
    assert granted.status_code == 200, granted.text
    record_id, data_key = anchored_record(clinic, custodians)
    read_through_hub(api, record_id)
    read_through_hub(api, record_id, reason="Unconscious patient in the emergency department")
    return {
        "clinic": clinic,
        "lab": lab,
        "record_id": record_id,
        "data_key": data_key,
        "receipt": receipt_of(api, record_id),
        "emergency_receipt": receipt_of(api, record_id, emergency=True),
        "grant_tx": granted.json()["txHash"],
    }


def test_any_two_custodians_release_against_a_receipt_what_rebuilds_the_data_key(
    story: dict[str, Any], custodians: list[Served]
) -> None:
    clinic: Provider = story["clinic"]
    record_id = story["record_id"]
    for receipt in (story["receipt"], story["emergency_receipt"]):
        shares = dict(opened(clinic, release(c, record_id, 1, CLINIC, receipt), record_id) for c in custodians)
        assert sorted(shares) == [1, 2, 3]
        for pair in ((1, 2), (1, 3), (2, 3)):
            assert combine([shares[i] for i in pair]) == story["data_key"]
    assert story["emergency_receipt"]["entry"]["purpose"] == "ETREAT"


def test_a_release_takes_exactly_one_kind_of_evidence(story: dict[str, Any], custodians: list[Served]) -> None:
    record_id = hex0x(story["record_id"])
    url = custodians[0].url + "/v1/custodian/release"
    base = {"recordId": record_id, "version": 1, "accessor": CLINIC}
    both = {**base, "receipt": story["receipt"], "disclosureTx": story["grant_tx"]}
    for body in (base, both):
        refused(httpx.post(url, json=body, timeout=30), 400, "exactly one of disclosureTx")
    # A receipt that is not one (another format) is bad input, not a refusal.
    other = {**story["receipt"], "format": "consent-ledger-disclosure-receipt/1"}
    refused(httpx.post(url, json={**base, "receipt": other}, timeout=30), 400, "receipt format")


def test_a_receipt_of_another_access_is_refused(story: dict[str, Any], custodians: list[Served]) -> None:
    record_id, receipt = story["record_id"], story["receipt"]
    custodian = custodians[0]
    # The lab (with an encryption key of its own) presents the clinic's receipt as its own.
    refused(release(custodian, record_id, 1, LAB, receipt), 403, f"access by {LAB}", f"access by {CLINIC}")
    # Another version, another record than the entry names.
    refused(release(custodian, record_id, 2, CLINIC, receipt), 403, "to version 2", "to version 1")
    refused(release(custodian, secrets.token_bytes(32), 1, CLINIC, receipt), 403, f"record 0x{record_id.hex()}")


def test_a_tampered_receipt_is_refused(story: dict[str, Any], custodians: list[Served], api: LedgerApi) -> None:
    record_id, receipt = story["record_id"], story["emergency_receipt"]
    custodian = custodians[0]
    assert receipt["inclusionProof"], "the second entry of the log has a proof to tamper with"
    # One bit of the proof flipped.
    proof = [*receipt["inclusionProof"]]
    proof[0] = hex0x(bytes([unhex(proof[0])[0] ^ 1]) + unhex(proof[0])[1:])
    tampered = {**receipt, "inclusionProof": proof}
    refused(release(custodian, record_id, 1, CLINIC, tampered), 403, "not proven to be in the anchored log")
    # The clinic signs an access the hub never logged (a fresh nonce) and pins it to the real batch's anchor.
    entry = signed_entry(api, CLINIC_KEY, record_id, block=int(receipt["entry"]["blockNumber"]))
    unlogged = {**story["receipt"], "entry": entry.to_json()}
    refused(release(custodian, record_id, 1, CLINIC, unlogged), 403, "not proven to be in the anchored log")
    # The anchor swapped for a transaction of the ledger that anchored nothing (the patient's consent grant).
    swapped = {**story["receipt"], "anchor": {**story["receipt"]["anchor"], "txHash": story["grant_tx"]}}
    refused(release(custodian, record_id, 1, CLINIC, swapped), 403, "expected DisclosureBatchAnchored")


def test_a_receipt_whose_anchor_is_not_final_is_refused_until_it_is(
    story: dict[str, Any], api: LedgerApi, chain: Node, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clinic: Provider = story["clinic"]
    strict = _custodian(chain, tmp_path_factory.mktemp("strict"), 1, CONFIRMATIONS="3")
    strict.start()
    try:
        salt = secrets.token_bytes(32)
        record_id = record_id_of(salt)
        share = split(secrets.token_bytes(32), 2, 3)[0]
        assert clinic.deposit(strict, record_id, 1, share).status_code == 201
        headers = api.sign_in(Account.from_key(CLINIC_KEY))
        blob = api.http.post("/v1/blobs", content=os.urandom(64), headers=headers).raise_for_status().json()
        clinic.anchor(salt, cid_bytes(blob["cid"]))
        read_through_hub(api, record_id)
        receipt = receipt_of(api, record_id)
        anchored_at = int(receipt["anchor"]["blockNumber"])
        assert chain.rpc.block_number() - anchored_at < 3
        refused(release(strict, record_id, 1, CLINIC, receipt), 403, "anchoring transaction", "not final")
        chain.mine(3)
        assert opened(clinic, release(strict, record_id, 1, CLINIC, receipt), record_id)[1] == share
    finally:
        strict.stop()


def test_after_erasure_a_receipt_releases_nothing(
    story: dict[str, Any], api: LedgerApi, custodians: list[Served]
) -> None:
    clinic: Provider = story["clinic"]
    record_id, _data_key = anchored_record(clinic, custodians)
    read_through_hub(api, record_id)
    receipt = receipt_of(api, record_id)
    assert release(custodians[0], record_id, 1, CLINIC, receipt).status_code == 200
    erase = api.record_erase(PATIENT, hex0x(record_id), nonce=api.nonce(PATIENT))
    response = api.relay("RecordErase", erase, api.signed(PATIENT_KEY, "RecordErase", erase))
    assert response.status_code == 200, response.text
    for custodian in custodians:
        refused(release(custodian, record_id, 1, CLINIC, receipt), 410, "erased")


# ----------------------------------------------------------------- forgeries (last: they move the batch head)


def signed_entry(
    api: LedgerApi,
    key: str,
    record_id: bytes,
    *,
    block: int,
    version: int = 1,
    consent_id: bytes = CLINIC_CONSENT,
    reason_hash: bytes | None = None,
    timestamp: int | None = None,
    ledger: str | None = None,
) -> DisclosureEntry:
    """A disclosure-log entry of an access request signed by ``key``'s account (break-glass with a
    ``reason_hash``), dated ``block``; nothing checked it."""
    accessor = Account.from_key(key).address
    domain = Eip712Domain(api.chain_id, ledger or api.ledger)
    request: AccessRequest | EmergencyAccessRequest
    nonce, deadline = secrets.randbits(128), api.deadline()
    if reason_hash is None:
        request = AccessRequest(PATIENT, accessor, record_id, version, TREAT, nonce, deadline)
    else:
        request = EmergencyAccessRequest(PATIENT, accessor, record_id, version, reason_hash, nonce, deadline)
    signature = bytes(Account.unsafe_sign_hash(eip712.digest(domain, request), key).signature)
    if timestamp is None:
        timestamp = int(api.chain.request("eth_getBlockByNumber", [hex(block), False])["timestamp"], 16)
    return DisclosureEntry.of_request(
        request, signature, domain=domain, consent_id=consent_id, block_number=block, timestamp=timestamp
    )


def forge(
    api: LedgerApi, entries: list[DisclosureEntry], *, anchorer: str = OPERATOR_KEY, ledger: str | None = None
) -> list[dict[str, Any]]:
    """Root a log of the forger's making (filler leaves up to the chain's batch head, then ``entries``), anchor it
    with ``anchorer``'s CUSTODIAN_ROLE on ``ledger``, and hand out a receipt of each entry."""
    ledger = ledger or api.ledger
    size = int.from_bytes(words(api.chain.call(ledger, call_data("disclosureBatchHead", (), ())))[1], "big")
    log = MerkleLog.of([os.urandom(64) for _ in range(size)] + [e.encode() for e in entries])
    root = log.root()
    sent = api.chain.send(
        anchorer, ledger, call_data("anchorDisclosureBatch", ("bytes32", "uint64", "uint64"), (root, size, log.size))
    )
    assert int(sent["status"], 16) == 1, sent
    if ledger == api.ledger:
        FORGED.append(True)
    anchor = Anchor(root, unhex(sent["transactionHash"]), int(sent["blockNumber"], 16), size, log.size)
    return [
        make_receipt(log, size + i, chain_id=api.chain_id, contract=ledger, anchor=anchor).to_json()
        for i in range(len(entries))
    ]


def test_a_forged_log_releases_only_what_the_ledger_allowed_at_the_entry_block(
    story: dict[str, Any], api: LedgerApi, custodians: list[Served]
) -> None:
    record_id = story["record_id"]
    custodian = custodians[0]
    before_lab_consent = api.chain.block_number()
    grant = api.consent_grant(PATIENT, LAB, nonce=api.nonce(PATIENT))
    granted = api.relay("ConsentGrant", grant, api.signed(PATIENT_KEY, "ConsentGrant", grant))
    assert granted.status_code == 200, granted.text
    now = api.chain.block_number()
    ok_clinic, ok_lab, before_consent, other_consent, no_role, no_reason = forge(
        api,
        [
            # Allowed: what a forged log may carry is what the ledger allowed (these two are released).
            signed_entry(api, CLINIC_KEY, record_id, block=now),
            signed_entry(api, LAB_KEY, record_id, block=now, consent_id=LAB_CONSENT),
            # The lab's consent, one block before the patient granted it.
            signed_entry(api, LAB_KEY, record_id, block=before_lab_consent, consent_id=LAB_CONSENT),
            # The lab, in force, named under another consent than the one that authorized it (the clinic's).
            signed_entry(api, LAB_KEY, record_id, block=now, consent_id=CLINIC_CONSENT),
            # Break-glass by the lab, which holds no EMERGENCY_ROLE; by the clinic, with no reason at all.
            signed_entry(api, LAB_KEY, record_id, block=now, consent_id=ZERO32, reason_hash=keccak(b"urgent")),
            signed_entry(api, CLINIC_KEY, record_id, block=now, consent_id=ZERO32, reason_hash=ZERO32),
        ],
    )
    assert release(custodian, record_id, 1, CLINIC, ok_clinic).status_code == 200
    assert release(custodian, record_id, 1, LAB, ok_lab).status_code == 200
    refused(
        release(custodian, record_id, 1, LAB, before_consent),
        403,
        f"0x{LAB_CONSENT.hex()}",
        f"block {before_lab_consent}",
        "consent there is none",
    )
    refused(
        release(custodian, record_id, 1, LAB, other_consent),
        403,
        f"expected the entry's consent 0x{CLINIC_CONSENT.hex()}",
        f"consent there is 0x{LAB_CONSENT.hex()}",
    )
    refused(release(custodian, record_id, 1, LAB, no_role), 403, "EMERGENCY_ROLE")
    refused(release(custodian, record_id, 1, CLINIC, no_reason), 403, "reason")


def test_a_forged_entry_of_a_version_not_yet_anchored_is_refused(
    story: dict[str, Any], api: LedgerApi, custodians: list[Served]
) -> None:
    clinic: Provider = story["clinic"]
    record_id = story["record_id"]
    custodian = custodians[0]
    # The clinic deposits the shares of its next version (allowed: it is about to anchor it) and a forged log
    # says it was disclosed already, under the consent in force.
    assert clinic.deposit(custodian, record_id, 2, split(os.urandom(32), 2, 3)[0]).status_code == 201
    (early,) = forge(api, [signed_entry(api, CLINIC_KEY, record_id, block=api.chain.block_number(), version=2)])
    refused(release(custodian, record_id, 2, CLINIC, early), 403, "names version 2", "versions 1 to 1")


def test_a_forged_entry_dated_after_its_anchor_is_refused(
    story: dict[str, Any], api: LedgerApi, custodians: list[Served]
) -> None:
    record_id = story["record_id"]
    head = api.chain.block_number()
    # The entry names block head + 2 and the time that block will have: the anchor lands in head + 1.
    at = int(api.chain.request("eth_getBlockByNumber", ["latest", False])["timestamp"], 16) + 30
    (future,) = forge(api, [signed_entry(api, CLINIC_KEY, record_id, block=head + 2, timestamp=at)])
    assert int(future["anchor"]["blockNumber"]) == head + 1
    api.chain.request("evm_setNextBlockTimestamp", [at])
    api.chain.request("anvil_mine", ["0x1"])
    refused(release(custodians[0], record_id, 1, CLINIC, future), 403, f"block {head + 2}", "after its batch")


def test_a_log_anchored_by_another_contract_is_refused(
    story: dict[str, Any], api: LedgerApi, chain: Node, custodians: list[Served]
) -> None:
    record_id = story["record_id"]
    # The clinic deploys a ledger of its own (it is that one's admin and batch anchorer) and roots there an
    # entry of an access its consent on the real ledger allows: nothing of it is in the real ledger's log.
    sender = TransactionSender(chain.rpc, CLINIC_KEY, ledger_codec(), chain_id=api.chain_id)
    own = deploy_ledger(sender, CLINIC).ledger_address
    entry = signed_entry(api, CLINIC_KEY, record_id, block=api.chain.block_number(), ledger=own)
    (elsewhere,) = forge(api, [entry], anchorer=CLINIC_KEY, ledger=own)
    refused(release(custodians[0], record_id, 1, CLINIC, elsewhere), 403, f"expected a receipt of ledger {api.ledger}")
