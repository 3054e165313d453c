"""Key custodians release a share only against the chain, and only to the accessor it names.

Three ``consent-ledger serve custodian`` processes (2-of-3), each with its own data dir and its own view of the
chain, beside a hub. The test plays the clinic's node with its own code: it splits a data key, seals each share
to a custodian's published key, deposits it signed by the clinic, anchors the version and logs an access through
the hub's relay, and asks the custodians for the shares with the disclosure's transaction. Every attack is then
played against the running custodians: another accessor, record or version than the transaction logged; a
made-up transaction, one that is not a disclosure, one that is not final yet; a share opened by anyone but the
accessor; a deposit by someone other than the author, or after the anchor; a release after the patient's
erasure, and from a custodian restored from a backup taken before it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_utils import keccak

from ledger_service.crypto.key_shares import ShareSlot, deposit_digest, open_share, public_key_bytes, seal_share
from ledger_service.crypto.shamir import combine, split
from ledger_service.errors import DecryptionError
from tests.faults.harness import ADMIN_KEY, CLINIC, CLINIC_KEY, LAB, LAB_KEY, Node, Served, adopt_deployment
from tests.security.independent_client import LedgerApi, abi_encode, cid_bytes, hex0x, unhex

pytestmark = pytest.mark.timeout(600)

PATIENT_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # anvil #9
PATIENT = Account.from_key(PATIENT_KEY).address


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("chain")).start()
    yield node
    node.stop()


def _custodian(chain: Node, data_dir: Path, index: int, **settings: str) -> Served:
    assert chain.deployment is not None
    adopt_deployment(data_dir, chain.deployment)
    return Served("custodian", data_dir, {"RPC_URL": chain.url, "CUSTODIAN_INDEX": str(index), **settings})


@pytest.fixture(scope="module")
def hub(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("hub")
    assert chain.deployment is not None
    adopt_deployment(data_dir, chain.deployment)
    served = Served("hub", data_dir, {"RPC_URL": chain.url, "DEPLOYER_KEY": ADMIN_KEY, "RELAYER_KEY": ADMIN_KEY})
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def custodians(chain: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    started = [_custodian(chain, tmp_path_factory.mktemp(f"custodian{i}"), i).start() for i in (1, 2, 3)]
    yield started
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def api(hub: Served, chain: Node) -> Iterator[LedgerApi]:
    client = LedgerApi(hub.url, chain.url)
    yield client
    client.close()


class Provider:
    """What the clinic's node does, in the test's own code: its X25519 key on chain, deposits and anchors."""

    def __init__(self, api: LedgerApi, key: str) -> None:
        self.api = api
        self.key = key
        self.address = Account.from_key(key).address
        self.encryption_key = X25519PrivateKey.generate()
        message = {
            "account": self.address,
            "publicKey": hex0x(public_key_bytes(self.encryption_key)),
            "nonce": api.nonce(self.address),
            "deadline": api.deadline(),
        }
        response = api.relay("EncryptionKey", message, api.signed(key, "EncryptionKey", message))
        assert response.status_code == 200, response.text

    def slot(self, record_id: bytes, version: int, index: int) -> ShareSlot:
        return ShareSlot(self.api.chain_id, self.api.ledger, record_id, version, index)

    def deposit(
        self, custodian: Served, record_id: bytes, version: int, share: bytes, *, signer_key: str | None = None
    ) -> httpx.Response:
        info = httpx.get(custodian.url + "/v1/custodian").raise_for_status().json()
        recipient = unhex(info["publicKey"])
        slot = self.slot(record_id, version, int(info["index"]))
        sealed = seal_share(share, slot, recipient)
        digest = deposit_digest(
            self.api.eip712.domain_separator(), slot, patient=PATIENT, author=self.address, sealed=sealed
        )
        signature = Account.unsafe_sign_hash(digest, signer_key or self.key).signature
        body = {
            "patient": PATIENT,
            "author": self.address,
            "recordId": hex0x(record_id),
            "version": version,
            "recipient": hex0x(recipient),
            "sealedShare": hex0x(sealed),
            "signature": hex0x(bytes(signature)),
        }
        return httpx.post(custodian.url + "/v1/custodian/shares", json=body, timeout=30)

    def anchor(self, salt: bytes, cid: bytes) -> dict[str, Any]:
        message = {
            "patient": PATIENT,
            "author": self.address,
            "category": self.api.categories["laboratory"],
            "salt": hex0x(salt),
            "cid": hex0x(cid),
            "commitment": hex0x(secrets.token_bytes(32)),
            "nonce": self.api.nonce(self.address),
            "deadline": self.api.deadline(),
        }
        response = self.api.relay("RecordAnchor", message, self.api.signed(self.key, "RecordAnchor", message))
        assert response.status_code == 201, response.text
        return dict(response.json())

    def access(self, record_id: bytes) -> str:
        message = self.api.access_request(PATIENT, self.address, hex0x(record_id), nonce=self.api.nonce(self.address))
        response = self.api.relay("AccessRequest", message, self.api.signed(self.key, "AccessRequest", message))
        assert response.status_code == 200, response.text
        return str(response.json()["txHash"])


def release(custodian: Served, record_id: bytes, version: int, accessor: str, tx: str) -> httpx.Response:
    body = {"recordId": hex0x(record_id), "version": version, "accessor": accessor, "disclosureTx": tx}
    return httpx.post(custodian.url + "/v1/custodian/release", json=body, timeout=30)


def record_id_of(salt: bytes, author: str = CLINIC) -> bytes:
    return bytes(keccak(abi_encode(("address", "address", "bytes32"), (PATIENT, author, salt))))


def refused(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = str(response.json()["detail"])
    for word in words:
        assert word in detail, detail
    return detail


@pytest.fixture(scope="module")
def story(api: LedgerApi, hub: Served, custodians: list[Served]) -> dict[str, Any]:
    """A record version whose data key the three custodians hold, with a consented access logged on chain."""
    clinic = Provider(api, CLINIC_KEY)
    grant = api.consent_grant(PATIENT, CLINIC, nonce=api.nonce(PATIENT))
    granted = api.relay("ConsentGrant", grant, api.signed(PATIENT_KEY, "ConsentGrant", grant))
    assert granted.status_code == 200, granted.text
    headers = api.sign_in(Account.from_key(CLINIC_KEY))
    blob = api.http.post("/v1/blobs", content=os.urandom(512), headers=headers).raise_for_status().json()
    salt = secrets.token_bytes(32)
    record_id = record_id_of(salt)
    data_key = secrets.token_bytes(32)
    shares = split(data_key, 2, 3)
    for custodian, share in zip(custodians, shares, strict=True):
        assert clinic.deposit(custodian, record_id, 1, share).status_code == 201
    anchored = clinic.anchor(salt, cid_bytes(blob["cid"]))
    assert anchored["recordId"] == hex0x(record_id) and anchored["version"] == 1
    return {
        "clinic": clinic,
        "record_id": record_id,
        "data_key": data_key,
        "tx": clinic.access(record_id),
        "grant_tx": granted.json()["txHash"],
    }


def test_any_two_custodians_release_what_rebuilds_the_data_key(story: dict[str, Any], custodians: list[Served]) -> None:
    clinic: Provider = story["clinic"]
    record_id = story["record_id"]
    opened = {}
    for custodian in custodians:
        response = release(custodian, record_id, 1, CLINIC, story["tx"])
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"  # a sealed share is for its accessor alone
        index = int(response.json()["index"])
        sealed = unhex(response.json()["sealedShare"])
        opened[index] = open_share(sealed, clinic.slot(record_id, 1, index), clinic.encryption_key)
    assert sorted(opened) == [1, 2, 3]
    for pair in ((1, 2), (1, 3), (2, 3)):
        assert combine([opened[i] for i in pair]) == story["data_key"]
    # One share alone is not the key, and a single custodian's share is all one custodian ever gives out.
    assert all(share[:32] != story["data_key"] for share in opened.values())


def test_a_release_the_transaction_did_not_log_is_refused(story: dict[str, Any], custodians: list[Served]) -> None:
    record_id, tx = story["record_id"], story["tx"]
    custodian = custodians[0]
    # Another accessor than the one the transaction names (the lab was never given access).
    refused(release(custodian, record_id, 1, LAB, tx), 403, "expected transaction", LAB)
    # Another version, another record.
    refused(release(custodian, record_id, 2, CLINIC, tx), 403, "version 2")
    refused(release(custodian, secrets.token_bytes(32), 1, CLINIC, tx), 403, "logged AccessLogged")
    # A transaction nobody sent.
    refused(release(custodian, record_id, 1, CLINIC, hex0x(secrets.token_bytes(32))), 403, "has no transaction")
    # A real transaction of the ledger that is not a disclosure: the patient's consent grant.
    refused(release(custodian, record_id, 1, CLINIC, story["grant_tx"]), 403, "logged no disclosure")


def test_a_disclosure_that_is_not_final_is_refused_until_it_is(
    story: dict[str, Any], chain: Node, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clinic: Provider = story["clinic"]
    strict = _custodian(chain, tmp_path_factory.mktemp("strict"), 1, CONFIRMATIONS="3")
    strict.start()
    try:
        salt = secrets.token_bytes(32)
        record_id = record_id_of(salt)
        assert clinic.deposit(strict, record_id, 1, split(secrets.token_bytes(32), 2, 3)[0]).status_code == 201
        headers = clinic.api.sign_in(Account.from_key(CLINIC_KEY))
        blob = clinic.api.http.post("/v1/blobs", content=os.urandom(64), headers=headers).raise_for_status().json()
        clinic.anchor(salt, cid_bytes(blob["cid"]))
        tx = clinic.access(record_id)
        refused(release(strict, record_id, 1, CLINIC, tx), 403, "not final")
        chain.mine(3)
        assert release(strict, record_id, 1, CLINIC, tx).status_code == 200
    finally:
        strict.stop()


def test_a_released_share_opens_for_the_accessor_only(story: dict[str, Any], custodians: list[Served]) -> None:
    clinic: Provider = story["clinic"]
    record_id = story["record_id"]
    response = release(custodians[1], record_id, 1, CLINIC, story["tx"])
    sealed = unhex(response.json()["sealedShare"])
    slot = clinic.slot(record_id, 1, 2)
    # Whoever carried or stored the answer (the hub, an eavesdropper, another provider, the custodian itself)
    # has some other X25519 key: none opens it.
    for other in (X25519PrivateKey.generate(), X25519PrivateKey.generate()):
        with pytest.raises(DecryptionError):
            open_share(sealed, slot, other)
    # Nor does the accessor open it as another slot (another custodian's index, version or record).
    for moved in (clinic.slot(record_id, 1, 3), clinic.slot(record_id, 2, 2), clinic.slot(bytes(32), 1, 2)):
        with pytest.raises(DecryptionError):
            open_share(sealed, moved, clinic.encryption_key)
    assert open_share(sealed, slot, clinic.encryption_key)[-1] == 2


def test_only_the_author_deposits_and_only_before_the_anchor(
    story: dict[str, Any], api: LedgerApi, custodians: list[Served]
) -> None:
    clinic: Provider = story["clinic"]
    record_id = story["record_id"]
    custodian = custodians[0]
    # After the anchor, the version's shares are fixed: a replacement (even the author's) is refused.
    refused(clinic.deposit(custodian, record_id, 1, split(os.urandom(32), 2, 3)[0]), 403, "already anchored")
    # A deposit signed by someone other than the author it names.
    refused(clinic.deposit(custodian, record_id, 2, split(os.urandom(32), 2, 3)[0], signer_key=LAB_KEY), 400)
    # The lab (an active provider) deposits for the clinic's next version in its own name: kept apart, never
    # what a release of the clinic's record hands out.
    lab = Provider(api, LAB_KEY)
    refused(lab.deposit(custodian, record_id, 2, split(os.urandom(32), 2, 3)[0]), 403, "not", LAB)
    # Someone who is not a provider at all, depositing for a record of its own making.
    stranger = Provider(api, hex0x(bytes(Account.create().key)))
    refused(
        stranger.deposit(custodian, secrets.token_bytes(32), 1, split(os.urandom(32), 2, 3)[0]), 403, "not an active"
    )


def holds_key(data_dir: Path, record_id: bytes) -> bool:
    """Whether a custodian's store (read directly, as whoever holds its disk would) has the record's key."""
    with sqlite3.connect(data_dir / "custodian.sqlite3") as db:
        return db.execute("SELECT 1 FROM record_keys WHERE record_id = ?", (record_id,)).fetchone() is not None


def test_after_erasure_no_custodian_releases_even_one_restored_from_a_backup(
    api: LedgerApi, custodians: list[Served], chain: Node, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clinic = Provider(api, CLINIC_KEY)
    headers = api.sign_in(Account.from_key(CLINIC_KEY))
    blob = api.http.post("/v1/blobs", content=os.urandom(256), headers=headers).raise_for_status().json()
    salt = secrets.token_bytes(32)
    record_id = record_id_of(salt)
    for custodian, share in zip(custodians, split(os.urandom(32), 2, 3), strict=True):
        assert clinic.deposit(custodian, record_id, 1, share).status_code == 201
    clinic.anchor(salt, cid_bytes(blob["cid"]))
    tx = clinic.access(record_id)
    assert release(custodians[1], record_id, 1, CLINIC, tx).status_code == 200
    # A backup of custodian 2, taken before the erasure (its whole data dir: store, key file, deployment).
    custodians[1].stop()
    backup = tmp_path_factory.mktemp("backup") / "custodian2"
    shutil.copytree(custodians[1].data_dir, backup)
    custodians[1].start()
    assert holds_key(custodians[1].data_dir, record_id)

    erase = api.record_erase(PATIENT, hex0x(record_id), nonce=api.nonce(PATIENT))
    response = api.relay("RecordErase", erase, api.signed(PATIENT_KEY, "RecordErase", erase))
    assert response.status_code == 200, response.text
    for custodian in custodians:
        refused(release(custodian, record_id, 1, CLINIC, tx), 410, "erased")
        assert not holds_key(custodian.data_dir, record_id)

    # The backup restored as a custodian of its own: it applies the chain's erasures before it serves.
    assert holds_key(backup, record_id)
    restored = Served("custodian", backup, custodians[1].settings)
    restored.start()
    try:
        assert not holds_key(backup, record_id)
        refused(release(restored, record_id, 1, CLINIC, tx), 410, "erased")
    finally:
        restored.stop()


def test_a_custodian_says_who_it_is(custodians: list[Served]) -> None:
    infos = [httpx.get(c.url + "/v1/custodian").raise_for_status().json() for c in custodians]
    assert [i["index"] for i in infos] == [1, 2, 3]
    assert {(i["threshold"], i["total"]) for i in infos} == {(2, 3)}
    assert len({i["publicKey"] for i in infos}) == 3
    assert all(len(unhex(i["publicKey"])) == 32 for i in infos)


def test_a_custodian_refuses_a_body_too_large_to_be_a_release(custodians: list[Served]) -> None:
    body = {"recordId": hex0x(bytes(32)), "version": 1, "accessor": CLINIC, "receipt": {"entry": "x" * 2_000_000}}
    response = httpx.post(custodians[0].url + "/v1/custodian/release", json=body, timeout=30)
    refused(response, 413)
