"""The data dir (DB and WAL with break-glass reasons and the delivery log, keys, deployment record,
blobs, chain state) is readable by the service's user only: 0700, and no file in it open to
group or others, whether `consent-ledger up` creates it or finds it too open."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
from pathlib import Path

import pytest
from eth_account import Account

from ledger_service.settings import ANVIL_DEV_KEYS
from scripts.soak import LedgerClient
from tests.security.conftest import DevServer

pytestmark = pytest.mark.integration

SQLITE_FILES = ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm")


def open_to_others(root: Path) -> list[str]:
    """Every entry under ``root`` (itself included) with a group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):  # a temp file may go while we look
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
                found.append(f"{path.relative_to(root)} {stat.S_IMODE(info.st_mode):04o}")
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_a_record(server: DevServer) -> None:
    """A provider signs in and uploads, so the DB, its WAL and the blob store all hold data."""
    with LedgerClient(server.url) as client:
        clinic = client.sign_in(Account.from_key(ANVIL_DEV_KEYS[1]))
        patient = Account.from_key(ANVIL_DEV_KEYS[4]).address
        response = client.upload(clinic, patient, b"break-glass note: allergic to penicillin")
        assert response.status_code == 201, response.text


def assert_private_while_serving(data_dir: Path) -> None:
    assert mode(data_dir) == 0o700
    for name in SQLITE_FILES:  # the WAL and shared-memory files exist while the DB is open
        assert (data_dir / name).is_file(), f"{name} missing while serving"
    clinic_key = f"keys/encryption-{Account.from_key(ANVIL_DEV_KEYS[1]).address.lower()}.json"
    for name in (
        "deployment.json",
        clinic_key,  # the clinic's X25519 encryption key, held by the node part
        "keys/api-token.key",
        "chain/anvil.log",
        *(f"custodians/{i}/keys/custodian-key.json" for i in (1, 2, 3)),  # each embedded custodian's own key
        *(f"custodians/{i}/custodian.sqlite3" for i in (1, 2, 3)),  # and its store of shares
    ):
        assert (data_dir / name).is_file(), name
    assert any((data_dir / "blobs" / "blocks").rglob("*")), "no blob was stored"
    assert open_to_others(data_dir) == []


def test_fresh_data_dir_is_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    server = DevServer(data_dir, tmp_path / "up.log").start()
    try:
        store_a_record(server)
        assert_private_while_serving(data_dir)
    finally:
        server.stop()
    assert (data_dir / "chain" / "anvil-state.json").is_file()
    assert open_to_others(data_dir) == []
    assert "readable by group or others" not in server.output()


def test_too_open_data_dir_is_made_private_with_a_warning(tmp_path: Path) -> None:
    # As an older version left it: the dir 0755 and the SQLite DB 0644.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    with contextlib.closing(sqlite3.connect(data_dir / "ledger.sqlite3")) as db:
        db.execute("CREATE TABLE left_by_an_older_version (x INTEGER)")
        db.commit()
    (data_dir / "ledger.sqlite3").chmod(0o644)

    server = DevServer(data_dir, tmp_path / "up.log").start()
    try:
        output = server.output()
        assert f"{data_dir} was readable by group or others (mode 0755); it is now 0700" in output, output
        assert f"{data_dir / 'ledger.sqlite3'} was readable by group or others (mode 0644); it is now 0600" in output
        store_a_record(server)
        assert_private_while_serving(data_dir)
    finally:
        server.stop()
    assert open_to_others(data_dir) == []
