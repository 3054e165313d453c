"""secure_data_dir on a real directory tree: what it fixes, what it leaves, what it says."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger_service.datadir import LISTED_FIXES, secure_data_dir


@pytest.fixture(autouse=True)
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_dir_is_created_0700_and_later_files_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "data"
    warnings: list[str] = []
    assert secure_data_dir(data_dir, warn=warnings.append) == []
    assert mode(data_dir) == 0o700 and warnings == []
    (data_dir / "later.json").write_text("{}")  # the umask now applies to whatever the process writes
    (data_dir / "sub").mkdir()
    assert mode(data_dir / "later.json") == 0o600 and mode(data_dir / "sub") == 0o700


def test_an_open_tree_is_made_private_and_each_fix_is_reported(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    data_dir = tmp_path / "data"
    (data_dir / "keys").mkdir(parents=True)
    (data_dir / "ledger.sqlite3").write_bytes(b"")
    (data_dir / "keys" / "kek.json").write_text("{}")
    (data_dir / "link").symlink_to(outside)
    data_dir.chmod(0o755)
    (data_dir / "keys").chmod(0o750)
    (data_dir / "ledger.sqlite3").chmod(0o644)
    (data_dir / "keys" / "kek.json").chmod(0o640)
    warnings: list[str] = []
    fixed = secure_data_dir(data_dir, warn=warnings.append)
    assert set(fixed) == {data_dir, data_dir / "keys", data_dir / "ledger.sqlite3", data_dir / "keys" / "kek.json"}
    assert mode(data_dir) == 0o700 and mode(data_dir / "keys") == 0o700
    assert mode(data_dir / "ledger.sqlite3") == 0o600 and mode(data_dir / "keys" / "kek.json") == 0o600
    assert mode(outside) == 0o644, "a symlink's target outside the data dir is not ours to change"
    assert f"{data_dir / 'ledger.sqlite3'} was readable by group or others (mode 0644); it is now 0600" in warnings
    assert len(warnings) == 4
    assert secure_data_dir(data_dir, warn=warnings.append) == [] and len(warnings) == 4


def test_many_fixes_are_summarised(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    for index in range(LISTED_FIXES + 5):
        (data_dir / f"block-{index}").write_bytes(b"x")
        (data_dir / f"block-{index}").chmod(0o644)
    warnings: list[str] = []
    assert len(secure_data_dir(data_dir, warn=warnings.append)) == LISTED_FIXES + 5
    assert len(warnings) == LISTED_FIXES + 1 and warnings[-1].startswith("... and 5 more files")


def test_an_sqlite_db_outside_the_data_dir_is_checked_too(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "ledger.sqlite3"
    db.parent.mkdir()
    db.write_bytes(b"")
    db.chmod(0o644)
    missing_wal = db.with_name(db.name + "-wal")
    fixed = secure_data_dir(tmp_path / "data", extra_files=(db, missing_wal), warn=lambda _message: None)
    assert fixed == [db] and mode(db) == 0o600
