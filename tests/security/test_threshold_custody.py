"""No single party decrypts a record: a read needs two of the three custodians, and an attacker holding the
hub's whole data dir (DB, blobs, keys) and one custodian's, or after an erasure a backup of the hub and every
custodian's long-term key, decrypts nothing.

A hub, three custodians and the clinic's node each run as their own process (``serve hub|custodian|node``) on
one anvil. The attacker's steps are played with the files those processes leave on disk: every value in them
that could be a key is tried against the record's ciphertext, and every share the attacker can unwrap is
combined with everything else found.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from ledger_service.blobs import Cid, EmbeddedBlobStore
from ledger_service.crypto import DataKey, RecordBinding, decrypt_bytes
from ledger_service.crypto.key_shares import ShareSlot
from ledger_service.crypto.shamir import combine
from ledger_service.custodian.store import CustodianStore
from ledger_service.errors import CryptoError
from scripts.soak import LedgerClient
from tests.faults.harness import (
    ADMIN_KEY,
    CLINIC,
    CLINIC_KEY,
    Node,
    Served,
    adopt_deployment,
    custodian_urls,
    start_custodians,
)

pytestmark = pytest.mark.timeout(600)

PATIENT_KEY = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"  # anvil #7
PATIENT = Account.from_key(PATIENT_KEY)
PLAINTEXT = b"Potassium 7.9 mmol/L (critical), drawn 2026-12-02 07:40"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("chain")).start()
    yield node
    node.stop()


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
    started = start_custodians(chain, tmp_path_factory.mktemp("custodians"))
    yield started
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def node(
    chain: Node, hub: Served, custodians: list[Served], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    served = Served(
        "node",
        tmp_path_factory.mktemp("node"),
        {"RPC_URL": chain.url, "PROVIDER_KEYS": CLINIC_KEY, "CUSTODIAN_URLS": custodian_urls(custodians)},
        "--hub-url",
        hub.url,
    )
    served.start()
    yield served
    served.stop()


def _upload(hub: Served, node: Served) -> str:
    with LedgerClient(hub.url) as at_hub, LedgerClient(node.url) as at_node:
        clinic = at_node.sign_in(Account.from_key(CLINIC_KEY))
        created = at_node.upload(clinic, PATIENT.address, PLAINTEXT, media_type="text/plain")
        assert created.status_code == 201, created.text
        granted = at_hub.grant(PATIENT, CLINIC)
        assert granted.status_code in (200, 201), granted.text
        return str(created.json()["recordId"])


def _read(node: Served, record_id: str) -> tuple[int, bytes, str]:
    with LedgerClient(node.url) as at_node:
        clinic = at_node.sign_in(Account.from_key(CLINIC_KEY))
        response = at_node.read(clinic, record_id)
        return response.status_code, response.content, response.headers.get("content-type", "")


def test_a_read_needs_two_custodians_and_with_one_fails_closed(
    hub: Served, node: Served, custodians: list[Served]
) -> None:
    record_id = _upload(hub, node)
    assert _read(node, record_id)[:2] == (200, PLAINTEXT)
    for down in itertools.combinations(range(3), 1):  # any two of the three suffice
        for i in down:
            custodians[i].stop()
        try:
            assert _read(node, record_id)[:2] == (200, PLAINTEXT), f"custodian {down[0] + 1} down"
        finally:
            for i in down:
                custodians[i].start()
    custodians[1].stop()
    custodians[2].stop()
    try:
        status, body, content_type = _read(node, record_id)
        assert status == 503 and content_type.startswith("application/problem+json"), body
        problem = json.loads(body)
        assert problem["type"].endswith("/custody-unavailable")
        assert b"7.9" not in body and b"Potassium" not in body
    finally:
        custodians[1].start()
        custodians[2].start()
    assert _read(node, record_id)[:2] == (200, PLAINTEXT)


# ----------------------------------------------------------------- what an attacker finds on disk

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")


def _candidates_in_value(value: object) -> Iterator[bytes]:
    if isinstance(value, bytes | memoryview):
        data = bytes(value)
        yield from (data[i : i + 32] for i in range(0, max(len(data) - 31, 0)))
    elif isinstance(value, str):
        for match in _HEX32.findall(value):
            yield bytes.fromhex(match[2:])
        for token in re.findall(r"[A-Za-z0-9+/=_-]{43,}", value):
            try:
                decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_" if "-" in token else None)
            except (binascii.Error, ValueError):
                continue
            if len(decoded) >= 32:
                yield from (decoded[i : i + 32] for i in range(len(decoded) - 31))


def key_candidates(data_dir: Path) -> set[bytes]:
    """Every 32 bytes in the data dir's databases, key files and small files that could be a key: each
    column value of every table, hex and base64 values included, and every file under 64 KiB."""
    found: set[bytes] = set()
    for path in data_dir.rglob("*"):
        if not path.is_file() or "blobs" in path.parts:
            continue
        raw = path.read_bytes()
        if raw[:16] == b"SQLite format 3\x00":
            with sqlite3.connect(path) as db:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                for table in tables:
                    for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from the schema
                        for value in row:
                            found.update(_candidates_in_value(value))
        elif len(raw) < 65536:
            found.update(_candidates_in_value(raw))
            found.update(_candidates_in_value(raw.decode("latin-1")))
    return found


def _ciphertext(data_dir: Path, record_id: str) -> tuple[bytes, RecordBinding]:
    with sqlite3.connect(data_dir / "ledger.sqlite3") as db:
        cid, patient = db.execute(
            "SELECT v.cid, r.patient FROM record_versions v JOIN records r ON r.record_id = v.record_id "
            "WHERE v.record_id = ? AND v.version = 1",
            (record_id,),
        ).fetchone()
    blob = EmbeddedBlobStore(data_dir / "blobs").read(Cid.parse(cid))
    return blob, RecordBinding(bytes.fromhex(record_id[2:]), 1, patient)


def _decrypts(ciphertext: bytes, binding: RecordBinding, key: bytes) -> bool:
    try:
        return decrypt_bytes(DataKey(key), binding, ciphertext) is not None
    except (CryptoError, ValueError):
        return False


def _unwrapped_shares(custodian: Served, chain: Node, record_id: str) -> list[bytes]:
    """What an attacker who holds a custodian's store (and so its per-record keys) unwraps from it."""
    assert chain.deployment is not None
    d = chain.deployment
    slot = ShareSlot(
        d.chain_id, d.ledger_address, bytes.fromhex(record_id[2:]), 1, int(custodian.settings["CUSTODIAN_INDEX"])
    )
    store = CustodianStore(custodian.data_dir / "custodian.sqlite3")
    try:
        stored = store.share(slot, CLINIC)
        return [] if stored is None else [stored.share]
    finally:
        store.close()


def _attack(ciphertext: bytes, binding: RecordBinding, keys: set[bytes], shares: list[bytes]) -> bool:
    """Whether anything found opens the record: as a data key, or a share combined with any other 33 bytes."""
    tries = keys | {s[:32] for s in shares}
    if any(_decrypts(ciphertext, binding, k) for k in tries):
        return True
    for share in shares:
        for other in keys:
            for x in range(1, 4):
                if x == share[-1]:
                    continue
                try:
                    key = combine([share, other + bytes((x,))])
                except CryptoError:
                    continue
                if _decrypts(ciphertext, binding, key):
                    return True
    return False


def test_the_hub_with_any_one_custodian_decrypts_nothing(
    chain: Node, hub: Served, node: Served, custodians: list[Served], tmp_path: Path
) -> None:
    record_id = _upload(hub, node)
    assert _read(node, record_id)[:2] == (200, PLAINTEXT)
    ciphertext, binding = _ciphertext(hub.data_dir, record_id)
    hub_keys = key_candidates(hub.data_dir)
    assert hub_keys, "the attack found nothing to try: it would prove nothing"
    for custodian in custodians:
        shares = _unwrapped_shares(custodian, chain, record_id)
        assert len(shares) == 1  # the attacker does get this custodian's share: one, and one is not enough
        keys = hub_keys | key_candidates(custodian.data_dir)
        assert not _attack(ciphertext, binding, keys, shares), f"decrypted with the hub and {custodian.url}"
    # The same attack with two custodians' stores succeeds: the test can tell.
    two = _unwrapped_shares(custodians[0], chain, record_id) + _unwrapped_shares(custodians[1], chain, record_id)
    assert _decrypts(ciphertext, binding, combine(two))


def test_after_erasure_a_hub_backup_and_every_custodian_key_decrypt_nothing(
    chain: Node, hub: Served, node: Served, custodians: list[Served], tmp_path: Path
) -> None:
    record_id = _upload(hub, node)
    assert _read(node, record_id)[:2] == (200, PLAINTEXT)
    hub.stop()
    backup = tmp_path / "hub-backup"
    shutil.copytree(hub.data_dir, backup)  # the hub's whole data dir: DB (with any WAL), blobs, keys
    hub.start()

    with LedgerClient(hub.url) as at_hub:
        nonce = int(at_hub.http.get(f"/v1/nonces/{PATIENT.address}").json()["nonce"])
        erase = {"patient": PATIENT.address, "recordId": record_id, "nonce": nonce, "deadline": int(time.time()) + 600}
        signed = Account.sign_typed_data(PATIENT.key, full_message=at_hub.typed("RecordErase", erase))
        erased = at_hub.http.request(
            "DELETE",
            f"/v1/records/{record_id}",
            json={"erase": erase, "signature": "0x" + bytes(signed.signature).hex()},
        )
        assert erased.status_code == 200, erased.text
    deadline = time.monotonic() + 30
    while any(_unwrapped_shares(c, chain, record_id) for c in custodians) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_unwrapped_shares(c, chain, record_id) for c in custodians)

    ciphertext, binding = _ciphertext(backup, record_id)
    keys = key_candidates(backup)
    for custodian in custodians:  # each custodian's long-term key file and what is left of its store
        keys |= key_candidates(custodian.data_dir)
    assert not _attack(ciphertext, binding, keys, [])
    assert _read(node, record_id)[0] == 410
